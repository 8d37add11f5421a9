import Foundation
public import Logging
import NIOCore
import PilotStore
import PostgresNIO

/// Moves one registry's state from its `registry.db` (SQLite, the one-machine deployment) into
/// an empty PostgreSQL database (`pilot-rendezvous --database URL --import-registry-db PATH`):
/// every node with its key, id, hostname, tags and sequence, the trust pairs, the relayed
/// handshakes waiting, the custom networks and their members, and the tombstones, so every node
/// keeps its address and no retired id is handed out again. All in one transaction: a failure
/// leaves the database as it was. A database that already holds nodes, networks or tombstones
/// is refused, so two registries' states are never mixed.
public enum RegistryImport {
    /// What was moved.
    public struct Summary: Sendable, CustomStringConvertible {
        public var nodes = 0
        public var trustPairs = 0
        public var handshakes = 0
        public var networks = 0
        public var tombstones = 0

        public var description: String {
            "\(nodes) nodes, \(trustPairs) trust pairs, \(handshakes) relayed handshakes, \(networks) networks, \(tombstones) tombstones"
        }
    }

    /// How long the whole import may take.
    static let timeout: TimeAmount = .seconds(600)

    /// Reads `path` (brought to this program's schema first, as pilot-rendezvous would at its
    /// start) and writes it into `location`'s database (made or migrated first).
    public static func run(registryDB path: String, into location: PostgresLocation, logger: Logger) throws -> Summary {
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(code: 1, message: "\(path): no such file")
        }
        let source = try RegistryStore(path: path)
        let state = try source.load(now: 0)
        let tombstones = try source.tombstones()
        let target = try PostgresRegistryStore(location: location, logger: logger)
        return try target.restore(state, tombstones: tombstones)
    }
}

extension PostgresRegistryStore {
    /// Writes `state` and `tombstones` into this empty database in one transaction, and moves
    /// the id sequence past every id they hold.
    func restore(_ state: RegistryState, tombstones: [(id: UInt32, keyHash: [UInt8])]) throws -> RegistryImport.Summary {
        let timeout = RegistryImport.timeout
        return try transaction {
            // Instances starting on this database meanwhile wait: they load once it is whole.
            try session.rows("SELECT pg_advisory_xact_lock(\(PostgresSchema.lockKey))", timeout: timeout)
            let held = try session.rows(
                "SELECT (SELECT count(*) FROM node) + (SELECT count(*) FROM network) + (SELECT count(*) FROM tombstone)", timeout: timeout
            ).rows.first?.decode(Int64.self) ?? 0
            guard held == 0 else {
                throw StoreError(code: 1, message: "\(location) already holds a registry's state (\(held) nodes, networks and tombstones): import only into an empty database")
            }
            var summary = RegistryImport.Summary()
            for node in state.nodes {
                try save(node)
                summary.nodes += 1
            }
            for (a, b) in state.trust {
                try setTrust(a, b, true)
                summary.trustPairs += 1
            }
            for (to, requests) in state.requests {
                for request in requests { try addRequest(to: to, request) }
                summary.handshakes += requests.count
            }
            for (to, responses) in state.responses {
                for response in responses { try addResponse(to: to, response) }
                summary.handshakes += responses.count
            }
            for network in state.networks.sorted(by: { $0.id < $1.id }) {
                try add(network)
                summary.networks += 1
            }
            for tombstone in tombstones {
                let hash = ByteBuffer(bytes: tombstone.keyHash)
                try session.rows("INSERT INTO tombstone (id, key_hash) VALUES (\(Int64(tombstone.id)), \(hash))")
                summary.tombstones += 1
            }
            // The next id handed out is above every id the old registry gave.
            let highest = Int64(max(state.nodes.map(\.id).max() ?? 0, tombstones.map(\.id).max() ?? 0))
            if highest > 0 { try session.rows("SELECT setval('node_id_seq', \(highest))", timeout: timeout) }
            return summary
        }
    }
}
