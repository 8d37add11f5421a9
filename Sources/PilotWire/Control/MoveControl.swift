/// The admin socket's commands that move identities between hosts: this host's key, an
/// identity exported (sealed to another host's key, and gone from here), one imported.
public enum MoveControl {
    /// `host.key`: the X25519 public key identity files for this host are sealed to.
    public struct ShowHostKey: ArgumentlessControlCommand {
        public typealias Reply = HostKeyInfo
        public static let name = "host.key"
        /// The command.
        public init() {}
    }

    /// `identity.export`: `identity` sealed to `hostKey`; once the file is made the identity
    /// is deregistered and deleted here, and the reply carries the file.
    public struct ExportIdentity: ControlCommand {
        public typealias Reply = ExportedIdentity
        public static let name = "identity.export"
        /// The identity's name.
        public var identity: String
        /// The destination's host key, base64 (its `pilotctl host-key`).
        public var hostKey: String
        /// Whether its inbox goes too.
        public var withInbox: Bool

        /// The command exporting `identity` to the host whose key is `hostKey`.
        public init(identity: String, hostKey: String, withInbox: Bool = false) {
            self.identity = identity
            self.hostKey = hostKey
            self.withInbox = withInbox
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(identity: try fields.string("name"), hostKey: try fields.string("host_key"), withInbox: try fields.bool("with_inbox"))
        }

        public var arguments: [String: JSON] {
            ["name": .string(identity), "host_key": .string(hostKey), "with_inbox": .bool(withInbox)]
        }
    }

    /// `identity.import`: the identity in an identity file, given to `owner`, under its own
    /// name or `rename`; registered with its key (same node, same address), its socket opened,
    /// its apps installed again where this host has the approved bundles.
    public struct ImportIdentity: ControlCommand {
        public typealias Reply = ImportedIdentity
        public static let name = "identity.import"
        /// The file's bytes, base64 (pilotctl reads the file; the host opens no user's path).
        public var file: String
        /// The owner: a user name or a uid.
        public var owner: String
        /// The name to give it here, if not the one it had.
        public var rename: String?

        /// The command importing `file` (base64) for `owner`.
        public init(file: String, owner: String, rename: String? = nil) {
            self.file = file
            self.owner = owner
            self.rename = rename
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(file: try fields.string("file"), owner: try fields.string("owner"), rename: try fields.optionalString("name"))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["file": .string(file), "owner": .string(owner)]
            if let rename { arguments["name"] = .string(rename) }
            return arguments
        }
    }

    /// A move command, read from a request, for the host to act on.
    public enum Command: Hashable, Sendable {
        case hostKey(ShowHostKey)
        case export(ExportIdentity)
        case `import`(ImportIdentity)

        /// The commands' names: the admin socket hands these to the move commands.
        public static let names: Set<String> = [ShowHostKey.name, ExportIdentity.name, ImportIdentity.name]

        /// The command `request` carries; another command is an `invalid_argument` failure.
        public init(_ request: ControlRequest) throws(ControlFailure) {
            switch request.command {
            case ShowHostKey.name: self = .hostKey(ShowHostKey())
            case ExportIdentity.name: self = .export(try ExportIdentity(fields: request.fields))
            case ImportIdentity.name: self = .import(try ImportIdentity(fields: request.fields))
            default: throw ControlFailure(.invalidArgument, "unknown move command: \(request.command.prefix(64))")
            }
        }
    }
}

/// `host.key`'s reply.
public struct HostKeyInfo: ControlReplyData {
    /// The X25519 public key, base64 of its 32 bytes.
    public var publicKey: String

    /// The reply for `publicKey`.
    public init(publicKey: String) { self.publicKey = publicKey }

    public init(fields: ControlFields) throws(ControlFailure) { publicKey = try fields.string("public_key") }

    public var json: JSON { ["public_key": .string(publicKey)] }
}

/// `identity.export`'s reply: the identity that left and its file.
public struct ExportedIdentity: ControlReplyData {
    /// Its name here.
    public var name: String
    /// Its node id, which it keeps.
    public var nodeID: UInt32
    /// Its address, which it keeps.
    public var address: String
    /// The identity file, base64.
    public var file: String
    /// Inbox messages the file carries.
    public var messages: Int
    /// Apps the file carries.
    public var apps: Int
    /// Where the host keeps its own copy of the file (root's only), written before the
    /// identity was deleted: the file is never lost with the reply.
    public var kept: String

    /// The reply for an exported identity.
    public init(name: String, nodeID: UInt32, address: String, file: String, messages: Int, apps: Int, kept: String) {
        self.name = name
        self.nodeID = nodeID
        self.address = address
        self.file = file
        self.messages = messages
        self.apps = apps
        self.kept = kept
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            name: try fields.string("name"), nodeID: try fields.integer("node_id", as: UInt32.self), address: try fields.string("address"),
            file: try fields.string("file"), messages: try fields.integer("messages", as: Int.self), apps: try fields.integer("apps", as: Int.self),
            kept: try fields.string("kept"))
    }

    public var json: JSON {
        [
            "name": .string(name), "node_id": .integer(Int64(nodeID)), "address": .string(address), "file": .string(file),
            "messages": .integer(Int64(messages)), "apps": .integer(Int64(apps)), "kept": .string(kept),
        ]
    }
}

/// `identity.import`'s reply: the identity as `identity show` describes it, and which of its
/// apps were installed again here.
public struct ImportedIdentity: ControlReplyData {
    public var identity: IdentityInfo
    /// The apps installed again, with the grants approved on the old host.
    public var appsRestored: [String]
    /// The apps not installed, each with the reason: its owner installs it again.
    public var appsNotRestored: [AppNotRestored]

    /// The reply for an imported identity.
    public init(identity: IdentityInfo, appsRestored: [String], appsNotRestored: [AppNotRestored]) {
        self.identity = identity
        self.appsRestored = appsRestored
        self.appsNotRestored = appsNotRestored
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            identity: try IdentityInfo(fields: fields), appsRestored: try fields.strings("apps_restored"),
            appsNotRestored: try fields.objects("apps_not_restored", AppNotRestored.init(fields:)))
    }

    /// The identity's fields, and `apps_restored` and `apps_not_restored` beside them.
    public var json: JSON {
        guard case .object(var fields) = identity.json else { return identity.json }
        fields["apps_restored"] = .array(appsRestored.map(JSON.string))
        fields["apps_not_restored"] = .array(appsNotRestored.map(\.json))
        return .object(fields)
    }
}

/// An app a moved identity had that was not installed again on its new host, and why.
public struct AppNotRestored: Hashable, Sendable {
    public var app: String
    public var version: String
    public var reason: String

    public init(app: String, version: String, reason: String) {
        self.app = app
        self.version = version
        self.reason = reason
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(app: try fields.string("app"), version: try fields.string("version"), reason: try fields.string("reason"))
    }

    public var json: JSON { ["app": .string(app), "version": .string(version), "reason": .string(reason)] }
}
