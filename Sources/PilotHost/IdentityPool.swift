import FoundationEssentials
public import PilotCrypto
public import PilotStore
public import PilotWire

/// The identities of the host: their rows in `host.db`, their keys (unsealed when first needed
/// and kept), and their registration with the registry (one shared `RegistryClient`).
///
/// Creating an identity registers it first and stores it second, in one transaction: a crash in
/// between leaves at most a key the registry knows and nobody holds, never a half-made identity;
/// a store that fails (a full disk) has the registration taken back.
///
/// Loading reads the rows only: unsealing 100,000 keys (each a scalar multiplication) would add
/// seconds to a cold start, so a key is opened when it first signs, and the whole pool is walked
/// in chunks by `registerAll`, which runs in the background after the sockets serve.
public actor IdentityPool {
    /// What `create` needs besides the name.
    public struct Request: Sendable {
        public var owner: UInt32
        public var groups: [UInt32] = []
        public var hostname: String?
        public var tags: [String] = []
        public var isPublic = false
        public var isEphemeral = false
        public var autoApprove = false
        /// The process whose life the identity lasts, if any.
        public var lease: ProcessStamp?

        public init(owner: UInt32) { self.owner = owner }
    }

    /// How many identities one registry batch (and one stretch of key unsealing) carries.
    static let chunkSize = 1000

    let store: HostStore
    let keys: IdentityKeys
    let registry: RegistryClient
    /// The `listen_addr` sent with every registration: the port of the shared tunnel socket.
    /// The shared tunnel socket's address, registered for every identity without its own.
    var listenAddress: String
    var records: [String: IdentityRecord] = [:]
    /// The names of `records` in order, for `page`.
    var sortedNames: [String] = []
    /// Node id → name, kept with `records` wherever a node id appears, changes or goes.
    var namesByNode: [UInt32: String] = [:]
    /// Identities with a UDP socket of their own register its address instead of the shared one.
    var ownListenAddresses: [String: String] = [:]
    var trusts: [String: TrustTable] = [:]
    var unsealed: [String: Ed25519PrivateKey] = [:]
    /// The registry said in `register_ok` that it takes changes signed over their values and a
    /// nonce (`SignedChange`); the last reply decides. Nil before the first reply.
    var registrySignsValues: Bool?
    /// The last nonce a change was signed with: microseconds since 1970, or one more than the
    /// last, so it only goes up, across restarts too (while the clock does).
    var lastNonce: Int64 = 0
    /// Identities that deregistered themselves since the host started: offline in the
    /// registry, neither heartbeated, polled nor registered again until the host restarts.
    var deregistered: Set<String> = []
    /// Identities whose key is being rotated (`IdentityPool+Rotation.swift`).
    var rotating: Set<String> = []

    public init(store: sending HostStore, keys: IdentityKeys, registry: RegistryClient, listenAddress: String) {
        self.store = store
        self.keys = keys
        self.registry = registry
        self.listenAddress = listenAddress
    }

    /// Reads every stored identity. One key is opened to check the master key: the wrong master
    /// key stops the load with an error naming the identity (it would otherwise look like data
    /// loss later). A single damaged row is reported when its key is first used.
    public func load() throws {
        let all = try store.all()
        // Made at its size, not grown through ever larger tables, each freed behind it.
        var loaded = [String: IdentityRecord](minimumCapacity: all.count)
        for record in all { loaded[record.name] = record }
        records = loaded
        sortedNames = loaded.keys.sorted()
        namesByNode = Dictionary(loaded.values.map { ($0.nodeID, $0.name) }, uniquingKeysWith: { first, _ in first })
        unsealed = [:]
        trusts = try store.allTrust().mapValues(TrustTable.init)
        // Every row was read once: the pages SQLite cached for that (up to its 2 MB) would stay
        // for nothing.
        store.releaseMemory()
        if let first = loaded.keys.min() { _ = try key(first) }
    }

    public var names: [String] { records.keys.sorted() }

    public var count: Int { records.count }

    public func identity(named name: String) -> IdentityRecord? { records[name] }

    /// The identity of this host that has node id `node`, if any.
    public func identity(withNode node: UInt32) -> IdentityRecord? { namesByNode[node].flatMap { records[$0] } }

    public var all: [IdentityRecord] { records.values.sorted { $0.name < $1.name } }

    /// Up to `limit` identities in name order after `after` (nil: from the first), and whether
    /// more follow: a binary search in the names, kept in order as they come and go.
    public func page(after: String?, limit: Int) -> (records: [IdentityRecord], more: Bool) {
        let start = after.map { after in sortedNames.partitionPoint { $0 > after } } ?? 0
        let end = min(sortedNames.count, start + max(0, limit))
        return (sortedNames[start..<end].compactMap { records[$0] }, end < sortedNames.count)
    }

    /// `name`'s signing key, unsealed now if it was not yet.
    func key(_ name: String) throws -> Ed25519PrivateKey {
        if let key = unsealed[name] { return key }
        guard let record = records[name] else { throw PoolError.notFound(name) }
        do {
            let key = try keys.unseal(record.sealedKey)
            unsealed[name] = key
            return key
        } catch {
            throw PoolError.unreadableKey(name: name, reason: "\(error)")
        }
    }

    /// `name`'s signing key, for its tunnel key exchanges.
    public func signingKey(of name: String) throws -> Ed25519PrivateKey { try key(name) }

    /// Creates, registers and stores a new identity; returns its record (with its node id).
    public func create(name: String, _ request: Request) async throws -> IdentityRecord {
        try Self.validate(name: name)
        guard records[name] == nil else { throw PoolError.exists(name) }
        let key = try Ed25519PrivateKey()
        let node = try await register(key)
        let record: IdentityRecord
        do {
            // One round trip for all that was asked, as a batch (the host credential's way in).
            var changes: [RegistryMessage] = []
            if let hostname = request.hostname { changes.append(changeMessage(key, node: node, "set_hostname", ["hostname": .string(hostname)])) }
            if !request.tags.isEmpty { changes.append(changeMessage(key, node: node, "set_tags", ["tags": .array(request.tags.map(JSON.string))])) }
            if request.isPublic { changes.append(changeMessage(key, node: node, "set_visibility", ["public": true])) }
            for (change, reply) in zip(changes, try await registry.send(batch: changes)) where reply.type != "\(change.type)_ok" {
                throw PoolError.registry(reply["error"]?.stringValue ?? reply.type)
            }
            record = IdentityRecord(
                name: name, nodeID: node, sealedKey: keys.seal(key), hostname: request.hostname, tags: request.tags,
                isPublic: request.isPublic, ownerUID: request.owner, allowedGIDs: request.groups,
                createdAt: Int64(Date().timeIntervalSince1970), isEphemeral: request.isEphemeral,
                autoApprove: request.autoApprove, lease: request.lease)
            // A name taken by a concurrent create shows up here as a constraint error.
            do { try store.create(record) } catch let error as StoreError where error.isConstraintViolation {
                throw PoolError.exists(name)
            }
        } catch {
            // Registered but not stored (a full disk, a name taken underneath): nobody will hold
            // this key, and the registry would keep its hostname claimed until it reaps the node.
            await deregister(key, node: node, forget: true)
            throw error
        }
        records[name] = record
        sortedNames.insert(name, at: sortedNames.partitionPoint { $0 >= name })
        namesByNode[record.nodeID] = name
        unsealed[name] = key
        return record
    }

    /// Deregisters (best effort: an unreachable registry reaps it anyway) and deletes. With
    /// `forget` (the default: deleted for good), the registry keeps only the node's tombstone;
    /// an export passes false, so the registry keeps the node's sequence against a stale copy.
    public func delete(name: String, forget: Bool = true) async throws {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        let node = record.nodeID
        if let key = try? key(name) { await deregister(key, node: node, forget: forget) }
        try store.delete(name: name, durably: record.lease == nil)
        if namesByNode[node] == name { namesByNode[node] = nil }
        records[name] = nil
        if case let index = sortedNames.partitionPoint({ $0 >= name }), index < sortedNames.count, sortedNames[index] == name {
            sortedNames.remove(at: index)
        }
        unsealed[name] = nil
        deregistered.remove(name)
        ownListenAddresses[name] = nil
        trusts[name] = nil
    }

    /// Gives `name` to another owner.
    public func setOwner(name: String, uid: UInt32) throws -> IdentityRecord {
        guard var record = records[name] else { throw PoolError.notFound(name) }
        record.ownerUID = uid
        try store.update(record)
        records[name] = record
        return record
    }

    /// Sets or clears (`nil`) the hostname at the registry, then stores it.
    public func setHostname(name: String, hostname: String?) async throws -> IdentityRecord {
        try await change(name, "set_hostname", ["hostname": .string(hostname ?? "")]) { $0.hostname = hostname }
    }

    /// Replaces the tags at the registry (empty clears them), then stores them.
    public func setTags(name: String, tags: [String]) async throws -> IdentityRecord {
        try await change(name, "set_tags", ["tags": .array(tags.map(JSON.string))]) { $0.tags = tags }
    }

    /// Makes the endpoint public or private at the registry, then stores it.
    public func setPublic(name: String, isPublic: Bool) async throws -> IdentityRecord {
        try await change(name, "set_visibility", ["public": .bool(isPublic)]) { $0.isPublic = isPublic }
    }

    /// Tells the registry what the directory lists of identity `name` (`set_listing`, our
    /// extension, signed over its values); the registry's reply. Not kept in host.db: the
    /// registry keeps it, as the directory reads it there.
    func setListing(name: String, _ listing: DirectoryListing) async throws -> RegistryMessage {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        try requireRegistered(name)
        try await learnRegistryForm(as: name)
        guard registrySignsValues == true else {
            throw PoolError.registry("this registry takes no set_listing (a pilot-rendezvous does): nothing to publish to")
        }
        let fields: [String: JSON] = [
            "listing": .string(listing.choice.rawValue), "description": .string(listing.description), "category": .string(listing.category),
        ]
        let reply = try await registry.send(changeMessage(try key(name), node: record.nodeID, "set_listing", fields))
        guard reply.type == "set_listing_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
        return reply
    }

    /// Sends the change `<type>` for identity `name` (`changeMessage`); on success applies
    /// `update` to its record and stores it.
    func change(
        _ name: String, _ type: String, _ fields: [String: JSON], _ update: (inout IdentityRecord) -> Void
    ) async throws -> IdentityRecord {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        try requireRegistered(name)
        try await learnRegistryForm(as: name)
        let reply = try await registry.send(changeMessage(try key(name), node: record.nodeID, type, fields))
        guard reply.type == "\(type)_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
        // The identity may have been changed while the request was out: re-read it.
        guard var current = records[name] else { throw PoolError.notFound(name) }
        update(&current)
        try store.update(current)
        records[name] = current
        return current
    }

    /// Names become file names (`id/NAME.sock`): lower-case letters, digits, `-`, `_`, `.`, not
    /// starting with a dot, at most 63.
    static func validate(name: String) throws {
        let bytes = Array(name.utf8)
        let allowed = { (byte: UInt8) in
            (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
        guard (1...63).contains(bytes.count), bytes.allSatisfy(allowed), bytes.first != 0x2E else {
            throw PoolError.invalidName(name)
        }
    }
}

/// Why an identity operation failed, in words for `pilotctl`.
public enum PoolError: Error, Equatable, CustomStringConvertible {
    case invalidName(String)
    case exists(String)
    case notFound(String)
    case registry(String)
    case unreadableKey(name: String, reason: String)
    /// It deregistered itself: nothing is said to the registry as it until the host restarts.
    case deregistered(String)
    /// Something else is being done to it that this must not overlap.
    case busy(name: String, reason: String)

    public var description: String {
        switch self {
        case .invalidName(let name):
            "invalid identity name \(name.prefix(80)): 1 to 63 of a-z 0-9 - _ . (not starting with a dot)"
        case .exists(let name): "identity \(name) already exists"
        case .notFound(let name): "no identity named \(name)"
        case .registry(let reason): "registry refused: \(reason)"
        case let .unreadableKey(name, reason): "the key of identity \(name) does not open with this master key: \(reason)"
        case .deregistered(let name): "identity \(name) deregistered itself: it is offline in the registry until pilot-host restarts"
        case let .busy(name, reason): "identity \(name): \(reason)"
        }
    }
}
