/// The commands of an identity's own socket that read or change its record in the registry, and
/// look other nodes up there.
public enum IdentityControl {
    /// `info`: this identity.
    public struct Info: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "info"
        /// The command.
        public init() {}
    }

    /// `health`: how this identity is doing, with 1.18's keys (docs/PROTOCOL.md §12.2).
    public struct Health: ArgumentlessControlCommand {
        public typealias Reply = ControlData
        public static let name = "health"
        /// The command.
        public init() {}
    }

    /// `set-hostname`: this identity's hostname, set.
    public struct SetHostname: ControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-hostname"
        /// The new hostname.
        public var hostname: String

        /// The command setting `hostname`.
        public init(hostname: String) { self.hostname = hostname }
        public init(fields: ControlFields) throws(ControlFailure) { hostname = try fields.string("hostname") }
        public var arguments: [String: JSON] { ["hostname": .string(hostname)] }
    }

    /// `clear-hostname`: this identity's hostname, removed.
    public struct ClearHostname: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "clear-hostname"
        /// The command.
        public init() {}
    }

    /// `set-tags`: this identity's tags, replaced (at least one; `clear-tags` removes them).
    public struct SetTags: ControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-tags"
        /// The new tags.
        public var tags: [String]

        /// The command setting `tags`.
        public init(tags: [String]) { self.tags = tags }
        public init(fields: ControlFields) throws(ControlFailure) { tags = try fields.strings("tags") }
        public var arguments: [String: JSON] { ["tags": .array(tags.map(JSON.string))] }
    }

    /// `set-listing`: what this identity tells the directory of itself (`DirectoryListing`):
    /// listed (`published`), never listed (`withdrawn`), or listed while public (`""`), with the
    /// description and category it is found by. The reply is the registry's.
    public struct SetListing: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "set-listing"
        public var listing: DirectoryListing

        /// The command setting `listing`.
        public init(_ listing: DirectoryListing) { self.listing = listing }
        public init(fields: ControlFields) throws(ControlFailure) {
            let raw = try fields.optionalString("listing") ?? ""
            guard let choice = DirectoryListing.Choice(rawValue: raw) else {
                throw ControlFailure(.invalidArgument, "listing must be published, withdrawn or empty, not \(raw.prefix(32))")
            }
            listing = DirectoryListing(
                choice: choice, description: try fields.optionalString("description") ?? "", category: try fields.optionalString("category") ?? "")
        }
        public var arguments: [String: JSON] {
            ["listing": .string(listing.choice.rawValue), "description": .string(listing.description), "category": .string(listing.category)]
        }
    }

    /// `clear-tags`: this identity's tags, removed.
    public struct ClearTags: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "clear-tags"
        /// The command.
        public init() {}
    }

    /// `set-public`: any node may resolve this identity's endpoint.
    public struct SetPublic: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-public"
        /// The command.
        public init() {}
    }

    /// `set-private`: only trusted peers may resolve this identity's endpoint.
    public struct SetPrivate: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-private"
        /// The command.
        public init() {}
    }

    /// `lookup`: a node's record in the registry, by node id or address. The reply is the
    /// registry's answer without its `type`.
    public struct Lookup: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "lookup"
        /// A node id or an address `N:XXXX.YYYY.YYYY`.
        public var target: String

        /// The command looking `target` up.
        public init(target: String) { self.target = target }
        public init(fields: ControlFields) throws(ControlFailure) { target = try fields.string("target") }
        public var arguments: [String: JSON] { ["target": .string(target)] }
    }

    /// `find`: a node's address by hostname, or the online nodes with a tag (our registry's
    /// `find_by_tag`). The reply is the registry's answer without its `type`.
    public struct Find: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "find"
        /// The hostname; empty when finding by `tag`.
        public var hostname: String
        /// The tag, when finding by tag.
        public var tag: String?

        /// The command finding `hostname`.
        public init(hostname: String) { self.hostname = hostname }
        /// The command finding the nodes tagged `tag`.
        public init(tag: String) {
            hostname = ""
            self.tag = tag
        }
        public init(fields: ControlFields) throws(ControlFailure) {
            tag = try fields.optionalString("tag")
            hostname = tag == nil ? try fields.string("hostname") : (try fields.optionalString("hostname") ?? "")
        }
        public var arguments: [String: JSON] {
            if let tag { return ["tag": .string(tag)] }
            return ["hostname": .string(hostname)]
        }
    }

    /// `deregister`: this identity leaves the registry (offline, out of its custom networks)
    /// and stays offline until the host restarts; it is not deleted (`identity delete` is the
    /// admin's). The reply is the registry's, `node_id` and `type` (`deregister_ok`), as 1.18
    /// passes it on.
    public struct Deregister: ArgumentlessControlCommand {
        public typealias Reply = ControlData
        public static let name = "deregister"
        /// The command.
        public init() {}
    }

    /// `rotate-key`: a new Ed25519 key for this identity, same node id and address. The reply
    /// is the registry's: `node_id`, `address`, `public_key` (the new key) and `type`
    /// (`rotate_key_ok`).
    public struct RotateKey: ArgumentlessControlCommand {
        public typealias Reply = ControlData
        public static let name = "rotate-key"
        /// The command.
        public init() {}
    }

    /// `prefer-direct`: the session with a peer, if relayed through the beacon, is tried
    /// directly at once.
    public struct PreferDirect: ControlCommand {
        public typealias Reply = DirectPreferenceReport
        public static let name = "prefer-direct"
        /// A node id, an address or a hostname.
        public var peer: String

        /// The command for `peer`.
        public init(peer: String) { self.peer = peer }
        public init(fields: ControlFields) throws(ControlFailure) { peer = try fields.string("peer") }
        public var arguments: [String: JSON] { ["peer": .string(peer)] }
    }
}

/// What prefer-direct found and did, with 1.18's keys (docs/PROTOCOL.md §12.2) and ours.
public struct DirectPreferenceReport: ControlReplyData {
    /// The peer.
    public var nodeID: UInt32
    /// The identity held a tunnel session with it.
    public var hadTunnel: Bool
    /// Frames to it went through the beacon.
    public var wasRelayActive: Bool
    /// Always false: pilot-host pins no peer to the beacon.
    public var wasRelayPinned: Bool
    /// Always false: no key exchange is pushed; a relayed session is tried directly with
    /// sealed probes instead (`directAttempt`).
    public var pilaPushed: Bool
    /// Why the registry could not say where the peer is; empty when it could.
    public var resolveError: String
    /// Ours: a direct attempt (punch and probes) is under way.
    public var directAttempt: Bool

    /// A report of what was found.
    public init(
        nodeID: UInt32, hadTunnel: Bool, wasRelayActive: Bool, wasRelayPinned: Bool = false, pilaPushed: Bool = false,
        resolveError: String, directAttempt: Bool
    ) {
        self.nodeID = nodeID
        self.hadTunnel = hadTunnel
        self.wasRelayActive = wasRelayActive
        self.wasRelayPinned = wasRelayPinned
        self.pilaPushed = pilaPushed
        self.resolveError = resolveError
        self.directAttempt = directAttempt
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            nodeID: try fields.integer("node_id", as: UInt32.self), hadTunnel: try fields.bool("had_tunnel"),
            wasRelayActive: try fields.bool("was_relay_active"), wasRelayPinned: try fields.bool("was_relay_pinned"),
            pilaPushed: try fields.bool("pila_pushed"), resolveError: try fields.optionalString("resolve_error") ?? "",
            directAttempt: try fields.bool("direct_attempt"))
    }

    public var json: JSON {
        [
            "node_id": .integer(Int64(nodeID)), "had_tunnel": .bool(hadTunnel), "was_relay_active": .bool(wasRelayActive),
            "was_relay_pinned": .bool(wasRelayPinned), "pila_pushed": .bool(pilaPushed), "resolve_error": .string(resolveError),
            "direct_attempt": .bool(directAttempt),
        ]
    }
}

/// A node named the way a command's `target` or `peer` names it: an address, a node id (an
/// address in network 0), or a hostname for the registry to resolve.
public enum NodeTarget: Hashable, Sendable {
    case address(Address)
    case hostname(String)

    /// `text` read as an address, else as a node id, else as a hostname.
    public init(_ text: String) {
        if let address = Address(text) {
            self = .address(address)
        } else if let node = UInt32(text) {
            self = .address(Address(node: node))
        } else {
            self = .hostname(text)
        }
    }
}
