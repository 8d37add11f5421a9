/// Custom networks in the registry, from an identity's own socket: list them, their members,
/// join, leave, create, and broadcast to every member. The registry's answers pass through
/// whole, as 1.18's pilotctl prints them (`NetworkReplies.swift`).
public enum NetworkControl {
    /// `network-list`: the registry's networks.
    public struct List: ArgumentlessControlCommand {
        public typealias Reply = NetworkListing
        public static let name = "network-list"
        /// The command.
        public init() {}
    }

    /// `network-members`: the members of a network (a private one needs the admin token).
    public struct Members: ControlCommand {
        public typealias Reply = NetworkMembers
        public static let name = "network-members"
        /// The network.
        public var networkID: UInt16
        /// The registry's admin token, if the caller has it.
        public var adminToken: String?

        /// The command listing `networkID`'s members.
        public init(networkID: UInt16, adminToken: String? = nil) {
            self.networkID = networkID
            self.adminToken = adminToken
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(networkID: try fields.networkID(), adminToken: try fields.optionalString("admin_token"))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["network_id": .integer(Int64(networkID))]
            if let adminToken { arguments["admin_token"] = .string(adminToken) }
            return arguments
        }
    }

    /// `network-join`: this identity joins a network, with its token if the join rule is token.
    public struct Join: ControlCommand {
        public typealias Reply = NetworkChange
        public static let name = "network-join"
        /// The network.
        public var networkID: UInt16
        /// The network's join token, if it has one.
        public var token: String?

        /// The command joining `networkID`.
        public init(networkID: UInt16, token: String? = nil) {
            self.networkID = networkID
            self.token = token
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(networkID: try fields.networkID(), token: try fields.optionalString("token"))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["network_id": .integer(Int64(networkID))]
            if let token { arguments["token"] = .string(token) }
            return arguments
        }
    }

    /// `network-leave`: this identity leaves a network.
    public struct Leave: ControlCommand {
        public typealias Reply = NetworkChange
        public static let name = "network-leave"
        /// The network.
        public var networkID: UInt16

        /// The command leaving `networkID`.
        public init(networkID: UInt16) { self.networkID = networkID }
        public init(fields: ControlFields) throws(ControlFailure) { networkID = try fields.networkID() }
        public var arguments: [String: JSON] { ["network_id": .integer(Int64(networkID))] }
    }

    /// `network-create`: a network, created with the registry's admin token; this identity is
    /// its first member.
    public struct Create: ControlCommand {
        public typealias Reply = NetworkChange
        public static let name = "network-create"
        /// The network's name.
        public var network: String
        /// `open` or `token`; nil means open.
        public var joinRule: String?
        /// The registry's admin token.
        public var adminToken: String
        /// The token members join with (join rule token).
        public var token: String?

        /// The command creating `network`.
        public init(network: String, joinRule: String? = nil, adminToken: String, token: String? = nil) {
            self.network = network
            self.joinRule = joinRule
            self.adminToken = adminToken
            self.token = token
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                network: try fields.string("name"), joinRule: try fields.optionalString("join_rule"),
                adminToken: try fields.string("admin_token"), token: try fields.optionalString("token"))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["name": .string(network), "admin_token": .string(adminToken)]
            if let joinRule { arguments["join_rule"] = .string(joinRule) }
            if let token { arguments["token"] = .string(token) }
            return arguments
        }
    }

    /// `broadcast`: one datagram to `port` of every other member of a network.
    public struct Broadcast: ControlCommand {
        public typealias Reply = BroadcastSent
        public static let name = "broadcast"
        /// The network.
        public var networkID: UInt16
        /// The members' port.
        public var port: UInt16
        /// What to send.
        public var data: String
        /// The registry's admin token (1.18 asks for it); nil sends none.
        public var adminToken: String?

        /// The command broadcasting `data`.
        public init(networkID: UInt16, port: UInt16, data: String, adminToken: String? = nil) {
            self.networkID = networkID
            self.port = port
            self.data = data
            self.adminToken = adminToken
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                networkID: try fields.networkID(), port: try fields.port(),
                data: try fields.string("data"), adminToken: try fields.optionalString("admin_token"))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = [
                "network_id": .integer(Int64(networkID)), "port": .integer(Int64(port)), "data": .string(data),
            ]
            if let adminToken { arguments["admin_token"] = .string(adminToken) }
            return arguments
        }
    }
}

/// `broadcast`'s reply: what went out, where.
public struct BroadcastSent: ControlReplyData {
    /// Bytes per datagram.
    public var bytes: Int
    /// The network.
    public var networkID: UInt16
    /// The members' port.
    public var port: UInt16

    /// A broadcast of `bytes` to `port` on `networkID`.
    public init(bytes: Int, networkID: UInt16, port: UInt16) {
        self.bytes = bytes
        self.networkID = networkID
        self.port = port
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            bytes: try fields.integer("bytes", as: Int.self), networkID: try fields.networkID(),
            port: try fields.integer("port", as: UInt16.self))
    }

    public var json: JSON {
        ["bytes": .integer(Int64(bytes)), "network_id": .integer(Int64(networkID)), "port": .integer(Int64(port))]
    }
}
