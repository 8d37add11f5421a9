/// The admin socket's commands: identities are created, listed, shown, deleted and given to
/// another owner. Replies carry what `pilotctl --json` prints.
public enum AdminControl {
    /// `identity.create`: a new identity, registered; its owner (and its groups' members) may
    /// use its socket.
    public struct CreateIdentity: ControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "identity.create"
        /// The identity's name, also its socket's.
        public var identity: String
        /// The owner: a user name or a uid.
        public var owner: String
        /// Groups (names or gids) whose members may use it too.
        public var groups: [String]
        /// Its hostname in the registry, if any.
        public var hostname: String?
        /// Its tags in the registry; nil sends none.
        public var tags: [String]?
        /// Whether any node may resolve its endpoint.
        public var isPublic: Bool
        /// Whether it is deregistered and deleted when the host stops.
        public var isEphemeral: Bool
        /// Whether it trusts every node that asks.
        public var autoApprove: Bool
        /// The process whose life it lasts, if any.
        public var lease: Lease?

        /// The command, as `pilotctl identity create` sends it.
        public init(
            identity: String, owner: String, groups: [String] = [], hostname: String? = nil, tags: [String]? = nil,
            isPublic: Bool = false, isEphemeral: Bool = false, autoApprove: Bool = false, lease: Lease? = nil
        ) {
            self.lease = lease
            self.identity = identity
            self.owner = owner
            self.groups = groups
            self.hostname = hostname
            self.tags = tags
            self.isPublic = isPublic
            self.isEphemeral = isEphemeral
            self.autoApprove = autoApprove
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                identity: try fields.string("name"), owner: try fields.string("owner"), groups: try fields.strings("groups"),
                hostname: try fields.optionalString("hostname"), tags: try fields.optionalStrings("tags"),
                isPublic: try fields.bool("public"), isEphemeral: try fields.bool("ephemeral"), autoApprove: try fields.bool("auto_approve"),
                lease: try Lease(fields: fields))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = [
                "name": .string(identity), "owner": .string(owner), "groups": .array(groups.map(JSON.string)),
                "public": .bool(isPublic), "ephemeral": .bool(isEphemeral), "auto_approve": .bool(autoApprove),
            ]
            if let lease { arguments["lease"] = lease.json }
            if let hostname { arguments["hostname"] = .string(hostname) }
            if let tags { arguments["tags"] = .array(tags.map(JSON.string)) }
            return arguments
        }
    }

    /// Whose life a leased identity lasts: when that process ends, the host deregisters and
    /// deletes the identity. In JSON, `"lease": "caller"` or `"lease": PID`.
    public enum Lease: Hashable, Sendable {
        /// The process that sends `identity.create` (its connection's peer credentials).
        case caller
        /// The process with this pid.
        case process(Int32)

        /// The lease `fields` asks for, if any.
        init?(fields: ControlFields) throws(ControlFailure) {
            switch fields.values["lease"] {
            case nil, .null?: return nil
            case let value?:
                if value.stringValue == "caller" {
                    self = .caller
                } else if let pid = value.integerValue, (1...Int64(Int32.max)).contains(pid) {
                    self = .process(Int32(pid))
                } else {
                    throw fields.failure("lease", "\"caller\" or a process id")
                }
            }
        }

        var json: JSON {
            switch self {
            case .caller: .string("caller")
            case .process(let pid): .integer(Int64(pid))
            }
        }
    }

    /// `identity.list`: a page of identities in name order. A page stops at `limit` rows or
    /// when its reply would pass `IdentityList.pageBytes`, whichever comes first; its `next`
    /// is the `after` of the page that follows (null: none follows).
    public struct ListIdentities: ControlCommand {
        public typealias Reply = IdentityList
        public static let name = "identity.list"
        /// Most rows in a page, and the default.
        public static let longestPage = 5000
        /// Rows at most (1 to `longestPage`; nil: `longestPage`).
        public var limit: Int?
        /// The name the page starts after (nil: from the first).
        public var after: String?

        /// The command for the page of up to `limit` identities after `after`.
        public init(limit: Int? = nil, after: String? = nil) {
            self.limit = limit
            self.after = after
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(limit: try fields.optionalInteger("limit", as: Int.self), after: try fields.optionalString("after"))
            if let limit, !(1...Self.longestPage).contains(limit) { throw fields.failure("limit", "1 to \(Self.longestPage)") }
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = [:]
            if let limit { arguments["limit"] = .integer(Int64(limit)) }
            if let after { arguments["after"] = .string(after) }
            return arguments
        }
    }

    /// `identity.show`: one identity.
    public struct ShowIdentity: NamedIdentityCommand {
        public typealias Reply = IdentityInfo
        public static let name = "identity.show"
        public var identity: String
        /// The command for `identity`.
        public init(identity: String) { self.identity = identity }
    }

    /// `identity.delete`: an identity deregistered and deleted.
    public struct DeleteIdentity: NamedIdentityCommand {
        public typealias Reply = IdentityDeleted
        public static let name = "identity.delete"
        public var identity: String
        /// The command for `identity`.
        public init(identity: String) { self.identity = identity }
    }

    /// `identity.set-owner`: an identity given to another user.
    public struct SetOwner: ControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "identity.set-owner"
        /// The identity's name.
        public var identity: String
        /// The new owner: a user name or a uid.
        public var owner: String

        /// The command giving `identity` to `owner`.
        public init(identity: String, owner: String) {
            self.identity = identity
            self.owner = owner
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(identity: try fields.string("name"), owner: try fields.string("owner"))
        }

        public var arguments: [String: JSON] { ["name": .string(identity), "owner": .string(owner)] }
    }

    /// An admin command, read from a request, for the host to act on.
    public enum Command: Hashable, Sendable {
        case create(CreateIdentity)
        case list(ListIdentities)
        case show(ShowIdentity)
        case delete(DeleteIdentity)
        case setOwner(SetOwner)

        /// The command `request` carries; an unknown command is an `invalid_argument` failure.
        public init(_ request: ControlRequest) throws(ControlFailure) {
            let fields = request.fields
            switch request.command {
            case CreateIdentity.name: self = .create(try CreateIdentity(fields: fields))
            case ListIdentities.name: self = .list(try ListIdentities(fields: fields))
            case ShowIdentity.name: self = .show(try ShowIdentity(fields: fields))
            case DeleteIdentity.name: self = .delete(try DeleteIdentity(fields: fields))
            case SetOwner.name: self = .setOwner(try SetOwner(fields: fields))
            default: throw ControlFailure(.invalidArgument, "unknown admin command: \(request.command.prefix(64))")
            }
        }
    }
}

/// An admin command whose only argument is an identity's `name`.
public protocol NamedIdentityCommand: ControlCommand {
    /// The identity's name.
    var identity: String { get }
    /// The command for `identity`.
    init(identity: String)
}

extension NamedIdentityCommand {
    /// The command; `name` must be a string.
    public init(fields: ControlFields) throws(ControlFailure) { self.init(identity: try fields.string("name")) }
    /// `{"name": identity}`.
    public var arguments: [String: JSON] { ["name": .string(identity)] }
}

/// An identity as `identity show`, `info` and every command that changes its record answer.
public struct IdentityInfo: ControlReplyData {
    /// Its name, also its socket's.
    public var name: String
    /// Its node id in the registry.
    public var nodeID: UInt32
    /// Its address, `N:XXXX.YYYY.YYYY`.
    public var address: String
    /// Its owner's uid.
    public var ownerUID: UInt32
    /// Its owner's user name (the uid as text when the account has none).
    public var owner: String
    /// The gids whose members may use it too.
    public var groups: [UInt32]
    /// Its tags in the registry.
    public var tags: [String]
    /// Whether any node may resolve its endpoint.
    public var isPublic: Bool
    /// Whether it is deleted when the host stops.
    public var isEphemeral: Bool
    /// Whether it trusts every node that asks.
    public var autoApprove: Bool
    /// When it was created, as the host stores it.
    public var createdAt: Int64
    /// Its hostname in the registry, if any.
    public var hostname: String?
    /// It deregistered itself: offline in the registry until the host restarts (in JSON only
    /// when true).
    public var isDeregistered: Bool
    /// The process whose life it lasts, if it is leased.
    public var leasePID: Int32?
    /// Its control socket's path, where the admin socket says it (`identity show`, `create`).
    public var socket: String?

    /// An identity's description.
    public init(
        name: String, nodeID: UInt32, address: String, ownerUID: UInt32, owner: String, groups: [UInt32], tags: [String],
        isPublic: Bool, isEphemeral: Bool, autoApprove: Bool, createdAt: Int64, hostname: String?, isDeregistered: Bool = false,
        leasePID: Int32? = nil, socket: String? = nil
    ) {
        self.leasePID = leasePID
        self.socket = socket
        self.isDeregistered = isDeregistered
        self.name = name
        self.nodeID = nodeID
        self.address = address
        self.ownerUID = ownerUID
        self.owner = owner
        self.groups = groups
        self.tags = tags
        self.isPublic = isPublic
        self.isEphemeral = isEphemeral
        self.autoApprove = autoApprove
        self.createdAt = createdAt
        self.hostname = hostname
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            name: try fields.string("name"), nodeID: try fields.integer("node_id", as: UInt32.self), address: try fields.string("address"),
            ownerUID: try fields.integer("owner_uid", as: UInt32.self), owner: try fields.string("owner"),
            groups: try fields.integers("groups", as: UInt32.self),
            tags: try fields.strings("tags"), isPublic: try fields.bool("public"), isEphemeral: try fields.bool("ephemeral"),
            autoApprove: try fields.bool("auto_approve"), createdAt: try fields.integer("created_at"),
            hostname: try fields.optionalString("hostname"), isDeregistered: try fields.bool("deregistered"),
            leasePID: try fields.optionalInteger("lease_pid", as: Int32.self), socket: try fields.optionalString("socket"))
    }

    public var json: JSON {
        var fields: [String: JSON] = [
            "name": .string(name), "node_id": .integer(Int64(nodeID)), "address": .string(address),
            "owner_uid": .integer(Int64(ownerUID)), "owner": .string(owner), "groups": .array(groups.map { .integer(Int64($0)) }),
            "tags": .array(tags.map(JSON.string)), "public": .bool(isPublic), "ephemeral": .bool(isEphemeral),
            "auto_approve": .bool(autoApprove), "created_at": .integer(createdAt), "hostname": hostname.map(JSON.string) ?? .null,
        ]
        if isDeregistered { fields["deregistered"] = true }
        if let leasePID { fields["lease_pid"] = .integer(Int64(leasePID)) }
        if let socket { fields["socket"] = .string(socket) }
        return .object(fields)
    }

    /// At least as many bytes as `json` encodes to, found without encoding it: the keys and
    /// numbers at their longest, every text as if each character were escaped (`\u00XX`).
    public var jsonBytesBound: Int {
        let texts = name.utf8.count + address.utf8.count + owner.utf8.count + (hostname?.utf8.count ?? 0) + (socket?.utf8.count ?? 0)
            + tags.reduce(0) { $0 + $1.utf8.count }
        return 360 + 6 * texts + 12 * (groups.count + tags.count)
    }
}

/// `identity.list`'s reply: every identity.
public struct IdentityList: ControlReplyData {
    /// A page's reply stays under this many bytes of JSON (the frame limit is 1 MiB), by the
    /// rows' `jsonBytesBound`.
    public static let pageBytes = 896 << 10
    /// The identities.
    public var identities: [IdentityInfo]
    /// How many identities the host has.
    public var total: Int
    /// The name the next page starts after; nil: this page is the last.
    public var next: String?

    /// A page of `identities` of `total`.
    public init(identities: [IdentityInfo], total: Int? = nil, next: String? = nil) {
        self.identities = identities
        self.total = total ?? identities.count
        self.next = next
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        identities = try fields.objects("identities") { fields throws(ControlFailure) in try IdentityInfo(fields: fields) }
        total = try fields.optionalInteger("total", as: Int.self) ?? identities.count
        next = try fields.optionalString("next")
    }

    public var json: JSON {
        ["identities": .array(identities.map(\.json)), "total": .integer(Int64(total)), "next": next.map(JSON.string) ?? .null]
    }
}

/// `identity.delete`'s reply: the name of the identity that went.
public struct IdentityDeleted: ControlReplyData {
    /// The deleted identity's name.
    public var deleted: String

    /// The reply for `deleted`.
    public init(deleted: String) { self.deleted = deleted }

    public init(fields: ControlFields) throws(ControlFailure) { deleted = try fields.string("deleted") }

    public var json: JSON { ["deleted": .string(deleted)] }
}
