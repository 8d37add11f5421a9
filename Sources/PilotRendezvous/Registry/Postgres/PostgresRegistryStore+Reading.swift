import NIOCore
import PilotCrypto
import PilotStore
import PilotWire
import PostgresNIO

/// Reading the registry's state: all of it (at start, and after the connection that hears the
/// other instances was lost), or the rows another instance's change names (`RegistryChange`).
extension PostgresRegistryStore {
    func load(now: Double) throws -> RegistryState {
        try readState(on: session, now: now)
    }

    /// Every row, read on a connection opened for this and closed after, in one snapshot
    /// (`REPEATABLE READ`), with the highest retired id: for reading everything again while the
    /// registry goes on with its own connection and without its lock. Each statement may take
    /// `startTimeout`. Called from one thread at a time (the feed's queue).
    func snapshot(now: Double) throws -> (state: RegistryState, highestRetired: UInt32) {
        let reader = PostgresSession(
            location: session.location, timeouts: .init(connect: .seconds(5), statement: Self.startTimeout), logger: logger)
        try reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        let state = try readState(on: reader, now: now)
        let highest = try reader.rows("SELECT COALESCE(MAX(id), 0) FROM tombstone").rows.first?.decode(Int64.self) ?? 0
        try reader.execute("COMMIT")
        return (state, UInt32(truncatingIfNeeded: highest))
    }

    /// Every row of the state, through `reader`, each statement within `startTimeout`.
    private func readState(on reader: PostgresSession, now: Double) throws -> RegistryState {
        let timeout = Self.startTimeout
        let nodes = try reader.rows("SELECT \(unescaped: Self.nodeColumns) FROM node", timeout: timeout).map { try Self.node(from: $0, now: now) }
        let trust = try reader.rows("SELECT a, b FROM trust", timeout: timeout).map { row in
            let (a, b) = try row.decode((Int64, Int64).self)
            return (UInt32(truncatingIfNeeded: a), UInt32(truncatingIfNeeded: b))
        }
        let (requests, responses) = try inboxes(of: nil, on: reader, timeout: timeout)
        return RegistryState(
            nodes: nodes, trust: trust, requests: requests, responses: responses,
            networks: try networks(nil, on: reader, timeout: timeout))
    }

    /// The rows of the nodes `ids` that have one (those without were retired), in one query.
    func storedNodes(_ ids: [UInt32], now: Double) throws -> [NodeRecord] {
        try session.rows("SELECT \(unescaped: Self.nodeColumns) FROM node WHERE id = ANY(\(ids.map(Int64.init)))")
            .map { try Self.node(from: $0, now: now) }
    }

    /// The rows holding `key` or `hostname`: what refused a change as taken.
    func storedNodes(holding key: [UInt8], or hostname: String?, now: Double) throws -> [NodeRecord] {
        try session.rows(
            "SELECT \(unescaped: Self.nodeColumns) FROM node WHERE public_key = \(ByteBuffer(bytes: key)) OR hostname = \(hostname)"
        ).map { try Self.node(from: $0, now: now) }
    }

    /// Whether `a` and `b` trust each other.
    func isTrusted(_ a: UInt32, _ b: UInt32) throws -> Bool {
        let (low, high) = (Int64(min(a, b)), Int64(max(a, b)))
        return try session.rows("SELECT 1 FROM trust WHERE a = \(low) AND b = \(high)").rows.first != nil
    }

    /// The relayed handshakes waiting for `node`, or for every node when it is nil, oldest first
    /// (through `reader`, by default the registry's session).
    func inboxes(
        of node: UInt32?, on reader: PostgresSession? = nil, timeout: TimeAmount? = nil
    ) throws -> (requests: [UInt32: [PendingHandshake]], responses: [UInt32: [PendingResponse]]) {
        let session = reader ?? session
        let id = node.map(Int64.init)
        var requests: [UInt32: [PendingHandshake]] = [:]
        for row in try session.rows(
            """
            SELECT to_node, from_node, justification, timestamp FROM handshake_request
            WHERE \(id)::BIGINT IS NULL OR to_node = \(id) ORDER BY timestamp
            """, timeout: timeout)
        {
            let (to, from, justification, timestamp) = try row.decode((Int64, Int64, String, Int64).self)
            requests[UInt32(truncatingIfNeeded: to), default: []].append(
                PendingHandshake(from: UInt32(truncatingIfNeeded: from), justification: justification, timestamp: timestamp))
        }
        var responses: [UInt32: [PendingResponse]] = [:]
        for row in try session.rows(
            """
            SELECT to_node, from_node, accept, timestamp FROM handshake_response
            WHERE \(id)::BIGINT IS NULL OR to_node = \(id) ORDER BY timestamp
            """, timeout: timeout)
        {
            let (to, from, accept, timestamp) = try row.decode((Int64, Int64, Bool, Int64).self)
            responses[UInt32(truncatingIfNeeded: to), default: []].append(
                PendingResponse(from: UInt32(truncatingIfNeeded: from), accept: accept, timestamp: timestamp))
        }
        return (requests, responses)
    }

    /// Network `id` with its members, or every network when it is nil (through `reader`, by
    /// default the registry's session).
    func networks(_ id: UInt16?, on reader: PostgresSession? = nil, timeout: TimeAmount? = nil) throws -> [CustomNetwork] {
        let session = reader ?? session
        let filter = id.map(Int.init)
        var networks: [UInt16: CustomNetwork] = [:]
        for row in try session.rows(
            "SELECT id, name, join_rule, token_digest FROM network WHERE \(filter)::INTEGER IS NULL OR id = \(filter)", timeout: timeout)
        {
            let (id, name, ruleText, digest) = try row.decode((Int, String, String, ByteBuffer?).self)
            guard let rule = JoinRule(rawValue: ruleText) else {
                throw StoreError(code: 1, message: "network \(id) (\(name)) has join rule \(ruleText), which this registry does not serve")
            }
            networks[UInt16(truncatingIfNeeded: id)] = CustomNetwork(
                id: UInt16(truncatingIfNeeded: id), name: name, joinRule: rule, token: digest.map { SecretDigest(stored: Array(buffer: $0)) })
        }
        for row in try session.rows(
            "SELECT network, node FROM network_member WHERE \(filter)::INTEGER IS NULL OR network = \(filter)", timeout: timeout)
        {
            let (network, node) = try row.decode((Int, Int64).self)
            networks[UInt16(truncatingIfNeeded: network)]?.members.insert(UInt32(truncatingIfNeeded: node))
        }
        return Array(networks.values)
    }

    /// The `node` columns `node(from:now:)` decodes, in its order.
    static let nodeColumns = """
        id, public_key, owner, real_addr, hostname, tags, public, version, online, relay_only, reclaimable_hostname,
        offline_since, registered_from, signs_values, last_nonce, lan_addrs, listing, description, category, register_sequence
        """

    /// A row of `nodeColumns` as a record, seen last at `now` (memory's liveness starts there).
    static func node(from row: PostgresRow, now: Double) throws -> NodeRecord {
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
}
