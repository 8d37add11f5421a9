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
    /// Where identity `name`'s control socket is.
    let socketPath: @Sendable (String) -> String
    /// Called after an identity appears, changes owner or goes, so its socket follows. When it
    /// throws (no socket can be opened), the change is undone and the error is the reply.
    let identitiesChanged: @Sendable (Change) async throws -> Void

    public init(
        pool: IdentityPool, socketPath: @escaping @Sendable (String) -> String,
        identitiesChanged: @escaping @Sendable (Change) async throws -> Void
    ) {
        self.pool = pool
        self.socketPath = socketPath
        self.identitiesChanged = identitiesChanged
    }

    /// Answers `request`, sent by `peer` (whose rights the admin socket has just checked).
    public func handle(_ peer: PeerCredentials, _ request: ControlRequest) async -> ControlReply {
        do {
            switch try AdminControl.Command(request) {
            case .create(let command): return .ok(try await create(command, for: peer).json)
            case .list(let command):
                return .ok(try await list(command).json)
            case .show(let command):
                guard let identity = await pool.identity(named: command.identity) else {
                    throw ControlFailure(.notFound, "no identity named \(command.identity)")
                }
                return .ok(Self.describe(identity, deregistered: await pool.isDeregistered(identity.name), socket: socketPath(identity.name)).json)
            case .delete(let command):
                try await pool.delete(name: command.identity)
                try await identitiesChanged(.deleted(command.identity))
                return .ok(IdentityDeleted(deleted: command.identity).json)
            case .setOwner(let command):
                let name = command.identity
                let owner = try Self.user(command.owner)
                guard let previous = await pool.identity(named: name) else { throw PoolError.notFound(name) }
                let record = try await pool.setOwner(name: name, uid: owner)
                do {
                    try await identitiesChanged(.ownerChanged(name))
                } catch {
                    // The old socket still serves the old owner: the record goes back to match it.
                    _ = try? await pool.setOwner(name: name, uid: previous.ownerUID)
                    throw error
                }
                return .ok(Self.describe(record).json)
            }
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch let error as PoolError {
            return .error(Self.failure(error))
        } catch {
            return .error(ControlFailure(.internalError, "\(error)"))
        }
    }

    private func create(_ command: AdminControl.CreateIdentity, for peer: PeerCredentials) async throws -> IdentityInfo {
        let name = command.identity
        var create = IdentityPool.Request(owner: try Self.user(command.owner))
        if let lease = command.lease { create.lease = try Self.holder(of: lease, askedBy: peer) }
        create.groups = try command.groups.map(Self.group)
        create.hostname = command.hostname
        create.tags = command.tags ?? []
        create.isPublic = command.isPublic
        create.isEphemeral = command.isEphemeral
        create.autoApprove = command.autoApprove
        let record = try await pool.create(name: name, create)
        do {
            try await identitiesChanged(.created(name))
        } catch {
            // An identity nobody can reach is no use: deregistered and deleted again.
            try? await pool.delete(name: name)
            throw error
        }
        return Self.describe(record, socket: socketPath(name))
    }

    /// The process a lease names, as it is now: the caller (its connection's peer credentials)
    /// or the pid given, which must be running.
    static func holder(of lease: AdminControl.Lease, askedBy peer: PeerCredentials) throws(ControlFailure) -> ProcessStamp {
        let pid: Int32
        switch lease {
        case .caller: pid = peer.pid
        case .process(let given): pid = given
        }
        guard let stamp = ProcessStamp.current(pid: pid) else {
            throw ControlFailure(.notFound, "cannot lease to process \(pid): it is not running")
        }
        return stamp
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
        case .deregistered: ControlFailure(.unavailable, error.description)
        case .busy: ControlFailure(.unavailable, error.description)
        }
    }

    /// An identity as `identity show` prints it.
    /// A page of `identity.list`: up to its `limit` rows after its `after`, fewer if the reply
    /// could pass `IdentityList.pageBytes`. Owners' names are looked up once per page.
    private func list(_ command: AdminControl.ListIdentities) async throws -> IdentityList {
        let limit = command.limit ?? AdminControl.ListIdentities.longestPage
        let (records, more) = await pool.page(after: command.after, limit: limit)
        let gone = await pool.deregisteredNames
        var owners: [UInt32: String] = [:]
        var rows: [IdentityInfo] = []
        rows.reserveCapacity(records.count)
        var bytes = 64
        for record in records {
            let owner = owners[record.ownerUID] ?? SystemAccounts.userName(record.ownerUID)
            owners[record.ownerUID] = owner
            let row = Self.describe(record, owner: owner, deregistered: gone.contains(record.name))
            bytes += row.jsonBytesBound + 1
            if bytes > IdentityList.pageBytes, !rows.isEmpty { break }
            rows.append(row)
        }
        let next = rows.count < records.count || more ? rows.last?.name : nil
        return IdentityList(identities: rows, total: await pool.count, next: next)
    }

    public static func describe(_ record: IdentityRecord, owner: String? = nil, deregistered: Bool = false, socket: String? = nil) -> IdentityInfo {
        IdentityInfo(
            name: record.name, nodeID: record.nodeID, address: Address(network: record.network, node: record.nodeID).description,
            ownerUID: record.ownerUID, owner: owner ?? SystemAccounts.userName(record.ownerUID), groups: record.allowedGIDs, tags: record.tags,
            isPublic: record.isPublic, isEphemeral: record.isEphemeral, autoApprove: record.autoApprove, createdAt: record.createdAt,
            hostname: record.hostname, isDeregistered: deregistered, leasePID: record.lease?.pid, socket: socket)
    }
}
