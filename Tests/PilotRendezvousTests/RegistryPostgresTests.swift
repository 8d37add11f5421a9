import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PilotCrypto
@testable import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// The registry with its state in PostgreSQL (`PostgresRegistryStore`), on a private server
/// shared by the class, a database of its own per test (`PostgresTestCase`).
final class RegistryPostgresTests: PostgresTestCase {
    /// Every schema version, in order: what a database this program migrated records.
    private static let allVersions = (1...PostgresSchema.migrations.count).map(String.init).joined(separator: ",")

    private func makeRegistry(_ configure: (inout Registry.Configuration) -> Void = { _ in }) throws -> Registry {
        var configuration = Registry.Configuration()
        configuration.adminToken = "s3cret"
        configure(&configuration)
        return try Registry(postgres: try PostgresRegistryStore(location: try location()), configuration: configuration)
    }

    private func setTags(_ registry: Registry, _ node: TestNode, _ tags: [String], nonce: Int64) -> RegistryMessage {
        let values = SignedChange.values(type: "set_tags") { $0 == "tags" ? .array(tags.map(JSON.string)) : nil } ?? ""
        return registry.handle(
            RegistryMessage(
                type: "set_tags",
                [
                    "node_id": .integer(Int64(node.id)), "tags": .array(tags.map(JSON.string)), "nonce": .integer(nonce),
                    "signature": node.signature(SignedChange.text(type: "set_tags", node: node.id, nonce: nonce, values: values)),
                ]), peerIP: "127.0.0.1")
    }

    /// The nodes and network `storeEverything` made.
    private struct Stored {
        var a: TestNode, b: TestNode, c: TestNode, d: TestNode
        var network: Int64 = 0
    }

    /// Registration, hostnames, tags, trust, a relayed handshake, a network with members, a
    /// retired node (c): everything a registry stores, made through `registry`'s requests.
    private func storeEverything(in registry: Registry) throws -> Stored {
        var stored = Stored(a: try TestNode(), b: try TestNode(), c: try TestNode(), d: try TestNode())
        try register(registry, &stored.a)
        try register(registry, &stored.b)
        try register(registry, &stored.c)
        try register(registry, &stored.d)
        let (a, b, c, d) = (stored.a, stored.b, stored.c, stored.d)
        XCTAssertEqual(Set([a.id, b.id, c.id, d.id]).count, 4)
        let named = registry.handle(
            a.signed("set_hostname", "set_hostname:\(a.id)", ["node_id": .integer(Int64(a.id)), "hostname": "alpha"]), peerIP: "127.0.0.1")
        XCTAssertEqual(named.type, "set_hostname_ok", named.json.encodedString())
        XCTAssertEqual(setTags(registry, b, ["gpu"], nonce: 1).type, "set_tags_ok")
        let trusted = registry.handle(
            a.signed("report_trust", "report_trust:\(a.id):\(b.id)", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))]),
            peerIP: "x")
        XCTAssertEqual(trusted.type, "report_trust_ok", trusted.json.encodedString())
        let handshake = registry.handle(
            d.signed(
                "request_handshake", "handshake:\(d.id):\(a.id)",
                ["from_node_id": .integer(Int64(d.id)), "to_node_id": .integer(Int64(a.id)), "justification": "hello"]), peerIP: "x")
        XCTAssertEqual(handshake["status"], "delivered", handshake.json.encodedString())
        let created = registry.handle(
            RegistryMessage(type: "create_network", ["node_id": .integer(Int64(a.id)), "name": "crew", "admin_token": "s3cret"]),
            peerIP: "127.0.0.1")
        XCTAssertEqual(created.type, "create_network_ok", created.json.encodedString())
        stored.network = created["network_id"]?.integerValue ?? 0
        let joined = registry.handle(
            b.signed(
                "join_network", "join_network:\(b.id):\(stored.network)", ["node_id": .integer(Int64(b.id)), "network_id": .integer(stored.network)]),
            peerIP: "x")
        XCTAssertEqual(joined.type, "join_network_ok", joined.json.encodedString())
        let forgotten = registry.handle(
            RegistryMessage(
                type: "deregister",
                ["node_id": .integer(Int64(c.id)), "forget_signature": c.signature("forget:\(c.id)"), "signature": c.signature("deregister:\(c.id)")]),
            peerIP: "x")
        XCTAssertEqual(forgotten["forgotten"], true, forgotten.json.encodedString())
        return stored
    }

    /// `registry` holds what `storeEverything` made, and a retired key gets its id back while a
    /// new key gets an id never handed out.
    private func checkEverything(_ registry: Registry, _ stored: inout Stored) throws {
        let (a, b, d) = (stored.a, stored.b, stored.d)
        XCTAssertEqual(registry.nodeCount, 3, "a, b and d; c is retired")
        XCTAssertEqual(registry.node(withHostname: "alpha"), a.id)
        XCTAssertEqual(lookup(registry, b)["tags"], ["gpu"])
        let check = registry.handle(
            RegistryMessage(type: "check_trust", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))]), peerIP: "x")
        XCTAssertEqual(check["trusted"], true)
        let poll = registry.handle(a.signed("poll_handshakes", "poll_handshakes:\(a.id)", ["node_id": .integer(Int64(a.id))]), peerIP: "x")
        XCTAssertEqual(poll["requests"]?.arrayValue?.first?["from_node_id"], .integer(Int64(d.id)))
        XCTAssertEqual(poll["requests"]?.arrayValue?.first?["justification"], "hello")
        XCTAssertEqual(registry.members(of: UInt16(stored.network)), [a.id, b.id].sorted())
        XCTAssertEqual(registry.network(named: "crew"), UInt16(stored.network))

        let oldID = stored.c.id
        try register(registry, &stored.c)
        XCTAssertEqual(stored.c.id, oldID, "a retired key gets its id back")
        var e = try TestNode()
        try register(registry, &e)
        XCTAssertFalse([a.id, b.id, stored.c.id, d.id].contains(e.id), "a new key gets an id never handed out")
        XCTAssertGreaterThan(e.id, max(a.id, b.id, stored.c.id, d.id))
    }

    /// Everything a registry stores is found again by a registry started again on the same
    /// database.
    func testEverythingARegistryStoresIsFoundAgainAfterARestart() throws {
        var stored = try storeEverything(in: try makeRegistry())
        let registry = try makeRegistry()
        try checkEverything(registry, &stored)
        // What is in PostgreSQL, read by psql: the types are PostgreSQL's own.
        XCTAssertEqual(
            try server.psql("SELECT public, online, pg_typeof(public_key) FROM node WHERE id = \(stored.a.id)", database: database)
                .trimmingCharacters(in: .whitespacesAndNewlines),
            "f|t|bytea")
        XCTAssertEqual(
            try server.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version", database: database)
                .trimmingCharacters(in: .whitespacesAndNewlines), Self.allVersions)
    }

    /// A registry.db moved into PostgreSQL (`--import-registry-db`) holds the same: a registry
    /// on the database finds every node, trust pair, handshake, network and tombstone. A second
    /// import into the now full database is refused and changes nothing; a missing file too.
    func testARegistryDBMovedIntoPostgreSQLKeepsEverything() throws {
        let directory = try TemporaryDirectory(prefix: "registry-import")
        var stored: Stored
        do {
            let sqlite = try Registry(stateDirectory: directory.url.path, configuration: {
                var configuration = Registry.Configuration()
                configuration.adminToken = "s3cret"
                return configuration
            }())
            stored = try storeEverything(in: sqlite)
        }
        let path = directory.path("registry.db")
        let summary = try RegistryImport.run(registryDB: path, into: try location(), logger: Logger(label: "test"))
        XCTAssertEqual(summary.nodes, 3)
        XCTAssertEqual(summary.trustPairs, 1)
        XCTAssertEqual(summary.handshakes, 1)
        XCTAssertEqual(summary.networks, 1)
        XCTAssertEqual(summary.tombstones, 1)
        try checkEverything(try makeRegistry(), &stored)

        XCTAssertThrowsError(try RegistryImport.run(registryDB: path, into: try location(), logger: Logger(label: "test"))) { error in
            XCTAssertTrue("\(error)".contains("import only into an empty database"), "\(error)")
        }
        XCTAssertEqual(try server.psql("SELECT count(*) FROM node", database: database).trimmingCharacters(in: .whitespacesAndNewlines), "5")
        XCTAssertThrowsError(try RegistryImport.run(registryDB: directory.path("none.db"), into: try location(), logger: Logger(label: "test"))) {
            XCTAssertTrue("\($0)".contains("no such file"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path("none.db")), "a missing file is not made")
    }

    /// Two registries on one database (the next step's instances), 500 registrations each at
    /// the same time: 1,000 distinct ids, as the database hands them out.
    func testTwoRegistriesRegisteringAtOnceGetDistinctIDs() throws {
        let registries = try (0..<2).map { _ in
            try makeRegistry {
                $0.registrationsPerSecond = 100_000
                $0.newKeysPerSecond = 100_000
            }
        }
        let nodes = try (0..<1000).map { _ in try TestNode() }
        let ids = NIOLockedValueBox<[UInt32]>([])
        let failures = NIOLockedValueBox<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { half in
            for node in nodes[(half * 500)..<(half * 500 + 500)] {
                let reply = registries[half].handle(node.register(), peerIP: "10.0.\(half).1")
                if let id = try? reply.nodeID("node_id") {
                    ids.withLockedValue { $0.append(id) }
                } else {
                    failures.withLockedValue { $0.append(reply.json.encodedString()) }
                }
            }
        }
        XCTAssertEqual(failures.withLockedValue { $0 }, [])
        XCTAssertEqual(ids.withLockedValue { $0.count }, 1000)
        XCTAssertEqual(Set(ids.withLockedValue { $0 }).count, 1000, "no id handed out twice")
        XCTAssertEqual(try server.psql("SELECT COUNT(*) FROM node", database: database).trimmingCharacters(in: .whitespacesAndNewlines), "1000")
        XCTAssertEqual(try makeRegistry().nodeCount, 1000, "a third instance loads them all")
    }

    /// PostgreSQL stopped: a write is refused within 2 s with an error naming the database, and
    /// nothing of it stays in memory; reads from memory are answered. Started again: the next
    /// write goes through, and only it is stored.
    func testWhileTheDatabaseIsDownWritesAreRefusedAndReadsAnsweredThenItRecovers() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        try register(registry, &a)
        XCTAssertEqual(setTags(registry, a, ["before"], nonce: 1).type, "set_tags_ok")

        try server.stop()
        var restarted = false
        defer { if !restarted { try? server.start() } }
        let started = Date()
        let refused = setTags(registry, a, ["during"], nonce: 2)
        let took = Date().timeIntervalSince(started)
        XCTAssertEqual(refused.type, "error")
        let message = refused["error"]?.stringValue ?? ""
        XCTAssertTrue(message.contains("unavailable") && message.contains(database), message)
        XCTAssertLessThan(took, 2, "refused within 2 s")
        let newcomer = try TestNode()
        let unregistered = registry.handle(newcomer.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(unregistered.type, "error", "a registration is a write too")
        let batch = registry.handle(RegistryMessage(type: "batch", ["requests": [newcomer.register().json]]), peerIP: "127.0.0.1")
        // Refused whole, or item by item (a batch that wrote nothing yet has sent nothing).
        let items = batch["replies"]?.arrayValue ?? []
        XCTAssertTrue(batch.type == "error" || (!items.isEmpty && items.allSatisfy { $0["type"] == "error" }), batch.json.encodedString())
        XCTAssertEqual(registry.nodeCount, 1, "the refused registrations left nothing in memory")
        // Reads from memory go on, and show the state before the refused write.
        XCTAssertEqual(lookup(registry, a)["tags"], ["before"])
        let heartbeat = registry.handle(a.signed("heartbeat", "heartbeat:\(a.id)", ["node_id": .integer(Int64(a.id))]), peerIP: "127.0.0.1")
        XCTAssertEqual(heartbeat.type, "heartbeat_ok", heartbeat.json.encodedString())

        try server.start()
        restarted = true
        let stored = setTags(registry, a, ["after"], nonce: 3)
        XCTAssertEqual(stored.type, "set_tags_ok", stored.json.encodedString())
        var again = newcomer
        try register(registry, &again)
        XCTAssertEqual(lookup(try makeRegistry(), a)["tags"], ["after"], "a registry started now reads what was acknowledged")
    }

    /// Two instances starting at once on a new database migrate it once between them.
    func testInstancesStartingTogetherApplyEachMigrationOnce() throws {
        let location = try location()
        let errors = NIOLockedValueBox<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            do { _ = try PostgresRegistryStore(location: location) } catch { errors.withLockedValue { $0.append("\(error)") } }
        }
        XCTAssertEqual(errors.withLockedValue { $0 }, [])
        XCTAssertEqual(
            try server.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version", database: database)
                .trimmingCharacters(in: .whitespacesAndNewlines), Self.allVersions)
    }

    /// A database nobody answers at, or one that does not exist, is refused at start naming it.
    func testAnUnreachableOrMissingDatabaseIsRefusedAtStartNamingIt() throws {
        let nobody = try LoopbackSocket.freePort()
        let started = Date()
        XCTAssertThrowsError(try PostgresRegistryStore(location: PostgresLocation(parsing: "postgres://postgres@127.0.0.1:\(nobody)/nowhere"))) {
            XCTAssertTrue("\($0)".contains("127.0.0.1:\(nobody)/nowhere"), "\($0)")
            XCTAssertTrue("\($0)".contains("unavailable"), "\($0)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertThrowsError(try PostgresRegistryStore(location: PostgresLocation(parsing: try server.url(database: "missing")))) {
            XCTAssertTrue("\($0)".contains("missing"), "\($0)")
        }
        // Through the socket as well as TCP.
        XCTAssertNoThrow(try PostgresRegistryStore(location: PostgresLocation(parsing: try server.socketURL(database: database))))
    }

    /// The executable: served from PostgreSQL (the schema made, a restart finding it), and at
    /// start a bad URL (64), an unreachable database (1) and --import-registry-db without
    /// --database (64) refused, each naming what is wrong.
    func testPilotRendezvousServesFromPostgresAndRefusesWhatItCannotUse() throws {
        let binary = OverlayHarness.rendezvousBinary.path
        let state = try TemporaryDirectory(prefix: "pilot-rdv-pg")
        defer { state.remove() }
        let common = ["--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--state-dir", state.path("state")]
        let nobody = try LoopbackSocket.freePort()
        let unreachable = ChildProcess.run(binary, common + ["--database", "postgres://postgres@127.0.0.1:\(nobody)/registry"], timeout: 30)
        XCTAssertEqual(unreachable.status, 1, unreachable.output)
        XCTAssertTrue(unreachable.output.contains("postgres://postgres@127.0.0.1:\(nobody)/registry unavailable"), unreachable.output)
        let bad = ChildProcess.run(binary, common + ["--database", "postgres://u:secret@h/"], timeout: 30)
        XCTAssertEqual(bad.status, 64, bad.output)
        XCTAssertTrue(bad.output.contains("no database") && !bad.output.contains("secret"), bad.output)
        let importing = ChildProcess.run(binary, common + ["--import-registry-db", state.path("registry.db")], timeout: 30)
        XCTAssertEqual(importing.status, 64, importing.output)
        XCTAssertTrue(importing.output.contains("--import-registry-db needs --database"), importing.output)

        for run in 1...2 {
            let process = try ChildProcess(
                name: "rendezvous-\(run)", executable: OverlayHarness.rendezvousBinary,
                arguments: common + ["--database", try server.socketURL(database: database)], logDirectory: state.url)
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { process.output.contains("registry 127.0.0.1:") }, process.output)
            process.stop()
        }
        XCTAssertEqual(
            try server.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version", database: database)
                .trimmingCharacters(in: .whitespacesAndNewlines), Self.allVersions)
    }
}

extension RegistryPostgresTests {
    /// A role that needs its password: pilot-rendezvous without it is refused at start naming
    /// the database; with `--database-password-file` it serves, and the password is in no
    /// command line; a wrong one, or one in both places, is refused.
    func testThePasswordComesFromAFileAndNeverTheCommandLine() throws {
        try server.addPasswordRole("pilot", password: "pw-\(database)", database: "\(database)_pw")
        let state = try TemporaryDirectory(prefix: "pilot-rdv-pw")
        defer { state.remove() }
        let url = "postgres://pilot@127.0.0.1:\(try server.port)/\(database)_pw"
        let common = ["--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--state-dir", state.path("state"), "--database", url]
        let binary = OverlayHarness.rendezvousBinary
        let without = ChildProcess.run(binary.path, common, timeout: 30)
        XCTAssertEqual(without.status, 1, without.output)
        XCTAssertTrue(without.output.contains("/\(database)_pw"), without.output)
        print("without the password: \(without.output.trimmingCharacters(in: .whitespacesAndNewlines).suffix(400))")
        let wrong = state.path("wrong")
        try "not-it\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        XCTAssertEqual(ChildProcess.run(binary.path, common + ["--database-password-file", wrong], timeout: 30).status, 1)
        let both = ChildProcess.run(
            binary.path, common.dropLast() + [url.replacingOccurrences(of: "pilot@", with: "pilot:x@"), "--database-password-file", wrong], timeout: 30)
        XCTAssertEqual(both.status, 64, both.output)
        XCTAssertTrue(both.output.contains("keep the file"), both.output)

        let file = state.path("password")
        try "pw-\(database)\n".write(toFile: file, atomically: true, encoding: .utf8)
        let process = try ChildProcess(
            name: "rendezvous-pw", executable: binary, arguments: common + ["--database-password-file", file], logDirectory: state.url)
        defer { process.stop() }
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { process.output.contains("registry 127.0.0.1:") }, process.output)
        let commandLine = try String(contentsOfFile: "/proc/\(process.pid)/cmdline", encoding: .utf8)
        XCTAssertFalse(commandLine.contains("pw-\(database)"))
        XCTAssertEqual(try server.psql("SELECT tableowner FROM pg_tables WHERE tablename = 'node'", database: "\(database)_pw")
            .trimmingCharacters(in: .whitespacesAndNewlines), "pilot", "the schema made as the role")
    }
}
