import PilotCrypto
import PilotStore
import PilotWire

/// What the registry knows of one node. Lives in memory; every field but liveness is also in
/// `registry.db`, written before the request that changed it is answered.
struct NodeRecord: Sendable {
    var id: UInt32
    var publicKey: [UInt8]
    var owner: String
    /// Endpoint as the registry saw it: TCP peer IP with the UDP port from `listen_addr`.
    var realAddress: String
    var hostname: String?
    var tags: [String]
    var isPublic: Bool
    var version: String
    /// Monotonic seconds of the last register or heartbeat; not persisted.
    var lastSeen: Double
    var online: Bool
    /// Registered with `relay_only`: its endpoint is never handed out, it is reached through
    /// the beacon.
    var relayOnly = false
    /// The hostname the reaper took when the node went silent: given back when it returns,
    /// unless another node claimed the name meanwhile.
    var reclaimableHostname: String?
    /// Wall-clock seconds (Unix) since it went offline; nil while online. After the
    /// registry's retention the node is retired: its row goes, a tombstone stays.
    var offlineSince: Int64?
    /// The source IP of its current registration: the only address a change signed the 1.18
    /// way (which covers no values) is taken from.
    var registeredFrom = ""
    /// It signed a change in our form (`SignedChange`) once: the 1.18 form is refused for it.
    var signsValues = false
    /// The highest nonce it signed a change with.
    var lastNonce: Int64 = 0
    /// The private IPv4 endpoints its last `register` listed (`lan_addrs`, 1.18): a peer on
    /// the same LAN reaches it there without going out through the NAT.
    var lanAddresses: [String] = []
    /// What it told the directory of itself (`set_listing`).
    var listing = DirectoryListing(choice: .automatic)
    /// The highest sequence it registered with (`RegisterSequence`; 0: none yet): a register
    /// with none, or with one not above it, is a stale copy and refused.
    var registerSequence: Int64 = 0

    /// Whether the directory shows it: online, and public (unless it withdrew) or published.
    var isListed: Bool {
        online && (listing.choice == .published || (isPublic && listing.choice == .automatic))
    }
}

/// A relayed trust handshake waiting for its target to poll.
struct PendingHandshake: Hashable, Sendable {
    var from: UInt32
    var justification: String
    var timestamp: Int64
}

/// A relayed answer to a handshake, waiting for the requester to poll.
struct PendingResponse: Hashable, Sendable {
    var from: UInt32
    var accept: Bool
    var timestamp: Int64
}

/// The registry's durable state in SQLite, for one registry instance. Owned by `Registry`,
/// which serialises all access.
final class RegistryStore: RegistryStorage {
    private let db: Database

    static let migrations = [
        """
        CREATE TABLE node (
            id INTEGER PRIMARY KEY,
            public_key BLOB NOT NULL UNIQUE,
            owner TEXT NOT NULL DEFAULT '',
            real_addr TEXT NOT NULL DEFAULT '',
            hostname TEXT UNIQUE,
            tags TEXT NOT NULL DEFAULT '',
            public INTEGER NOT NULL DEFAULT 0,
            version TEXT NOT NULL DEFAULT '',
            online INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE trust (
            a INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            b INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            PRIMARY KEY (a, b), CHECK (a < b)
        );
        CREATE TABLE handshake_request (
            to_node INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            from_node INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            justification TEXT NOT NULL,
            timestamp INTEGER NOT NULL,
            PRIMARY KEY (to_node, from_node)
        );
        CREATE TABLE handshake_response (
            to_node INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            from_node INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            accept INTEGER NOT NULL,
            timestamp INTEGER NOT NULL,
            PRIMARY KEY (to_node, from_node)
        );
        """,
        "ALTER TABLE node ADD COLUMN relay_only INTEGER NOT NULL DEFAULT 0;",
        // Custom networks (1.18's create/join/leave_network); the join token is kept as its SHA-256.
        """
        CREATE TABLE network (
            id INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 65535),
            name TEXT NOT NULL UNIQUE,
            join_rule TEXT NOT NULL,
            token_digest BLOB
        );
        CREATE TABLE network_member (
            network INTEGER NOT NULL REFERENCES network(id) ON DELETE CASCADE,
            node INTEGER NOT NULL REFERENCES node(id) ON DELETE CASCADE,
            PRIMARY KEY (network, node)
        );
        """,
        "ALTER TABLE node ADD COLUMN reclaimable_hostname TEXT;",
        // Retired nodes: their id is never handed out again, and their key gets it back.
        """
        ALTER TABLE node ADD COLUMN offline_since INTEGER;
        CREATE TABLE tombstone (
            id INTEGER PRIMARY KEY,
            key_hash BLOB NOT NULL UNIQUE
        );
        """,
        """
        ALTER TABLE node ADD COLUMN registered_from TEXT NOT NULL DEFAULT '';
        ALTER TABLE node ADD COLUMN signs_values INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE node ADD COLUMN last_nonce INTEGER NOT NULL DEFAULT 0;
        """,
        "ALTER TABLE node ADD COLUMN lan_addrs TEXT NOT NULL DEFAULT '';",
        // The directory: what each node says of itself, whether it is listed now (online, and
        // public and not withdrawn, or published: `NodeRecord.isListed`, written by `save`), and
        // a full-text index of the listed nodes only (FTS5, its content read from `node`, kept
        // in step by triggers), so a search never touches the others; with prefix indexes of 2
        // to 4 characters, since every search word matches by prefix.
        """
        ALTER TABLE node ADD COLUMN listing TEXT NOT NULL DEFAULT '';
        ALTER TABLE node ADD COLUMN description TEXT NOT NULL DEFAULT '';
        ALTER TABLE node ADD COLUMN category TEXT NOT NULL DEFAULT '';
        ALTER TABLE node ADD COLUMN listed INTEGER NOT NULL DEFAULT 0;
        UPDATE node SET listed = 1 WHERE online = 1 AND public = 1;
        CREATE INDEX node_listed_hostname ON node (listed, hostname);
        CREATE INDEX node_listed_category ON node (listed, category, hostname);
        CREATE VIRTUAL TABLE node_search USING fts5(
            hostname, tags, description, category, content = 'node', content_rowid = 'id',
            tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4'
        );
        CREATE TRIGGER node_search_insert AFTER INSERT ON node WHEN new.listed = 1 BEGIN
            INSERT INTO node_search (rowid, hostname, tags, description, category)
            VALUES (new.id, new.hostname, new.tags, new.description, new.category);
        END;
        CREATE TRIGGER node_search_delete AFTER DELETE ON node WHEN old.listed = 1 BEGIN
            INSERT INTO node_search (node_search, rowid, hostname, tags, description, category)
            VALUES ('delete', old.id, old.hostname, old.tags, old.description, old.category);
        END;
        CREATE TRIGGER node_search_update AFTER UPDATE ON node
        WHEN old.listed = 1 OR new.listed = 1
        BEGIN
            INSERT INTO node_search (node_search, rowid, hostname, tags, description, category)
            SELECT 'delete', old.id, old.hostname, old.tags, old.description, old.category
            WHERE old.listed = 1 AND (new.listed = 0 OR old.hostname IS NOT new.hostname OR old.tags IS NOT new.tags
                OR old.description IS NOT new.description OR old.category IS NOT new.category);
            INSERT INTO node_search (rowid, hostname, tags, description, category)
            SELECT new.id, new.hostname, new.tags, new.description, new.category
            WHERE new.listed = 1 AND (old.listed = 0 OR old.hostname IS NOT new.hostname OR old.tags IS NOT new.tags
                OR old.description IS NOT new.description OR old.category IS NOT new.category);
        END;
        INSERT INTO node_search (rowid, hostname, tags, description, category)
            SELECT id, hostname, tags, description, category FROM node WHERE listed = 1;
        """,
        // The highest signed registration sequence of each node (`RegisterSequence`).
        "ALTER TABLE node ADD COLUMN register_sequence INTEGER NOT NULL DEFAULT 0;",
    ]

    /// The database file.
    var path: String { db.path }

    var location: String { db.path }

    init(path: String) throws {
        db = try Database(path: path)
        try db.migrate(Self.migrations)
    }

    /// Everything, for the in-memory state at start.
    func load(now: Double) throws -> RegistryState {
        let nodes = try db.rows("SELECT id, public_key, owner, real_addr, hostname, tags, public, version, online, relay_only, reclaimable_hostname, offline_since, registered_from, signs_values, last_nonce, lan_addrs, listing, description, category, register_sequence FROM node")
            .map { row in
                NodeRecord(
                    id: UInt32(truncatingIfNeeded: row[0].integer ?? 0), publicKey: row[1].blob ?? [],
                    owner: row[2].text ?? "", realAddress: row[3].text ?? "", hostname: row[4].text,
                    tags: (row[5].text ?? "").split(separator: ",").map(String.init), isPublic: row[6].integer == 1,
                    version: row[7].text ?? "", lastSeen: now, online: row[8].integer == 1, relayOnly: row[9].integer == 1,
                    reclaimableHostname: row[10].text, offlineSince: row[11].integer, registeredFrom: row[12].text ?? "",
                    signsValues: row[13].integer == 1, lastNonce: row[14].integer ?? 0,
                    lanAddresses: (row[15].text ?? "").split(separator: ",").map(String.init),
                    listing: DirectoryListing(
                        choice: DirectoryListing.Choice(rawValue: row[16].text ?? "") ?? .automatic, description: row[17].text ?? "",
                        category: row[18].text ?? ""), registerSequence: row[19].integer ?? 0)
            }
        let trust = try db.rows("SELECT a, b FROM trust").map {
            (UInt32(truncatingIfNeeded: $0[0].integer ?? 0), UInt32(truncatingIfNeeded: $0[1].integer ?? 0))
        }
        var requests: [UInt32: [PendingHandshake]] = [:]
        for row in try db.rows("SELECT to_node, from_node, justification, timestamp FROM handshake_request ORDER BY timestamp") {
            requests[UInt32(truncatingIfNeeded: row[0].integer ?? 0), default: []].append(
                PendingHandshake(
                    from: UInt32(truncatingIfNeeded: row[1].integer ?? 0), justification: row[2].text ?? "",
                    timestamp: row[3].integer ?? 0))
        }
        var responses: [UInt32: [PendingResponse]] = [:]
        for row in try db.rows("SELECT to_node, from_node, accept, timestamp FROM handshake_response ORDER BY timestamp") {
            responses[UInt32(truncatingIfNeeded: row[0].integer ?? 0), default: []].append(
                PendingResponse(
                    from: UInt32(truncatingIfNeeded: row[1].integer ?? 0), accept: row[2].integer == 1,
                    timestamp: row[3].integer ?? 0))
        }
        var networks: [UInt16: CustomNetwork] = [:]
        for row in try db.rows("SELECT id, name, join_rule, token_digest FROM network") {
            let id = UInt16(truncatingIfNeeded: row[0].integer ?? 0)
            let name = row[1].text ?? ""
            guard let rule = JoinRule(rawValue: row[2].text ?? "") else {
                // 1 is SQLITE_ERROR: the file holds what this program cannot serve.
                throw StoreError(code: 1, message: "network \(id) (\(name)) has join rule \(row[2].text ?? "NULL"), which this registry does not serve")
            }
            networks[id] = CustomNetwork(id: id, name: name, joinRule: rule, token: row[3].blob.map(SecretDigest.init(stored:)))
        }
        for row in try db.rows("SELECT network, node FROM network_member") {
            networks[UInt16(truncatingIfNeeded: row[0].integer ?? 0)]?.members.insert(UInt32(truncatingIfNeeded: row[1].integer ?? 0))
        }
        return RegistryState(nodes: nodes, trust: trust, requests: requests, responses: responses, networks: Array(networks.values))
    }

    /// `save`'s statement (prepared once: the cache is keyed by its text).
    private static let upsert =
        "INSERT INTO node (\(NodeColumns.list)) VALUES (\(NodeColumns.saved.map { _ in "?" }.joined(separator: ", "))) \(NodeColumns.updateOnConflict)"

    func save(_ node: NodeRecord) throws(StoreError) {
        try db.run(
            Self.upsert,
            [
                .integer(Int64(node.id)), .blob(node.publicKey), .text(node.owner), .text(node.realAddress),
                node.hostname.map(SQLValue.text) ?? .null, .text(node.tags.joined(separator: ",")),
                .integer(node.isPublic ? 1 : 0), .text(node.version), .integer(node.online ? 1 : 0),
                .integer(node.relayOnly ? 1 : 0), node.reclaimableHostname.map(SQLValue.text) ?? .null,
                node.offlineSince.map(SQLValue.integer) ?? .null, .text(node.registeredFrom),
                .integer(node.signsValues ? 1 : 0), .integer(node.lastNonce), .text(node.lanAddresses.joined(separator: ",")),
                .text(node.listing.choice.rawValue), .text(node.listing.description), .text(node.listing.category),
                .integer(node.isListed ? 1 : 0), .integer(node.registerSequence),
            ])
    }

    /// Deletes `node` (its trust pairs, relayed handshakes and memberships go with it by the
    /// foreign keys) and keeps its tombstone: its id and the SHA-256 of its key.
    func retire(_ node: NodeRecord) throws(StoreError) {
        try db.run(
            "INSERT OR REPLACE INTO tombstone (id, key_hash) VALUES (?, ?)",
            [.integer(Int64(node.id)), .blob(Sodium.sha256(node.publicKey))])
        try db.run("DELETE FROM node WHERE id = ?", [.integer(Int64(node.id))])
    }

    /// The id a retired node with `key` had, if one did.
    func retiredID(of key: [UInt8]) throws(StoreError) -> UInt32? {
        try db.rows("SELECT id FROM tombstone WHERE key_hash = ?", [.blob(Sodium.sha256(key))]).first?.first?.integer
            .map { UInt32(truncatingIfNeeded: $0) }
    }

    /// A retired node's key came back: its row is made again under the same id.
    func revive(_ id: UInt32) throws(StoreError) {
        try db.run("DELETE FROM tombstone WHERE id = ?", [.integer(Int64(id))])
    }

    /// Every tombstone: a retired node's id and the SHA-256 of its key (for moving the state
    /// into PostgreSQL, `RegistryImport`).
    func tombstones() throws(StoreError) -> [(id: UInt32, keyHash: [UInt8])] {
        try db.rows("SELECT id, key_hash FROM tombstone ORDER BY id").map { (UInt32(truncatingIfNeeded: $0[0].integer ?? 0), $0[1].blob ?? []) }
    }

    /// The highest id ever handed out to a node now retired (0: none).
    func highestRetiredID() throws(StoreError) -> UInt32 {
        UInt32(truncatingIfNeeded: try db.rows("SELECT MAX(id) FROM tombstone").first?.first?.integer ?? 0)
    }

    /// This process alone hands out ids: the next one.
    func newNodeID(next: UInt32) throws -> UInt32? {
        next == 0 || next == Address.broadcastNode ? nil : next
    }

    func setTrust(_ a: UInt32, _ b: UInt32, _ trusted: Bool) throws(StoreError) {
        let pair: [SQLValue] = [.integer(Int64(min(a, b))), .integer(Int64(max(a, b)))]
        if trusted {
            try db.run("INSERT OR IGNORE INTO trust (a, b) VALUES (?, ?)", pair)
        } else {
            try db.run("DELETE FROM trust WHERE a = ? AND b = ?", pair)
        }
    }

    func addRequest(to: UInt32, _ request: PendingHandshake) throws(StoreError) {
        try db.run(
            "INSERT OR REPLACE INTO handshake_request (to_node, from_node, justification, timestamp) VALUES (?, ?, ?, ?)",
            [.integer(Int64(to)), .integer(Int64(request.from)), .text(request.justification), .integer(request.timestamp)])
    }

    func addResponse(to: UInt32, _ response: PendingResponse) throws(StoreError) {
        try db.run(
            "INSERT OR REPLACE INTO handshake_response (to_node, from_node, accept, timestamp) VALUES (?, ?, ?, ?)",
            [.integer(Int64(to)), .integer(Int64(response.from)), .integer(response.accept ? 1 : 0), .integer(response.timestamp)])
    }

    func clearInbox(of node: UInt32) throws(StoreError) {
        try db.run("DELETE FROM handshake_request WHERE to_node = ?", [.integer(Int64(node))])
        try db.run("DELETE FROM handshake_response WHERE to_node = ?", [.integer(Int64(node))])
    }

    /// Stores a new network with its first members.
    func add(_ network: CustomNetwork) throws(StoreError) {
        try db.run(
            "INSERT INTO network (id, name, join_rule, token_digest) VALUES (?, ?, ?, ?)",
            [
                .integer(Int64(network.id)), .text(network.name), .text(network.joinRule.rawValue),
                network.token.map { .blob($0.bytes) } ?? .null,
            ])
        for node in network.members { try setMember(node, of: network.id, true) }
    }

    func setMember(_ node: UInt32, of network: UInt16, _ member: Bool) throws(StoreError) {
        let pair: [SQLValue] = [.integer(Int64(network)), .integer(Int64(node))]
        if member {
            try db.run("INSERT OR IGNORE INTO network_member (network, node) VALUES (?, ?)", pair)
        } else {
            try db.run("DELETE FROM network_member WHERE network = ? AND node = ?", pair)
        }
    }

    /// Drops `node` from every network (an explicit deregister).
    func removeMemberships(of node: UInt32) throws(StoreError) {
        try db.run("DELETE FROM network_member WHERE node = ?", [.integer(Int64(node))])
    }

    /// One instance alone: memory holds all there is, liveness included.
    var isShared: Bool { false }

    func storedNode(withKey key: [UInt8]) throws -> NodeRecord? { nil }

    /// Memory knows every node; a tombstone is a local read, one per key.
    func lookUp(keys: [[UInt8]]) throws -> (stored: [NodeRecord], retired: [[UInt8]: UInt32]) {
        var retired: [[UInt8]: UInt32] = [:]
        for key in keys { if let id = try retiredID(of: key) { retired[key] = id } }
        return ([], retired)
    }

    func recordSeen(_ nodes: [UInt32]) throws {}

    func stillSilent(_ nodes: [UInt32], timeout: Double) throws -> [UInt32]? { nodes }

    func transaction<R>(_ body: () throws -> R) throws -> R {
        try db.transaction(body)
    }
}
