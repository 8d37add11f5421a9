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
/// never get the same one. Owned by `Registry`, which serialises all access.
public final class PostgresRegistryStore: RegistryStorage {
    let session: PostgresSession

    /// How long start-up (connecting, migrating, loading every row) may take.
    public static let startTimeout: TimeAmount = .seconds(30)

    /// Connects to `location` and brings its schema up to date. Throws, naming the database,
    /// when it cannot be reached, refuses us, or holds a newer schema.
    public init(
        location: PostgresLocation, logger: Logger = Logger(label: "pilot-rendezvous.postgres"),
        connectTimeout: TimeAmount = .milliseconds(500), statementTimeout: TimeAmount = .milliseconds(1400)
    ) throws {
        var timeouts = PostgresSession.Timeouts()
        timeouts.connect = connectTimeout
        timeouts.statement = statementTimeout
        // A first connect may be slow (a server starting, TLS): given more time than later ones.
        var starting = timeouts
        starting.connect = max(connectTimeout, .seconds(5))
        session = PostgresSession(location: location, timeouts: starting, logger: logger)
        try PostgresSchema.migrate(session, timeout: Self.startTimeout)
        session.timeouts = timeouts
    }

    var location: String { session.location.description }

    func load(now: Double) throws -> RegistryState {
        let timeout = Self.startTimeout
        let nodes = try session.rows(
            """
            SELECT id, public_key, owner, real_addr, hostname, tags, public, version, online, relay_only, reclaimable_hostname,
                offline_since, registered_from, signs_values, last_nonce, lan_addrs, listing, description, category, register_sequence
            FROM node
            """, timeout: timeout
        ).map { row in
            let cells = row.makeRandomAccess()
            func value<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T { try cells[index].decode(T.self) }
            return NodeRecord(
                id: UInt32(truncatingIfNeeded: try value(0, Int64.self)), publicKey: Array(buffer: try value(1, ByteBuffer.self)),
                owner: try value(2, String.self), realAddress: try value(3, String.self), hostname: try value(4, String?.self),
                tags: try value(5, String.self).split(separator: ",").map(String.init), isPublic: try value(6, Bool.self),
                version: try value(7, String.self), lastSeen: now, online: try value(8, Bool.self), relayOnly: try value(9, Bool.self),
                reclaimableHostname: try value(10, String?.self), offlineSince: try value(11, Int64?.self),
                registeredFrom: try value(12, String.self), signsValues: try value(13, Bool.self), lastNonce: try value(14, Int64.self),
                lanAddresses: try value(15, String.self).split(separator: ",").map(String.init),
                listing: DirectoryListing(
                    choice: DirectoryListing.Choice(rawValue: try value(16, String.self)) ?? .automatic,
                    description: try value(17, String.self), category: try value(18, String.self)),
                registerSequence: try value(19, Int64.self))
        }
        let trust = try session.rows("SELECT a, b FROM trust", timeout: timeout).map { row in
            let (a, b) = try row.decode((Int64, Int64).self)
            return (UInt32(truncatingIfNeeded: a), UInt32(truncatingIfNeeded: b))
        }
        var requests: [UInt32: [PendingHandshake]] = [:]
        for row in try session.rows(
            "SELECT to_node, from_node, justification, timestamp FROM handshake_request ORDER BY timestamp", timeout: timeout)
        {
            let (to, from, justification, timestamp) = try row.decode((Int64, Int64, String, Int64).self)
            requests[UInt32(truncatingIfNeeded: to), default: []].append(
                PendingHandshake(from: UInt32(truncatingIfNeeded: from), justification: justification, timestamp: timestamp))
        }
        var responses: [UInt32: [PendingResponse]] = [:]
        for row in try session.rows("SELECT to_node, from_node, accept, timestamp FROM handshake_response ORDER BY timestamp", timeout: timeout) {
            let (to, from, accept, timestamp) = try row.decode((Int64, Int64, Bool, Int64).self)
            responses[UInt32(truncatingIfNeeded: to), default: []].append(
                PendingResponse(from: UInt32(truncatingIfNeeded: from), accept: accept, timestamp: timestamp))
        }
        var networks: [UInt16: CustomNetwork] = [:]
        for row in try session.rows("SELECT id, name, join_rule, token_digest FROM network", timeout: timeout) {
            let (id, name, ruleText, digest) = try row.decode((Int, String, String, ByteBuffer?).self)
            guard let rule = JoinRule(rawValue: ruleText) else {
                throw StoreError(code: 1, message: "network \(id) (\(name)) has join rule \(ruleText), which this registry does not serve")
            }
            networks[UInt16(truncatingIfNeeded: id)] = CustomNetwork(
                id: UInt16(truncatingIfNeeded: id), name: name, joinRule: rule, token: digest.map { SecretDigest(stored: Array(buffer: $0)) })
        }
        for row in try session.rows("SELECT network, node FROM network_member", timeout: timeout) {
            let (network, node) = try row.decode((Int, Int64).self)
            networks[UInt16(truncatingIfNeeded: network)]?.members.insert(UInt32(truncatingIfNeeded: node))
        }
        return RegistryState(nodes: nodes, trust: trust, requests: requests, responses: responses, networks: Array(networks.values))
    }

    func save(_ node: NodeRecord) throws {
        let id = Int64(node.id)
        let key = ByteBuffer(bytes: node.publicKey)
        let tags = node.tags.joined(separator: ",")
        let lan = node.lanAddresses.joined(separator: ",")
        let listing = node.listing
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

    func retire(_ node: NodeRecord) throws {
        let id = Int64(node.id)
        let hash = ByteBuffer(bytes: Sodium.sha256(node.publicKey))
        try session.rows("DELETE FROM tombstone WHERE id = \(id) OR key_hash = \(hash)")
        try session.rows("INSERT INTO tombstone (id, key_hash) VALUES (\(id), \(hash))")
        try session.rows("DELETE FROM node WHERE id = \(id)")
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
        if trusted {
            try session.rows("INSERT INTO trust (a, b) VALUES (\(low), \(high)) ON CONFLICT DO NOTHING")
        } else {
            try session.rows("DELETE FROM trust WHERE a = \(low) AND b = \(high)")
        }
    }

    func addRequest(to: UInt32, _ request: PendingHandshake) throws {
        try session.rows(
            """
            INSERT INTO handshake_request (to_node, from_node, justification, timestamp)
            VALUES (\(Int64(to)), \(Int64(request.from)), \(request.justification), \(request.timestamp))
            ON CONFLICT (to_node, from_node) DO UPDATE SET justification = EXCLUDED.justification, timestamp = EXCLUDED.timestamp
            """)
    }

    func addResponse(to: UInt32, _ response: PendingResponse) throws {
        try session.rows(
            """
            INSERT INTO handshake_response (to_node, from_node, accept, timestamp)
            VALUES (\(Int64(to)), \(Int64(response.from)), \(response.accept), \(response.timestamp))
            ON CONFLICT (to_node, from_node) DO UPDATE SET accept = EXCLUDED.accept, timestamp = EXCLUDED.timestamp
            """)
    }

    func clearInbox(of node: UInt32) throws {
        try session.rows("DELETE FROM handshake_request WHERE to_node = \(Int64(node))")
        try session.rows("DELETE FROM handshake_response WHERE to_node = \(Int64(node))")
    }

    func add(_ network: CustomNetwork) throws {
        let digest = network.token.map { ByteBuffer(bytes: $0.bytes) }
        try session.rows(
            """
            INSERT INTO network (id, name, join_rule, token_digest)
            VALUES (\(Int(network.id)), \(network.name), \(network.joinRule.rawValue), \(digest))
            """)
        for node in network.members { try setMember(node, of: network.id, true) }
    }

    func setMember(_ node: UInt32, of network: UInt16, _ member: Bool) throws {
        if member {
            try session.rows("INSERT INTO network_member (network, node) VALUES (\(Int(network)), \(Int64(node))) ON CONFLICT DO NOTHING")
        } else {
            try session.rows("DELETE FROM network_member WHERE network = \(Int(network)) AND node = \(Int64(node))")
        }
    }

    func removeMemberships(of node: UInt32) throws {
        try session.rows("DELETE FROM network_member WHERE node = \(Int64(node))")
    }

    func transaction<R>(_ body: () throws -> R) throws -> R {
        try session.transaction(body)
    }
}
