import PilotStore
import PostgresNIO

/// The registry's tables in PostgreSQL, the same as registry.db's in SQLite with PostgreSQL's
/// types, the beacons' table, and the versioned migrations that make them.
///
/// Each migration is applied once, in its own transaction, recorded in `schema_version`. Every
/// transaction that migrates first takes a transaction-scoped advisory lock, so instances that
/// start together on one database apply each step once, one after the other: the second waits,
/// then finds the step recorded.
enum PostgresSchema {
    /// The advisory lock's key: "pilotreg" in ASCII, as a 64-bit integer.
    static let lockKey: Int64 = 0x7069_6C6F_7472_6567

    /// Step i (from 0) brings the schema to version i + 1. Append only: a step once released
    /// is never changed.
    static let migrations: [[String]] = [
        [
            // Node ids come from the database, so instances sharing it never hand out the same
            // one; never 0, never the broadcast id 0xFFFFFFFF.
            "CREATE SEQUENCE node_id_seq AS BIGINT MINVALUE 1 MAXVALUE 4294967294",
            """
            CREATE TABLE node (
                id BIGINT PRIMARY KEY CHECK (id BETWEEN 1 AND 4294967294),
                public_key BYTEA NOT NULL UNIQUE,
                owner TEXT NOT NULL DEFAULT '',
                real_addr TEXT NOT NULL DEFAULT '',
                hostname TEXT UNIQUE,
                tags TEXT NOT NULL DEFAULT '',
                public BOOLEAN NOT NULL DEFAULT false,
                version TEXT NOT NULL DEFAULT '',
                online BOOLEAN NOT NULL DEFAULT true,
                relay_only BOOLEAN NOT NULL DEFAULT false,
                reclaimable_hostname TEXT,
                offline_since BIGINT,
                registered_from TEXT NOT NULL DEFAULT '',
                signs_values BOOLEAN NOT NULL DEFAULT false,
                last_nonce BIGINT NOT NULL DEFAULT 0,
                lan_addrs TEXT NOT NULL DEFAULT '',
                listing TEXT NOT NULL DEFAULT '',
                description TEXT NOT NULL DEFAULT '',
                category TEXT NOT NULL DEFAULT '',
                listed BOOLEAN NOT NULL DEFAULT false,
                register_sequence BIGINT NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE trust (
                a BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                b BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                PRIMARY KEY (a, b), CHECK (a < b)
            )
            """,
            // The foreign keys' other side, so deleting a node does not scan these tables.
            "CREATE INDEX trust_b ON trust (b)",
            """
            CREATE TABLE handshake_request (
                to_node BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                from_node BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                justification TEXT NOT NULL,
                timestamp BIGINT NOT NULL,
                PRIMARY KEY (to_node, from_node)
            )
            """,
            "CREATE INDEX handshake_request_from ON handshake_request (from_node)",
            """
            CREATE TABLE handshake_response (
                to_node BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                from_node BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                accept BOOLEAN NOT NULL,
                timestamp BIGINT NOT NULL,
                PRIMARY KEY (to_node, from_node)
            )
            """,
            "CREATE INDEX handshake_response_from ON handshake_response (from_node)",
            // Custom networks; the join token is kept as its SHA-256.
            """
            CREATE TABLE network (
                id INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 65535),
                name TEXT NOT NULL UNIQUE,
                join_rule TEXT NOT NULL,
                token_digest BYTEA
            )
            """,
            """
            CREATE TABLE network_member (
                network INTEGER NOT NULL REFERENCES network(id) ON DELETE CASCADE,
                node BIGINT NOT NULL REFERENCES node(id) ON DELETE CASCADE,
                PRIMARY KEY (network, node)
            )
            """,
            "CREATE INDEX network_member_node ON network_member (node)",
            // Retired nodes: their id is never handed out again, and their key gets it back.
            """
            CREATE TABLE tombstone (
                id BIGINT PRIMARY KEY,
                key_hash BYTEA NOT NULL UNIQUE
            )
            """,
        ],
        [
            // When an instance last saw the node (a heartbeat or a registration), written in
            // batches, so the reaper of any instance leaves alone a node another one sees.
            // Rows already there count as seen when the step runs.
            "ALTER TABLE node ADD COLUMN last_seen TIMESTAMPTZ NOT NULL DEFAULT now()",
        ],
        [
            // The instances' beacons, so each finds the others as peers (`BeaconRoster`): where
            // peers send to, refreshed every few seconds by the database's own clock.
            """
            CREATE TABLE beacon (
                id BIGINT PRIMARY KEY CHECK (id BETWEEN 1 AND 4294967295),
                address TEXT NOT NULL,
                last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """,
        ],
    ]

    /// Brings the database to `migrations.count` through `session`; a database from a newer
    /// version of the program is refused rather than damaged. Returns the version it found.
    @discardableResult
    static func migrate(_ session: PostgresSession, timeout: TimeAmount) throws -> Int {
        var found: Int?
        for (index, statements) in migrations.enumerated() {
            try session.transaction {
                try session.rows("SELECT pg_advisory_xact_lock(\(lockKey))", timeout: timeout)
                try session.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                    timeout: timeout)
                let current = try session.rows("SELECT COALESCE(MAX(version), 0) FROM schema_version", timeout: timeout)
                    .rows.first?.decode(Int.self) ?? 0
                if found == nil { found = current }
                guard current <= migrations.count else {
                    throw StoreError(
                        code: 1,
                        message: "\(session.location) has schema version \(current), newer than this program's \(migrations.count)")
                }
                guard current == index else { return }
                for statement in statements { try session.execute(statement, timeout: timeout) }
                try session.rows("INSERT INTO schema_version (version) VALUES (\(index + 1))", timeout: timeout)
            }
        }
        return found ?? 0
    }
}
