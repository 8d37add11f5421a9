public import Logging
public import NIOCore
import PilotCrypto
import PilotStore
import PilotWire
import PostgresNIO

/// The registry's durable state in PostgreSQL (`pilot-rendezvous --database postgres://...`):
/// the tables of registry.db (`PostgresSchema`), written through one connection
/// (`PostgresSession`) before a change is answered. Made for several instances sharing the
/// database: node ids come from a sequence, so concurrent registrations at different instances
/// never get the same one; every transaction that writes tells the others what it changed
/// (`NOTIFY`, `RegistryChange`), and `PostgresChangeFeed` hears theirs. Owned by `Registry`,
/// which serialises all access.
public final class PostgresRegistryStore: RegistryStorage {
    let session: PostgresSession
    /// This instance among those sharing the database, in every notification it sends, so it
    /// can tell its own from the others'.
    let instance = String(UInt64.random(in: 1...UInt64.max), radix: 16)
    /// Hears the other instances, once the registry follows them (`listen`).
    private var feed: PostgresChangeFeed?
    let logger: Logger
    /// What the open transaction changed, told to the others when it commits.
    private var changes: [RegistryChange] = []
    private var changeSet: Set<RegistryChange> = []
    /// While a snapshot is read: what this instance committed or read meanwhile
    /// (`recordChanges`).
    private var recordedChanges: [RegistryChange]?

    private let commitPatience: TimeAmount
    /// How long start-up (connecting, migrating, loading every row) may take.
    public static let startTimeout: TimeAmount = .seconds(30)

    /// Connects to `location` and brings its schema up to date. Throws, naming the database,
    /// when it cannot be reached, refuses us, or holds a newer schema.
    /// `commitPatience`: how long the server process of a COMMIT left unanswered is waited for
    /// before it is ended (`PostgresChangeFeed.readAgain`).
    public init(
        location: PostgresLocation, logger: Logger = Logger(label: "pilot-rendezvous.postgres"),
        connectTimeout: TimeAmount = .milliseconds(500), statementTimeout: TimeAmount = .milliseconds(1400),
        commitPatience: TimeAmount = .seconds(30)
    ) throws {
        self.commitPatience = commitPatience
        var timeouts = PostgresSession.Timeouts()
        timeouts.connect = connectTimeout
        timeouts.statement = statementTimeout
        // A first connect may be slow (a server starting, TLS): given more time than later ones.
        var starting = timeouts
        starting.connect = max(connectTimeout, .seconds(5))
        self.logger = logger
        session = PostgresSession(location: location, timeouts: starting, logger: logger)
        try PostgresSchema.migrate(session, timeout: Self.startTimeout)
        session.timeouts = timeouts
    }

    deinit {
        feed?.stop()
    }

    var location: String { session.location.description }

    /// Listens on a connection of its own for what the other instances commit (see
    /// `PostgresChangeFeed`). Called once, by the registry that owns the store.
    func listen(
        backOff: PostgresChangeFeed.BackOff, apply: @escaping @Sendable ([RegistryChange]) -> Bool,
        resynchronise: @escaping @Sendable () -> Bool
    ) {
        let feed = PostgresChangeFeed(
            location: session.location, instance: instance, backOff: backOff, commitPatience: commitPatience, logger: logger, apply: apply,
            resynchronise: resynchronise)
        self.feed = feed
        feed.start()
    }

    /// Stops hearing the other instances (at shutdown): memory no longer follows the database.
    public func stopListening() {
        feed?.stop()
    }

    /// How often the connection that hears the other instances listened: more than once
    /// means it was lost and made again, and everything was read again.
    public var listeningConnections: Int { feed?.connections ?? 0 }

    /// Times everything was read again to the end: once after each listening connection was
    /// made.
    public var readsOfEverything: Int { feed?.readsOfEverything ?? 0 }

    func save(_ node: NodeRecord) throws {
        let id = Int64(node.id)
        let key = ByteBuffer(bytes: node.publicKey)
        let tags = node.tags.joined(separator: ",")
        let lan = node.lanAddresses.joined(separator: ",")
        let listing = node.listing
        try write(.node(node.id)) {
            try session.rows(
                """
                INSERT INTO node (\(unescaped: NodeColumns.list))
                VALUES (\(id), \(key), \(node.owner), \(node.realAddress), \(node.hostname), \(tags), \(node.isPublic), \(node.version),
                    \(node.online), \(node.relayOnly), \(node.reclaimableHostname), \(node.offlineSince), \(node.registeredFrom),
                    \(node.signsValues), \(node.lastNonce), \(lan), \(listing.choice.rawValue), \(listing.description),
                    \(listing.category), \(node.isListed), \(node.registerSequence))
                \(unescaped: NodeColumns.updateOnConflict)
                """)
        }
    }

    func retire(_ node: NodeRecord) throws {
        let id = Int64(node.id)
        let hash = ByteBuffer(bytes: Sodium.sha256(node.publicKey))
        try write(.retired(node.id)) {
            try session.rows("DELETE FROM tombstone WHERE id = \(id) OR key_hash = \(hash)")
            try session.rows("INSERT INTO tombstone (id, key_hash) VALUES (\(id), \(hash))")
            try session.rows("DELETE FROM node WHERE id = \(id)")
        }
    }

    func retiredID(of key: [UInt8]) throws -> UInt32? {
        let hash = ByteBuffer(bytes: Sodium.sha256(key))
        return try session.rows("SELECT id FROM tombstone WHERE key_hash = \(hash)").rows.first
            .map { UInt32(truncatingIfNeeded: try $0.decode(Int64.self)) }
    }

    func revive(_ id: UInt32) throws {
        try session.rows("DELETE FROM tombstone WHERE id = \(Int64(id))")
    }

    func highestRetiredID() throws -> UInt32 {
        let highest = try session.rows("SELECT COALESCE(MAX(id), 0) FROM tombstone").rows.first?.decode(Int64.self) ?? 0
        return UInt32(truncatingIfNeeded: highest)
    }

    /// The sequence's next value: unique across every instance on this database, whatever
    /// `next` says (ids of a rolled-back registration are skipped, never reused). Taken
    /// `idsTaken` at a time, one statement for many registrations: an instance's ids are in
    /// blocks, and those it had not handed out when it stopped are never used.
    func newNodeID(next: UInt32) throws -> UInt32? {
        if spareIDs.isEmpty {
            do {
                spareIDs = try session.rows("SELECT nextval('node_id_seq') FROM generate_series(1, \(Self.idsTaken))").rows
                    .map { UInt32(truncatingIfNeeded: try $0.decode(Int64.self)) }.reversed()
            } catch let error as StoreError where error.message.contains("SQLSTATE 2200H") {
                return nil  // sequence_generator_limit_exceeded: every id is taken
            }
        }
        return spareIDs.popLast()
    }

    /// Ids taken from the sequence at once.
    static let idsTaken = 64
    /// Ids taken from the sequence and not handed out yet, the next last.
    private var spareIDs: [UInt32] = []

    func setTrust(_ a: UInt32, _ b: UInt32, _ trusted: Bool) throws {
        let (low, high) = (Int64(min(a, b)), Int64(max(a, b)))
        try write(.trust(min(a, b), max(a, b))) {
            if trusted {
                try session.rows("INSERT INTO trust (a, b) VALUES (\(low), \(high)) ON CONFLICT DO NOTHING")
            } else {
                try session.rows("DELETE FROM trust WHERE a = \(low) AND b = \(high)")
            }
        }
    }

    func addRequest(to: UInt32, _ request: PendingHandshake) throws {
        try write(.inbox(to)) {
            try session.rows(
                """
                INSERT INTO handshake_request (to_node, from_node, justification, timestamp)
                VALUES (\(Int64(to)), \(Int64(request.from)), \(request.justification), \(request.timestamp))
                ON CONFLICT (to_node, from_node) DO UPDATE SET justification = EXCLUDED.justification, timestamp = EXCLUDED.timestamp
                """)
        }
    }

    func addResponse(to: UInt32, _ response: PendingResponse) throws {
        try write(.inbox(to)) {
            try session.rows(
                """
                INSERT INTO handshake_response (to_node, from_node, accept, timestamp)
                VALUES (\(Int64(to)), \(Int64(response.from)), \(response.accept), \(response.timestamp))
                ON CONFLICT (to_node, from_node) DO UPDATE SET accept = EXCLUDED.accept, timestamp = EXCLUDED.timestamp
                """)
        }
    }

    func clearInbox(of node: UInt32) throws {
        try write(.inbox(node)) {
            try session.rows("DELETE FROM handshake_request WHERE to_node = \(Int64(node))")
            try session.rows("DELETE FROM handshake_response WHERE to_node = \(Int64(node))")
        }
    }

    func add(_ network: CustomNetwork) throws {
        let digest = network.token.map { ByteBuffer(bytes: $0.bytes) }
        try write(.network(network.id)) {
            try session.rows(
                """
                INSERT INTO network (id, name, join_rule, token_digest)
                VALUES (\(Int(network.id)), \(network.name), \(network.joinRule.rawValue), \(digest))
                """)
            for node in network.members { try setMember(node, of: network.id, true) }
        }
    }

    func setMember(_ node: UInt32, of network: UInt16, _ member: Bool) throws {
        try write(.network(network)) {
            if member {
                try session.rows("INSERT INTO network_member (network, node) VALUES (\(Int(network)), \(Int64(node))) ON CONFLICT DO NOTHING")
            } else {
                try session.rows("DELETE FROM network_member WHERE network = \(Int(network)) AND node = \(Int64(node))")
            }
        }
    }

    func removeMemberships(of node: UInt32) throws {
        try transaction {
            // The networks it left, so the others reload those.
            for row in try session.rows("DELETE FROM network_member WHERE node = \(Int64(node)) RETURNING network") {
                note(.network(UInt16(truncatingIfNeeded: try row.decode(Int.self))))
            }
        }
    }

    /// Runs `body`, PostgreSQL's transaction or savepoint, and when the outermost transaction
    /// commits, notifies the others of what it changed, in the same round trip as its COMMIT.
    ///
    /// A COMMIT left unanswered (the deadline passed, the connection broke) may have committed
    /// or not: the caller reports the change not done and restores its memory, and the rows it
    /// names are handed to this instance's own feed, to be read again as another instance's
    /// change would be, once the server process it was sent to has ended (its outcome is then
    /// settled).
    func transaction<R>(_ body: () throws -> R) throws -> R {
        let outermost = session.depth == 0
        if outermost { forgetChanges() }
        defer { if outermost { forgetChanges() } }
        do {
            let result = try session.transaction {
                let result = try body()
                if outermost { session.sendWithCommit(RegistryChange.notifications(of: changes, from: instance)) }
                return result
            }
            if outermost { recordedChanges?.append(contentsOf: changes) }
            return result
        } catch {
            if outermost, session.commitUnanswered, !changes.isEmpty {
                recordedChanges?.append(contentsOf: changes)
                feed?.readAgain(changes, onceEnded: session.unansweredCommitProcess)
            }
            throw error
        }
    }

    /// From now on notes what this instance's transactions commit, and the rows it reads into
    /// memory on its own (`recordRead`), until `takeRecordedChanges`: a snapshot read meanwhile
    /// may hold older rows. Called with `Registry.lock` held.
    func recordChanges() {
        recordedChanges = []
    }

    /// Notes `change`, a row read into memory, while changes are recorded. Called with
    /// `Registry.lock` held.
    func recordRead(_ change: RegistryChange) {
        recordedChanges?.append(change)
    }

    /// What was committed or read since `recordChanges`, and stops noting it. Called with
    /// `Registry.lock` held.
    func takeRecordedChanges() -> [RegistryChange] {
        defer { recordedChanges = nil }
        return recordedChanges ?? []
    }

    /// `body` in a transaction of its own (or of the caller), `change` told when it commits.
    /// Changes of a savepoint rolled back are told too: the others reload the rows, and find
    /// them as they were.
    private func write(_ change: RegistryChange, _ body: () throws -> Void) throws {
        try transaction {
            note(change)
            try body()
        }
    }

    private func note(_ change: RegistryChange) {
        if changeSet.insert(change).inserted { changes.append(change) }
    }

    private func forgetChanges() {
        changes = []
        changeSet = []
    }

    // MARK: Instances sharing the database

    var isShared: Bool { true }

    func storedNode(withKey key: [UInt8]) throws -> NodeRecord? {
        try session.rows("SELECT \(unescaped: Self.nodeColumns) FROM node WHERE public_key = \(ByteBuffer(bytes: key))").rows.first
            .map { try Self.node(from: $0, now: 0) }
    }

    /// Two queries for the whole batch, where each key alone would take two round trips.
    func lookUp(keys: [[UInt8]]) throws -> (stored: [NodeRecord], retired: [[UInt8]: UInt32]) {
        guard !keys.isEmpty else { return ([], [:]) }
        let stored = try session.rows(
            "SELECT \(unescaped: Self.nodeColumns) FROM node WHERE public_key = ANY(\(keys.map { ByteBuffer(bytes: $0) }))"
        ).map { try Self.node(from: $0, now: 0) }
        let byHash = Dictionary(keys.map { (Sodium.sha256($0), $0) }, uniquingKeysWith: { first, _ in first })
        var retired: [[UInt8]: UInt32] = [:]
        for row in try session.rows("SELECT id, key_hash FROM tombstone WHERE key_hash = ANY(\(byHash.keys.map { ByteBuffer(bytes: $0) }))") {
            let (id, hash) = try row.decode((Int64, ByteBuffer).self)
            if let key = byHash[Array(buffer: hash)] { retired[key] = UInt32(truncatingIfNeeded: id) }
        }
        return (stored, retired)
    }

    func recordSeen(_ nodes: [UInt32]) throws {
        guard !nodes.isEmpty else { return }
        try session.rows("UPDATE node SET last_seen = now() WHERE id = ANY(\(nodes.map(Int64.init)))")
    }

    /// The reaper's advisory lock: "pilotrea" in ASCII. Held to the end of the transaction
    /// that takes nodes offline, so two instances never reap at once.
    static let reaperLockKey: Int64 = 0x7069_6C6F_7472_6561

    func stillSilent(_ nodes: [UInt32], timeout: Double) throws -> [UInt32]? {
        guard !nodes.isEmpty else { return [] }
        guard try session.rows("SELECT pg_try_advisory_xact_lock(\(Self.reaperLockKey))").rows.first?.decode(Bool.self) == true else {
            return nil
        }
        return try session.rows(
            """
            SELECT id FROM node
            WHERE id = ANY(\(nodes.map(Int64.init))) AND online AND last_seen < now() - make_interval(secs => \(timeout))
            FOR UPDATE
            """
        ).map { UInt32(truncatingIfNeeded: try $0.decode(Int64.self)) }
    }
}
