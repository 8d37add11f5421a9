/// The replies of `NetworkControl`'s registry commands: the registry's answer passes through
/// whole (`registry`, with its `type`, as 1.18's pilotctl prints it), and the fields pilotctl
/// reads are typed. The registry decides which of them it sends, so they are optional; one that
/// is there with the wrong type is an error.

/// `network-list`'s reply: the registry's networks.
public struct NetworkListing: ControlReplyData {
    /// One network.
    public struct Network: Hashable, Sendable {
        /// Its number (0 is the backbone).
        public var id: UInt16?
        /// Its name.
        public var name: String?
        /// `open` or `token`.
        public var joinRule: String?
        /// How many members it has.
        public var members: Int?
    }

    /// The networks.
    public var networks: [Network]
    /// The registry's answer, whole.
    public var registry: [String: JSON]

    public init(fields: ControlFields) throws(ControlFailure) {
        registry = fields.values
        networks = try fields.objects("networks") { network throws(ControlFailure) in
            Network(
                id: try network.optionalInteger("id", as: UInt16.self), name: try network.optionalString("name"),
                joinRule: try network.optionalString("join_rule"), members: try network.optionalInteger("members", as: Int.self))
        }
    }

    public var json: JSON { .object(registry) }
}

/// `network-members`' reply: the members of a network.
public struct NetworkMembers: ControlReplyData {
    /// One member.
    public struct Member: Hashable, Sendable {
        /// Its node id.
        public var nodeID: UInt32?
        /// Its hostname, if it has one.
        public var hostname: String?
        /// The software it registered with.
        public var version: String?
        /// Whether its endpoint is public.
        public var isPublic: Bool?
    }

    /// The members.
    public var nodes: [Member]
    /// The registry's answer, whole.
    public var registry: [String: JSON]

    public init(fields: ControlFields) throws(ControlFailure) {
        registry = fields.values
        nodes = try fields.objects("nodes") { node throws(ControlFailure) in
            Member(
                nodeID: try node.optionalInteger("node_id", as: UInt32.self), hostname: try node.optionalString("hostname"),
                version: try node.optionalString("version"), isPublic: try node.optionalBool("public"))
        }
    }

    public var json: JSON { .object(registry) }
}

/// The reply of `network-join`, `network-leave` and `network-create`: the network concerned.
public struct NetworkChange: ControlReplyData {
    /// The network's number.
    public var networkID: UInt16?
    /// Its name (`network-create` has it).
    public var name: String?
    /// The registry's answer, whole.
    public var registry: [String: JSON]

    public init(fields: ControlFields) throws(ControlFailure) {
        registry = fields.values
        networkID = try fields.optionalInteger("network_id", as: UInt16.self)
        name = try fields.optionalString("name")
    }

    public var json: JSON { .object(registry) }
}
