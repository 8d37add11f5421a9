public import PilotControl
public import PilotStore
public import PilotWire

/// The admin socket's commands: `identity.create`, `identity.list`, `identity.show`,
/// `identity.delete`, `identity.set-owner`. Replies carry what `pilotctl --json` prints.
public struct AdminCommands: Sendable {
    /// What happened to an identity, for its socket and its open connections to follow.
    public enum Change: Sendable {
        case created(String)
        case ownerChanged(String)
        case deleted(String)
    }

    let pool: IdentityPool
    /// Called after an identity appears, changes owner or goes, so its socket follows. When it
    /// throws (no socket can be opened), the change is undone and the error is the reply.
    let identitiesChanged: @Sendable (Change) async throws -> Void

    public init(pool: IdentityPool, identitiesChanged: @escaping @Sendable (Change) async throws -> Void) {
        self.pool = pool
        self.identitiesChanged = identitiesChanged
    }

    public func handle(_ peer: PeerCredentials, _ request: ControlRequest) async -> ControlReply {
        do {
            switch request.command {
            case "identity.create": return .ok(try await create(request))
            case "identity.list": return .ok(.object(["identities": .array(await pool.all.map(Self.describe))]))
            case "identity.show":
                let name = try request.string("name")
                guard let identity = await pool.identity(named: name) else { throw ControlFailure(.notFound, "no identity named \(name)") }
                return .ok(Self.describe(identity))
            case "identity.delete":
                let name = try request.string("name")
                try await pool.delete(name: name)
                try await identitiesChanged(.deleted(name))
                return .ok(["deleted": .string(name)])
            case "identity.set-owner":
                let name = try request.string("name")
                let owner = try Self.user(try request.string("owner"))
                guard let previous = await pool.identity(named: name) else { throw PoolError.notFound(name) }
                let record = try await pool.setOwner(name: name, uid: owner)
                do {
                    try await identitiesChanged(.ownerChanged(name))
                } catch {
                    // The old socket still serves the old owner: the record goes back to match it.
                    _ = try? await pool.setOwner(name: name, uid: previous.ownerUID)
                    throw error
                }
                return .ok(Self.describe(record))
            default:
                throw ControlFailure(.invalidArgument, "unknown admin command: \(request.command.prefix(64))")
            }
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch let error as PoolError {
            return .error(Self.failure(error))
        } catch {
            return .error(ControlFailure(.internalError, "\(error)"))
        }
    }

    private func create(_ request: ControlRequest) async throws -> JSON {
        let name = try request.string("name")
        var create = IdentityPool.Request(owner: try Self.user(try request.string("owner")))
        create.groups = try request.strings("groups").map(Self.group)
        create.hostname = try request.optionalString("hostname")
        create.tags = try request.strings("tags")
        create.isPublic = try request.bool("public")
        create.isEphemeral = try request.bool("ephemeral")
        create.autoApprove = try request.bool("auto_approve")
        let record = try await pool.create(name: name, create)
        do {
            try await identitiesChanged(.created(name))
        } catch {
            // An identity nobody can reach is no use: deregistered and deleted again.
            try? await pool.delete(name: name)
            throw error
        }
        return Self.describe(record)
    }

    static func user(_ text: String) throws(ControlFailure) -> UInt32 {
        guard let uid = SystemAccounts.uid(text) else { throw ControlFailure(.notFound, "no such user: \(text.prefix(64))") }
        return uid
    }

    static func group(_ text: String) throws(ControlFailure) -> UInt32 {
        guard let gid = SystemAccounts.gid(text) else { throw ControlFailure(.notFound, "no such group: \(text.prefix(64))") }
        return gid
    }

    static func failure(_ error: PoolError) -> ControlFailure {
        switch error {
        case .invalidName: ControlFailure(.invalidArgument, error.description)
        case .exists: ControlFailure(.alreadyExists, error.description)
        case .notFound: ControlFailure(.notFound, error.description)
        case .registry: ControlFailure(.invalidArgument, error.description)
        case .unreadableKey: ControlFailure(.internalError, error.description)
        }
    }

    /// An identity as `identity show` prints it.
    public static func describe(_ record: IdentityRecord) -> JSON {
        var fields: [String: JSON] = [
            "name": .string(record.name), "node_id": .integer(Int64(record.nodeID)),
            "address": .string(Address(network: record.network, node: record.nodeID).description),
            "owner_uid": .integer(Int64(record.ownerUID)), "owner": .string(SystemAccounts.userName(record.ownerUID)),
            "groups": .array(record.allowedGIDs.map { .integer(Int64($0)) }), "tags": .array(record.tags.map(JSON.string)),
            "public": .bool(record.isPublic), "ephemeral": .bool(record.isEphemeral), "auto_approve": .bool(record.autoApprove), "created_at": .integer(record.createdAt),
        ]
        fields["hostname"] = record.hostname.map(JSON.string) ?? .null
        return .object(fields)
    }
}
