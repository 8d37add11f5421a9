import CLinux
import Foundation
public import PilotCrypto
import PilotStore
public import PilotWire

/// The registry's request handling: every message the official 1.18 daemon and pilotctl send,
/// with their semantics (docs/PROTOCOL.md §8), custom networks
/// (`Registry+Networks.swift`), plus our own `find_by_tag`, `set_listing` and `batch` extensions.
/// Transport-free: `RegistryServer` feeds it decoded messages.
///
/// Thread-safe: one lock serialises every request; writes to the store (SQLite, or PostgreSQL)
/// happen inside it, before the reply and before memory changes, so an answered change is
/// durable and a change the store refused leaves nothing behind.
public final class Registry: @unchecked Sendable {
    // @unchecked: all mutable state is accessed only with `lock` held.
    public struct Configuration: Sendable {
        /// Beacon addresses for `beacon_list`, as `host:port`.
        public var beaconAddresses: [String] = []
        /// A node that sent no heartbeat for this long is offline and its hostname freed.
        public var livenessTimeout: Double = 180
        /// New keys registered per source IP: per-second refill and burst (ten seconds' worth).
        /// A host carrying thousands of identities registers them all from one address: raise it.
        public var registrationsPerSecond: Double = 100 {
            didSet { registrationBurst = registrationsPerSecond * 10 }
        }
        public var registrationBurst: Double = 1000
        /// New keys registered from all sources together, per-second refill and burst (ten
        /// seconds' worth), except those an operator's host brings with `hostCredential`: many
        /// source addresses cannot fill the registry faster than this.
        public var newKeysPerSecond: Double = 100 {
            didSet { newKeysBurst = newKeysPerSecond * 10 }
        }
        public var newKeysBurst: Double = 1000
        /// Source addresses whose per-IP bucket is remembered at once; full buckets are forgotten
        /// first, and past this a new source must wait until some are.
        public var maxRegistrationSources = 65536
        /// The operator's hosts present this in `batch` requests; their new keys are not held to
        /// the budgets above. Nil or empty: none. `Registry.hostCredential(adminToken:)` derives
        /// it from the admin token.
        public var hostCredential: String?
        /// Seconds a node may stay offline before it is retired: its row deleted, a tombstone
        /// (id, SHA-256 of its key) kept so the id is never reused and the key gets it back.
        public var retention: Double = 30 * 86400
        /// Called (outside the lock) when a relayed handshake or answer waits for `node`.
        public var handshakeQueued: (@Sendable (UInt32) -> Void)?
        /// Where the beacon last saw `node` (its tunnel socket as the NAT maps it), as
        /// `host:port`; nil when it has not seen it lately. Called under the registry's lock: it
        /// must only read (the beacon's table).
        public var observedEndpoint: (@Sendable (UInt32) -> Endpoint?)?
        /// The registry's admin token: `create_network` needs it, and it may stand in for a node's
        /// signature on `join_network`/`leave_network`. Nil or empty: no networks can be created.
        public var adminToken: String?
        /// With PostgreSQL: seconds between writes of the nodes whose heartbeats this instance
        /// saw, for the reapers of the others sharing the database. Well below
        /// `livenessTimeout`, which counts from the last write.
        public var livenessWriteInterval: Double = 10

        public init() {}
    }

    public let configuration: Configuration
    /// The digest of `configuration.adminToken`, if one is set.
    let adminToken: SecretDigest?
    /// The digest of `configuration.hostCredential`, if one is set.
    let hostCredential: SecretDigest?
    /// `registry.db`, or PostgreSQL; written before a change is answered.
    let store: any RegistryStorage
    /// Held for every read and write of the state below (extensions in other files included).
    let lock = NSLock()
    /// Every node ever registered, by id, online or not.
    var nodes: JournaledDictionary<UInt32, NodeRecord> = [:]
    var databaseErrorCount = 0
    var byKey: JournaledDictionary<[UInt8], UInt32> = [:]
    var byHostname: JournaledDictionary<String, UInt32> = [:]
    /// Hostnames the reaper freed, by the node that may take each back.
    var byReclaimable: JournaledDictionary<String, UInt32> = [:]
    var trust: Set<UInt64> = []
    /// The custom networks and their members.
    var networks = NetworkTable()
    var requests: [UInt32: [PendingHandshake]] = [:]
    var responses: [UInt32: [PendingResponse]] = [:]
    var nextID: UInt32 = 1
    var registrationBuckets: [String: TokenBucket] = [:]
    /// Changes signed the 1.18 way, per node.
    var legacyChangeBuckets: [UInt32: TokenBucket] = [:]
    /// New keys from all sources but the operator's hosts.
    var newKeyBudget: TokenBucket
    /// Nodes retired by this process (`Registry+Retention.swift`).
    var retired = 0
    /// Nodes heard from since liveness was last written for the other instances
    /// (`Registry+Instances.swift`); kept only when the store is shared.
    var seenLately: Set<UInt32> = []
    /// While a batch runs: the keys of its registrations that memory did not know, asked of the
    /// store at once before its first item, and the retired ids among them.
    var batchKeys: (asked: Set<[UInt8]>, retired: [[UInt8]: UInt32])?
    let clock: @Sendable () -> Double
    /// Unix seconds, for what must count across restarts and reboots (retention).
    let wallClock: @Sendable () -> Double

    /// Changes signed the 1.18 way one node may make: a burst of 10, then one every 6 s.
    static let legacyChangeBurst = 10.0
    static let legacyChangesPerSecond = 1.0 / 6

    /// Per-request limits of the wire.
    static let maxJustification = 1024
    static let maxTags = 10

    /// Opens (or creates) `registry.db` in `stateDirectory` and loads it.
    public convenience init(
        stateDirectory: String, configuration: Configuration = Configuration(),
        clock: @escaping @Sendable () -> Double = Registry.uptime,
        wallClock: @escaping @Sendable () -> Double = Registry.unixTime
    ) throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let store = try RegistryStore(path: (stateDirectory as NSString).appendingPathComponent("registry.db"))
        try self.init(store: store, configuration: configuration, clock: clock, wallClock: wallClock)
    }

    /// Loads the state `postgres` holds (a database other instances may share).
    public convenience init(
        postgres: PostgresRegistryStore, configuration: Configuration = Configuration(),
        clock: @escaping @Sendable () -> Double = Registry.uptime,
        wallClock: @escaping @Sendable () -> Double = Registry.unixTime
    ) throws {
        try self.init(store: postgres, configuration: configuration, clock: clock, wallClock: wallClock)
        follow(postgres)
    }

    init(
        store: any RegistryStorage, configuration: Configuration, clock: @escaping @Sendable () -> Double,
        wallClock: @escaping @Sendable () -> Double
    ) throws {
        self.store = store
        self.configuration = configuration
        adminToken = configuration.adminToken.flatMap { $0.isEmpty ? nil : SecretDigest(of: $0) }
        hostCredential = configuration.hostCredential.flatMap { $0.isEmpty ? nil : SecretDigest(of: $0) }
        newKeyBudget = TokenBucket(capacity: configuration.newKeysBurst, ratePerSecond: configuration.newKeysPerSecond, now: clock())
        self.clock = clock
        self.wallClock = wallClock
        try loadState()
    }

    /// Replaces the in-memory state with what the store holds.
    func loadState() throws {
        replaceState(with: try store.load(now: clock()), highestRetired: try store.highestRetiredID())
    }

    /// Replaces the in-memory state with `state`, read from the store, whose highest retired id
    /// is `highestRetired`. Called with `lock` held (or from `init`).
    func replaceState(with state: RegistryState, highestRetired: UInt32) {
        nextID = max(nextID, highestRetired &+ 1)
        // Whoever watches the node table (the directory's copy) hears of every node that was
        // listed before as well as those listed now: a node gone meanwhile is gone there too.
        let watch = nodes.watch
        let watched = watch == nil ? [] : nodes.takeChanged().union(nodes.values.filter { $0.directoryEntry != nil }.map(\.id))
        nodes = [:]
        nodes.watch = watch
        nodes.noteChanged(watched)
        byKey = [:]
        byHostname = [:]
        byReclaimable = [:]
        trust = []
        networks = NetworkTable()
        for node in state.nodes {
            nodes[node.id] = node
            byKey[node.publicKey] = node.id
            if let hostname = node.hostname { byHostname[hostname] = node.id }
            if let hostname = node.reclaimableHostname { byReclaimable[hostname] = node.id }
            if node.registeredFrom.isEmpty {
                // Registered before the source was kept: the IP of its endpoint stands in.
                nodes[node.id]?.registeredFrom = (try? Endpoint(parsing: node.realAddress))?.host ?? node.realAddress
            }
            if !node.online, node.offlineSince == nil {
                // Offline since before retention was kept: its time starts now, and is kept on
                // disk. When the store refuses, memory keeps it all the same (the state is
                // never left half replaced), and the next load dates it again.
                var dated = nodes[node.id] ?? node
                dated.offlineSince = Int64(wallClock())
                do { try store.save(dated) } catch { databaseErrorCount += 1 }
                remember(dated)
            }
            nextID = max(nextID, node.id &+ 1)
        }
        for (a, b) in state.trust { trust.insert(Self.pair(a, b)) }
        for network in state.networks { networks.add(network) }
        requests = state.requests
        responses = state.responses
        // Reading every row took far more memory than the state keeps (a whole result at
        // once, on PostgreSQL): give it back rather than hold it for the process's life.
        malloc_trim(0)
    }

    /// Seconds since boot: a monotonic clock for liveness.
    public static let uptime: @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }

    /// Seconds since 1970: the clock of what must count across reboots (retention).
    public static let unixTime: @Sendable () -> Double = { Date().timeIntervalSince1970 }

    /// `registry.db`, for readers with connections of their own (the directory's index); for
    /// PostgreSQL its URL without the password.
    public var databasePath: String { store.location }

    /// `registry.db`'s path; nil when the state is in PostgreSQL (which the directory's
    /// search does not read yet).
    public var sqlitePath: String? { (store as? RegistryStore)?.path }

    /// Registered nodes (online or not).
    public var nodeCount: Int { lock.withLock { nodes.count } }

    /// `nodeCount` when the registry's lock is free now, else nil: for an event loop, which must
    /// not wait while a request holds the lock on the database.
    public var nodeCountIfIdle: Int? {
        guard lock.try() else { return nil }
        defer { lock.unlock() }
        return nodes.count
    }

    /// Requests and rounds of its own (reaping, retiring, reading what other instances changed)
    /// that failed because the store (`registry.db`, or PostgreSQL) refused a read or a write, so far.
    public var databaseErrors: Int { lock.withLock { databaseErrorCount } }

    /// The Ed25519 key `node` registered with, if it is known.
    public func signingKey(of node: UInt32) -> Ed25519PublicKey? {
        lock.withLock { nodes[node].flatMap { try? Ed25519PublicKey(bytes: $0.publicKey) } }
    }

    /// Whether `node` registered relay-only: its endpoint goes to nobody.
    /// The beacon asks on its event loop, which must not wait long while a request holds the
    /// lock on the database: past 20 ms the node counts as relay-only (its endpoint is not handed
    /// out; a punch waits for the next request), never the other way.
    public func isRelayOnly(_ node: UInt32) -> Bool {
        guard lock.lock(before: Date(timeIntervalSinceNow: 0.02)) else { return true }
        defer { lock.unlock() }
        return nodes[node]?.relayOnly == true
    }

    /// The online node holding `hostname` (case-insensitive), as `resolve_hostname` finds it.
    public func node(withHostname hostname: String) -> UInt32? {
        lock.withLock { byHostname[hostname.lowercased()].flatMap { id in nodes[id]?.online == true ? id : nil } }
    }

    /// The name of network 0, which every registered node is in.
    public static let backbone = "backbone"

    /// The id of the network called `name`: 0 for the backbone, else a custom network's.
    public func network(named name: String) -> UInt16? {
        name == Self.backbone ? 0 : lock.withLock { networks.id(named: name) }
    }

    /// Whether network `id` exists: the backbone or a custom network.
    public func networkExists(_ id: UInt16) -> Bool {
        id == 0 || lock.withLock { networks.byID[id] != nil }
    }

    // MARK: Handling

    /// Answers one request from a client at `peerIP`. Never throws: failures become
    /// `{"type":"error","error":...}` replies naming the problem.
    public func handle(_ request: RegistryMessage, peerIP: String) -> RegistryMessage {
        var notify: [UInt32] = []
        let reply: RegistryMessage
        do {
            reply = try lock.withLock { try dispatch(request, peerIP: peerIP, fromOperatorHost: false, notify: &notify) }
        } catch let error as RegistryFailure {
            reply = RegistryMessage(type: "error", ["error": .string(error.message)])
        } catch let error as WireError {
            reply = RegistryMessage(type: "error", ["error": .string("bad request: \(error)")])
        } catch let error as RegistryStorageUnavailable {
            lock.withLock { databaseErrorCount += 1 }
            reply = RegistryMessage(type: "error", ["error": .string("\(request.type.prefix(64)): not done, \(error); try again")])
        } catch let error as RegistryStorageConflict {
            // Taken again at the retry: another instance won the same value twice in a row.
            reply = RegistryMessage(type: "error", ["error": .string("\(request.type.prefix(64)): not done, \(error); try again")])
        } catch {
            if error is StoreError { lock.withLock { databaseErrorCount += 1 } }
            reply = RegistryMessage(type: "error", ["error": .string("internal error: \(error)")])
        }
        if let queued = configuration.handshakeQueued { notify.forEach(queued) }
        return reply
    }

    /// `fromOperatorHost`: the request came in a batch that carried the host credential.
    func dispatch(
        _ request: RegistryMessage, peerIP: String, fromOperatorHost: Bool, notify: inout [UInt32]
    ) throws -> RegistryMessage {
        switch request.type {
        case "register": return try register(request, peerIP: peerIP, fromOperatorHost: fromOperatorHost)
        case "heartbeat": return try heartbeat(request)
        case "deregister": return try deregister(request)
        case "lookup": return try lookup(request)
        case "resolve": return try resolve(request)
        case "resolve_hostname": return try resolveHostname(request)
        case "set_visibility": return try setVisibility(request, peerIP: peerIP)
        case "set_hostname": return try setHostname(request, peerIP: peerIP)
        case "set_tags": return try setTags(request, peerIP: peerIP)
        case "report_trust": return try reportTrust(request)
        case "revoke_trust": return try revokeTrust(request)
        case "check_trust": return try checkTrust(request)
        case "request_handshake": return try requestHandshake(request, notify: &notify)
        case "poll_handshakes": return try pollHandshakes(request)
        case "respond_handshake": return try respondHandshake(request, notify: &notify)
        case "punch": return try punch(request)
        case "rotate_key": return try rotateKey(request)
        case "create_network": return try createNetwork(request)
        case "join_network": return try joinNetwork(request)
        case "leave_network": return try leaveNetwork(request)
        case "list_networks": return listNetworks()
        case "get_network_policy": return try networkPolicy(request)
        case "list_nodes": return try listNodes(request)
        case "beacon_list": return beaconList()
        case "find_by_tag": return try findByTag(request)
        case "set_listing": return try setListing(request, peerIP: peerIP)
        case "batch": return try batch(request, peerIP: peerIP, notify: &notify)
        default:
            throw RegistryFailure(
                "unknown type: \(request.type.prefix(64)) (this registry serves no network invites, managed networks, "
                    + "network policies or enterprise features)")
        }
    }

    // MARK: Helpers

    /// The node named by `field`, after checking `signature` over `challenge(id)` with its key.
    func signedNode(_ request: RegistryMessage, _ field: String, _ challenge: (UInt32) -> String) throws -> NodeRecord {
        let node = try existing(try request.nodeID(field))
        guard let signature = request["signature"]?.stringValue else { throw RegistryFailure("\(request.type): signature required") }
        try verify(try Ed25519PublicKey(bytes: node.publicKey), signature, challenge(node.id))
        return node
    }

    /// Puts `node` in memory once it is stored, its indexes (key, hostname, reclaimable
    /// hostname) following what changed from the record it replaces.
    func remember(_ node: NodeRecord) {
        if let old = nodes[node.id] {
            if old.publicKey != node.publicKey, byKey[old.publicKey] == node.id { byKey[old.publicKey] = nil }
            if let hostname = old.hostname, hostname != node.hostname, byHostname[hostname] == node.id { byHostname[hostname] = nil }
            if let hostname = old.reclaimableHostname, hostname != node.reclaimableHostname, byReclaimable[hostname] == node.id {
                byReclaimable[hostname] = nil
            }
        }
        // Written only when they change: an unchanged index is not copied into a batch's journal.
        if byKey[node.publicKey] != node.id { byKey[node.publicKey] = node.id }
        if let hostname = node.hostname, byHostname[hostname] != node.id { byHostname[hostname] = node.id }
        if let hostname = node.reclaimableHostname, byReclaimable[hostname] != node.id { byReclaimable[hostname] = node.id }
        nodes[node.id] = node
    }

    /// The registered node `id`.
    func existing(_ id: UInt32) throws -> NodeRecord {
        guard let node = nodes[id] else { throw RegistryFailure("node \(id) is not registered") }
        return node
    }

    func verify(_ key: Ed25519PublicKey, _ signature: String, _ challenge: String) throws {
        guard let bytes = try? Base64.decode(signature), key.isValidSignature(bytes, for: Array(challenge.utf8)) else {
            throw RegistryFailure("invalid signature for \(challenge.prefix(80))")
        }
    }

    static func pair(_ a: UInt32, _ b: UInt32) -> UInt64 {
        UInt64(min(a, b)) << 32 | UInt64(max(a, b))
    }

    static func validateHostname(_ hostname: String) throws {
        guard RegistryMessage.isLabel(hostname, maxLength: 63), !["localhost", "backbone", "broadcast"].contains(hostname) else {
            throw RegistryFailure("invalid hostname \(hostname.prefix(63)): lowercase letters, digits and inner hyphens, at most 63")
        }
    }

    /// Tags: a leading `#` dropped, lower-case letters, digits and inner hyphens, at most 32.
    static func normalisedTag(_ text: String) throws -> String {
        let tag = RegistryMessage.storedTag(text)
        guard RegistryMessage.isLabel(tag, maxLength: 32) else { throw RegistryFailure("invalid tag \(tag.prefix(32)): lowercase letters, digits and inner hyphens, at most 32") }
        return tag
    }
}

/// A request the registry refuses; `message` goes back to the client.
struct RegistryFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
