/// The trust handshake, from an identity's own socket: ask a node for trust, answer the nodes
/// that asked, revoke, and list both.
public enum TrustControl {
    /// `handshake`: trust asked of `peer`, with a reason.
    public struct Handshake: ExplainedPeerCommand {
        public typealias Reply = TrustChange
        public static let name = "handshake"
        public var peer: String
        public var reason: String?

        /// The command asking `peer` for trust.
        public init(peer: String, reason: String? = nil) {
            self.peer = peer
            self.reason = reason
        }
    }

    /// `approve`: a pending request from `peer`, approved.
    public struct Approve: PeerCommand {
        public typealias Reply = TrustChange
        public static let name = "approve"
        public var peer: String
        /// The command approving `peer`.
        public init(peer: String) { self.peer = peer }
    }

    /// `reject`: a pending request from `peer`, rejected, with a reason.
    public struct Reject: ExplainedPeerCommand {
        public typealias Reply = TrustChange
        public static let name = "reject"
        public var peer: String
        public var reason: String?

        /// The command rejecting `peer`.
        public init(peer: String, reason: String? = nil) {
            self.peer = peer
            self.reason = reason
        }
    }

    /// `untrust`: the trust of `peer`, revoked.
    public struct Untrust: PeerCommand {
        public typealias Reply = TrustChange
        public static let name = "untrust"
        public var peer: String
        /// The command revoking `peer`.
        public init(peer: String) { self.peer = peer }
    }

    /// `pending`: the requests waiting for an answer, by node id, a page at a time.
    public struct Pending: PagedListCommand {
        public typealias Reply = PendingTrust
        public static let name = "pending"
        public var page: ListPage
        /// The command for `page` (the first, by default).
        public init(page: ListPage = ListPage()) { self.page = page }
    }

    /// `trust`: the nodes this identity trusts, by node id, a page at a time.
    public struct Trusted: PagedListCommand {
        public typealias Reply = TrustedPeers
        public static let name = "trust"
        public var page: ListPage
        /// The command for `page` (the first, by default).
        public init(page: ListPage = ListPage()) { self.page = page }
    }
}

/// A trust command whose only argument is a `peer`: an address, a node id or a hostname.
public protocol PeerCommand: ControlCommand {
    /// An address, a node id, or a hostname.
    var peer: String { get }
    /// The command for `peer`.
    init(peer: String)
}

extension PeerCommand {
    /// The command; `peer` must be a string.
    public init(fields: ControlFields) throws(ControlFailure) { self.init(peer: try fields.string("peer")) }
    /// `{"peer": peer}`.
    public var arguments: [String: JSON] { ["peer": .string(peer)] }
}

/// A trust command for a `peer`, with an optional `reason`.
public protocol ExplainedPeerCommand: ControlCommand {
    /// An address, a node id, or a hostname.
    var peer: String { get }
    /// Why; nil sends none.
    var reason: String? { get }
    /// The command for `peer`, with `reason`.
    init(peer: String, reason: String?)
}

extension ExplainedPeerCommand {
    /// The command; `peer` must be a string, `reason` a string if there.
    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(peer: try fields.string("peer"), reason: try fields.optionalString("reason"))
    }

    /// `peer`, and `reason` unless nil.
    public var arguments: [String: JSON] {
        var arguments: [String: JSON] = ["peer": .string(peer)]
        if let reason { arguments["reason"] = .string(reason) }
        return arguments
    }
}

/// The reply of `handshake`, `approve`, `reject` and `untrust`: what happened, to which node.
public struct TrustChange: ControlReplyData {
    /// `sent`, `already trusted`, `approved`, `rejected` or `revoked`.
    public var status: String
    /// The peer's node id.
    public var nodeID: UInt32
    /// For a request: whether the registry relays it (sent only when true).
    public var relayed: Bool?

    /// A change of `nodeID`'s trust.
    public init(status: String, nodeID: UInt32, relayed: Bool? = nil) {
        self.status = status
        self.nodeID = nodeID
        self.relayed = relayed
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            status: try fields.string("status"), nodeID: try fields.integer("node_id", as: UInt32.self),
            relayed: try fields.optionalBool("relayed"))
    }

    public var json: JSON {
        var fields: [String: JSON] = ["status": .string(status), "node_id": .integer(Int64(nodeID))]
        if let relayed { fields["relayed"] = .bool(relayed) }
        return .object(fields)
    }
}

/// `pending`'s reply: the trust requests waiting for an answer.
public struct PendingTrust: ControlReplyData {
    /// A request from a node.
    public struct Request: Hashable, Sendable {
        /// The asking node.
        public var nodeID: UInt32
        /// Its public key in base64, empty when unknown.
        public var publicKey: String
        /// Its reason.
        public var justification: String
        /// When it arrived (Unix seconds).
        public var receivedAt: Int64

        /// A request from `nodeID`.
        public init(nodeID: UInt32, publicKey: String, justification: String, receivedAt: Int64) {
            self.nodeID = nodeID
            self.publicKey = publicKey
            self.justification = justification
            self.receivedAt = receivedAt
        }
    }

    /// The requests.
    public var pending: [Request]
    /// The `after` of the next page (`ListPage`); nil: this is the last.
    public var next: Int64?

    /// A reply listing `pending`.
    public init(pending: [Request], next: Int64? = nil) {
        self.pending = pending
        self.next = next
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        pending = try fields.objects("pending") { entry throws(ControlFailure) in
            Request(
                nodeID: try entry.integer("node_id", as: UInt32.self), publicKey: try entry.string("public_key"),
                justification: try entry.string("justification"), receivedAt: try entry.integer("received_at"))
        }
        next = try fields.optionalInteger("next")
    }

    /// One request as the reply lists it.
    public static func row(_ entry: Request) -> JSON {
        [
            "node_id": .integer(Int64(entry.nodeID)), "public_key": .string(entry.publicKey),
            "justification": .string(entry.justification), "received_at": .integer(entry.receivedAt),
        ]
    }

    public var json: JSON {
        var fields: [String: JSON] = ["pending": .array(pending.map(Self.row))]
        if let next { fields["next"] = .integer(next) }
        return .object(fields)
    }
}

/// `trust`'s reply: the trusted nodes.
public struct TrustedPeers: ControlReplyData {
    /// A trusted node.
    public struct Peer: Hashable, Sendable {
        /// Its node id.
        public var nodeID: UInt32
        /// Its public key in base64, empty when unknown.
        public var publicKey: String
        /// When trust was granted (Unix seconds).
        public var approvedAt: Int64
        /// Whether it trusts this identity too.
        public var mutual: Bool
        /// The network the trust is for (0, the backbone, as 1.18 reports).
        public var network: UInt16

        /// A trusted node.
        public init(nodeID: UInt32, publicKey: String, approvedAt: Int64, mutual: Bool, network: UInt16 = 0) {
            self.nodeID = nodeID
            self.publicKey = publicKey
            self.approvedAt = approvedAt
            self.mutual = mutual
            self.network = network
        }
    }

    /// The trusted nodes (this page of them).
    public var trusted: [Peer]
    /// How many nodes this identity trusts in all.
    public var total: Int
    /// The `after` of the next page (`ListPage`); nil: this is the last.
    public var next: Int64?

    /// A reply listing `trusted`, a page of `total` (nil: all of them).
    public init(trusted: [Peer], total: Int? = nil, next: Int64? = nil) {
        self.trusted = trusted
        self.total = total ?? trusted.count
        self.next = next
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        trusted = try fields.objects("trusted") { entry throws(ControlFailure) in
            Peer(
                nodeID: try entry.integer("node_id", as: UInt32.self), publicKey: try entry.string("public_key"),
                approvedAt: try entry.integer("approved_at"), mutual: try entry.bool("mutual"),
                network: try entry.optionalInteger("network", as: UInt16.self) ?? 0)
        }
        total = try fields.optionalInteger("total", as: Int.self) ?? trusted.count
        next = try fields.optionalInteger("next")
    }

    /// One trusted node as the reply lists it.
    public static func row(_ entry: Peer) -> JSON {
        [
            "node_id": .integer(Int64(entry.nodeID)), "public_key": .string(entry.publicKey),
            "approved_at": .integer(entry.approvedAt), "mutual": .bool(entry.mutual), "network": .integer(Int64(entry.network)),
        ]
    }

    public var json: JSON {
        var fields: [String: JSON] = ["total": .integer(Int64(total)), "trusted": .array(trusted.map(Self.row))]
        if let next { fields["next"] = .integer(next) }
        return .object(fields)
    }
}
