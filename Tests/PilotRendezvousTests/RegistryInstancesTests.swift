import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// Two registries in one process on one PostgreSQL database (`PostgresServer`), as two
/// `pilot-rendezvous --database` instances are: what one is told, the other answers.
final class RegistryInstancesTests: PostgresTestCase {
    private var stores: [PostgresRegistryStore] = []

    /// What "at once" means: another instance answers with the change within this.
    private static let promptly: TimeInterval = 1

    override func tearDown() {
        stores.forEach { $0.stopListening() }
        stores = []
        super.tearDown()
    }

    /// An instance on the test's database, listening for the others once this returns, and
    /// done reading everything as it started listening.
    private func makeInstance(
        commitPatience: TimeAmount = .seconds(30), _ configure: (inout Registry.Configuration) -> Void = { _ in }
    ) throws -> (Registry, PostgresRegistryStore) {
        var configuration = Registry.Configuration()
        configure(&configuration)
        let store = try PostgresRegistryStore(location: try location(), commitPatience: commitPatience)
        stores.append(store)
        let registry = try Registry(postgres: store, configuration: configuration)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5, every: 0.01) { store.readsOfEverything >= 1 }, "listening")
        return (registry, store)
    }

    private func setHostname(_ registry: Registry, _ node: TestNode, _ name: String) -> RegistryMessage {
        registry.handle(
            node.signed("set_hostname", "set_hostname:\(node.id)", ["node_id": .integer(Int64(node.id)), "hostname": .string(name)]),
            peerIP: "127.0.0.1")
    }

    /// Public, in 1.18's form (from the registration's IP).
    private func makePublic(_ registry: Registry, _ node: TestNode) -> RegistryMessage {
        registry.handle(
            node.signed("set_visibility", "set_visibility:\(node.id)", ["node_id": .integer(Int64(node.id)), "public": true]), peerIP: "127.0.0.1")
    }

    private func heartbeat(_ registry: Registry, _ node: TestNode) -> RegistryMessage {
        registry.handle(node.signed("heartbeat", "heartbeat:\(node.id)", ["node_id": .integer(Int64(node.id))]), peerIP: "127.0.0.1")
    }

    /// Seconds until `condition` holds, printed with `what`; fails past `within`.
    @discardableResult
    private func seconds(
        until what: String, within: TimeInterval = RegistryInstancesTests.promptly, _ condition: () throws -> Bool
    ) rethrows -> TimeInterval {
        let started = Date()
        let held = try ChildProcess.waitUntil(timeout: within, every: 0.002, condition)
        let took = Date().timeIntervalSince(started)
        print("RegistryInstancesTests: \(what) after \(String(format: "%.3f", took)) s")
        XCTAssertTrue(held, "\(what) within \(within) s")
        return took
    }

    /// A node registered at A is looked up and resolved at B at once; a relayed handshake
    /// asked at A reaches B's poll (and B's beacon is told); trust reported at A is B's answer;
    /// a hostname, a network and a node retired at A are B's too.
    func testAChangeAtOneInstanceIsAnsweredByTheOtherAtOnce() throws {
        let (a, _) = try makeInstance { $0.adminToken = "s3cret" }
        let queued = NIOLockedValueBox<[UInt32]>([])
        let (b, _) = try makeInstance { $0.handshakeQueued = { node in queued.withLockedValue { $0.append(node) } } }

        var atA = try TestNode()
        try register(a, &atA)
        seconds(until: "a node registered at A looked up at B") { lookup(b, atA).type == "lookup_ok" }
        var atB = try TestNode()
        try register(b, &atB)
        seconds(until: "a node registered at B looked up at A") { lookup(a, atB).type == "lookup_ok" }
        let resolve = atB.signed(
            "resolve", "resolve:\(atB.id):\(atA.id)", ["node_id": .integer(Int64(atA.id)), "requester_id": .integer(Int64(atB.id))])
        XCTAssertEqual(b.handle(resolve, peerIP: "x").type, "error", "A's node is private and trusts nobody yet")

        let asked = a.handle(
            atA.signed(
                "request_handshake", "handshake:\(atA.id):\(atB.id)",
                ["from_node_id": .integer(Int64(atA.id)), "to_node_id": .integer(Int64(atB.id)), "justification": "hello from A"]),
            peerIP: "x")
        XCTAssertEqual(asked["status"], "delivered", asked.json.encodedString())
        var polled: [JSON] = []
        seconds(until: "a handshake asked at A polled at B") {
            let poll = b.handle(atB.signed("poll_handshakes", "poll_handshakes:\(atB.id)", ["node_id": .integer(Int64(atB.id))]), peerIP: "x")
            polled = poll["requests"]?.arrayValue ?? []
            return !polled.isEmpty
        }
        XCTAssertEqual(polled.first?["from_node_id"]?.integerValue, Int64(atA.id))
        XCTAssertEqual(polled.first?["justification"], "hello from A")
        XCTAssertTrue(queued.withLockedValue { $0.contains(atB.id) }, "B's beacon is told a handshake waits")

        let trusted = a.handle(
            atA.signed("report_trust", "report_trust:\(atA.id):\(atB.id)", ["node_id": .integer(Int64(atA.id)), "peer_id": .integer(Int64(atB.id))]),
            peerIP: "x")
        XCTAssertEqual(trusted.type, "report_trust_ok", trusted.json.encodedString())
        let check = RegistryMessage(type: "check_trust", ["node_id": .integer(Int64(atB.id)), "peer_id": .integer(Int64(atA.id))])
        seconds(until: "trust reported at A checked at B") { b.handle(check, peerIP: "x")["trusted"] == true }
        let resolved = b.handle(resolve, peerIP: "x")
        XCTAssertEqual(resolved.type, "resolve_ok", resolved.json.encodedString())
        XCTAssertEqual(resolved["real_addr"], "127.0.0.1:4000")

        XCTAssertEqual(setHostname(a, atA, "alpha").type, "set_hostname_ok")
        let byName = RegistryMessage(type: "resolve_hostname", ["hostname": "alpha"])
        seconds(until: "a hostname set at A resolved at B") { b.handle(byName, peerIP: "x")["node_id"]?.integerValue == Int64(atA.id) }

        let created = a.handle(
            RegistryMessage(type: "create_network", ["node_id": .integer(Int64(atA.id)), "name": "crew", "admin_token": "s3cret"]),
            peerIP: "127.0.0.1")
        XCTAssertEqual(created.type, "create_network_ok", created.json.encodedString())
        let networks = RegistryMessage(type: "list_networks", [:])
        seconds(until: "a network created at A listed at B") {
            b.handle(networks, peerIP: "x")["networks"]?.arrayValue?.contains { $0["name"] == "crew" && $0["members"] == 1 } == true
        }

        let retired = a.handle(atA.signed("deregister", "deregister:\(atA.id)", [
            "node_id": .integer(Int64(atA.id)), "forget_signature": atA.signature("forget:\(atA.id)"),
        ]), peerIP: "127.0.0.1")
        XCTAssertEqual(retired["forgotten"], true, retired.json.encodedString())
        seconds(until: "a node retired at A gone at B") { lookup(b, atA).type == "error" }
        XCTAssertEqual(b.handle(check, peerIP: "x")["trusted"], false, "its trust went with it")
    }

    /// B has not heard of A's changes (it stopped listening): a hostname A gave is refused at
    /// B as taken, as the database's unique constraint decides, and so is a key A registered as
    /// another node's new key; a key A registered gets its id back at B (a host failing over)
    /// rather than a new one.
    func testWhatTheDatabaseHoldsDecidesWhenMemoryIsBehind() throws {
        let (a, _) = try makeInstance()
        let (b, bStore) = try makeInstance()
        var atB = try TestNode()
        try register(b, &atB)
        bStore.stopListening()

        var atA = try TestNode()
        try register(a, &atA)
        var roaming = try TestNode()
        try register(a, &roaming)
        XCTAssertEqual(setHostname(a, atA, "taken").type, "set_hostname_ok")
        XCTAssertEqual(lookup(b, atA).type, "error", "B has not heard of A's node")

        let refused = setHostname(b, atB, "taken")
        XCTAssertEqual(refused.type, "error", refused.json.encodedString())
        XCTAssertEqual(refused["error"], .string("set_hostname: taken is taken by node \(atA.id)"))
        XCTAssertEqual(lookup(b, atA)["hostname"], "taken", "B read the row that holds the name")
        XCTAssertEqual(setHostname(b, atB, "free").type, "set_hostname_ok")

        var keyHolder = try TestNode()
        try register(a, &keyHolder)
        let rotated = b.handle(
            atB.signed(
                "rotate_key", "rotate:\(atB.id):\(keyHolder.publicKey)",
                ["node_id": .integer(Int64(atB.id)), "new_public_key": .string(keyHolder.publicKey)]),
            peerIP: "127.0.0.1")
        XCTAssertEqual(rotated["error"], "rotate_key: that key belongs to another node", rotated.json.encodedString())

        XCTAssertEqual(lookup(b, roaming).type, "error", "B has not heard of A's other node")
        var again = roaming
        try register(b, &again)
        XCTAssertEqual(again.id, roaming.id, "the same node, not a new one")
        XCTAssertEqual(
            try server.psql("SELECT COUNT(*) FROM node", database: database).trimmingCharacters(in: .whitespacesAndNewlines), "4")
        XCTAssertEqual(b.databaseErrors, 0)
    }

    /// A batch of registrations at B, which has not heard of A's changes, asks the database at
    /// once about the keys it does not know: a key A registered keeps its id, a key A retired
    /// gets its old id back, and a new key gets a new one.
    func testABatchAtAnInstanceBehindAsksTheDatabaseAboutItsKeysAtOnce() throws {
        let (a, _) = try makeInstance()
        let (b, bStore) = try makeInstance()
        bStore.stopListening()
        var registered = try TestNode()
        try register(a, &registered)
        XCTAssertEqual(setHostname(a, registered, "held").type, "set_hostname_ok")
        var retired = try TestNode()
        try register(a, &retired)
        let forgotten = a.handle(
            RegistryMessage(
                type: "deregister",
                [
                    "node_id": .integer(Int64(retired.id)), "forget_signature": retired.signature("forget:\(retired.id)"),
                    "signature": retired.signature("deregister:\(retired.id)"),
                ]),
            peerIP: "127.0.0.1")
        XCTAssertEqual(forgotten["forgotten"], true, forgotten.json.encodedString())
        let fresh = try TestNode()

        let reply = b.handle(
            RegistryMessage(type: "batch", ["requests": .array([registered.register().json, retired.register().json, fresh.register().json])]),
            peerIP: "127.0.0.1")
        let replies = reply["replies"]?.arrayValue ?? []
        XCTAssertEqual(replies.count, 3, reply.json.encodedString())
        XCTAssertEqual(replies.first?["node_id"]?.integerValue, Int64(registered.id), "a key A registered keeps its id")
        XCTAssertEqual(replies.dropFirst().first?["node_id"]?.integerValue, Int64(retired.id), "a retired key gets its id back")
        let newID = try XCTUnwrap(replies.last?["node_id"]?.integerValue)
        XCTAssertFalse([Int64(registered.id), Int64(retired.id)].contains(newID))
        XCTAssertEqual(lookup(b, registered)["hostname"], "held", "B has the row A stored")
        XCTAssertEqual(
            try server.psql("SELECT COUNT(*) FROM node", database: database).trimmingCharacters(in: .whitespacesAndNewlines), "3")
        XCTAssertEqual(
            try server.psql("SELECT COUNT(*) FROM tombstone", database: database).trimmingCharacters(in: .whitespacesAndNewlines), "0")
        XCTAssertEqual(b.databaseErrors, 0)
    }

    /// A node that heartbeats only at B stays online when A's reaper runs, though A has not
    /// heard it since it loaded it; a node silent everywhere goes offline, and B learns it;
    /// but not while the database is down.
    /// B's reaper takes offline a node whose hostname A changed while B heard nothing: the
    /// row written is the database's with the node offline, so A's hostname is the one kept
    /// for its return, not the one B last knew.
    func testTheReaperWritesOfflineWhatTheDatabaseHoldsNotAStaleMemory() throws {
        let timeout = 0.5
        let (a, _) = try makeInstance { $0.livenessTimeout = timeout }
        let (b, bStore) = try makeInstance { $0.livenessTimeout = timeout }
        var node = try TestNode()
        try register(a, &node)
        XCTAssertEqual(setHostname(a, node, "before").type, "set_hostname_ok")
        seconds(until: "the hostname at B") { lookup(b, node)["hostname"] == "before" }
        bStore.stopListening()
        XCTAssertEqual(setHostname(a, node, "after").type, "set_hostname_ok")
        XCTAssertEqual(lookup(b, node)["hostname"], "before", "B has not heard of it")
        Thread.sleep(forTimeInterval: timeout * 2.5)

        XCTAssertEqual(b.reap(), 1)
        XCTAssertEqual(
            try server.psql("SELECT online, coalesce(hostname, '-'), reclaimable_hostname FROM node WHERE id = \(node.id)", database: database)
                .trimmingCharacters(in: .whitespacesAndNewlines), "f|-|after")
        XCTAssertEqual(lookup(b, node)["online"], false)
    }

    func testTheReaperTakesOfflineOnlyWhatNoInstanceHears() throws {
        let timeout = 1.0
        let (a, _) = try makeInstance { $0.livenessTimeout = timeout }
        let (b, _) = try makeInstance { $0.livenessTimeout = timeout }
        var silent = try TestNode()
        try register(a, &silent)
        var heard = try TestNode()
        try register(b, &heard)
        seconds(until: "B's node known at A") { lookup(a, heard).type == "lookup_ok" }
        b.shareLiveness()

        let until = Date().addingTimeInterval(timeout * 1.3)
        while Date() < until {
            XCTAssertEqual(heartbeat(b, heard).type, "heartbeat_ok")
            b.shareLiveness()
            Thread.sleep(forTimeInterval: 0.1)
        }
        try server.stop()
        var restarted = false
        defer { if !restarted { try? server.start() } }
        XCTAssertEqual(a.reap(), 0, "the database cannot say who is silent: nobody goes offline")
        XCTAssertEqual(lookup(a, silent)["online"], true)
        try server.start()
        restarted = true

        XCTAssertEqual(a.reap(), 1, "only the node nobody hears")
        XCTAssertEqual(lookup(a, silent)["online"], false)
        XCTAssertEqual(lookup(a, heard)["online"], true, "B hears it, so A's reaper leaves it")
        // B listens again after the restart (at most 5 s of back-off), then hears it or reads it.
        seconds(until: "A's reaping seen at B", within: 8) { lookup(b, silent)["online"] == false }
        XCTAssertEqual(lookup(b, heard)["online"], true)
    }

    /// The connection B listens on is cut (`pg_terminate_backend`) and a change is made at A
    /// before B listens again: B connects again, reads everything, and answers with it.
    func testAfterItsListeningConnectionIsCutAnInstanceReadsWhatItMissed() throws {
        let (a, _) = try makeInstance()
        let (b, bStore) = try makeInstance()
        let listeners = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '\(database)' AND query LIKE 'LISTEN%'"
        XCTAssertEqual(try server.psql(listeners).trimmingCharacters(in: .whitespacesAndNewlines), "2")
        // B's directory copy, which must follow the reading again too.
        let files = try TemporaryDirectory(prefix: "pilot-mirror")
        defer { files.remove() }
        var shown = try TestNode()
        try register(a, &shown)
        XCTAssertEqual(setHostname(a, shown, "shown").type, "set_hostname_ok")
        XCTAssertEqual(makePublic(a, shown).type, "set_visibility_ok")
        seconds(until: "a public node of A at B") { lookup(b, shown)["hostname"] == "shown" }
        let mirror = try DirectoryMirror(path: files.path("directory-index.db"), registry: b)
        let index = try DirectoryIndex(path: mirror.path)
        func listed(_ word: String) throws -> [String] {
            try mirror.catchUp()
            return try index.search(DirectoryQuery(search: word), source: "d").items.compactMap(\.hostname)
        }
        XCTAssertEqual(try listed("shown"), ["shown"])

        _ = try server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database)' AND query LIKE 'LISTEN%'")
        XCTAssertTrue(try ChildProcess.waitUntil(timeout: 2) { try server.psql(listeners).trimmingCharacters(in: .whitespacesAndNewlines) == "0" })
        var missed = try TestNode()
        try register(a, &missed)
        let gone = a.handle(shown.signed("deregister", "deregister:\(shown.id)", ["node_id": .integer(Int64(shown.id))]), peerIP: "127.0.0.1")
        XCTAssertEqual(gone.type, "deregister_ok", gone.json.encodedString())
        XCTAssertEqual(bStore.listeningConnections, 1, "the changes were made while B did not listen")

        seconds(until: "a change made while B did not listen answered at B", within: 5) { lookup(b, missed).type == "lookup_ok" }
        XCTAssertEqual(bStore.listeningConnections, 2)
        XCTAssertEqual(try listed("shown"), [], "a node that left while B did not listen leaves B's directory")
        var later = try TestNode()
        try register(a, &later)
        seconds(until: "a change after B listens again answered at B") { lookup(b, later).type == "lookup_ok" }
        XCTAssertEqual(setHostname(a, later, "later").type, "set_hostname_ok")
        XCTAssertEqual(makePublic(a, later).type, "set_visibility_ok")
        seconds(until: "a listing after B read everything again") { (try? listed("later")) == ["later"] }
    }

    /// B's listening connection is cut, and reading everything again is made to wait: another
    /// session holds the `network` table, so B's snapshot stops after its nodes were read. All
    /// the while B answers from memory at once and writes what the database takes (a
    /// registration); once the table is free, what B registered meanwhile, which its snapshot
    /// does not hold, is still there, and so is what A registered meanwhile.
    func testAnInstanceReadingEverythingAgainKeepsAnsweringAndKeepsWhatItCommittedMeanwhile() throws {
        let (a, aStore) = try makeInstance()
        let (b, bStore) = try makeInstance()
        let (aReads, reads) = (aStore.readsOfEverything, bStore.readsOfEverything)
        var before = try TestNode()
        try register(a, &before)
        seconds(until: "A's node at B") { lookup(b, before).type == "lookup_ok" }

        let server = try self.server
        let database = database
        let holding = 5.0
        let released = DispatchGroup()
        released.enter()
        DispatchQueue.global().async {
            _ = try? server.psql("BEGIN; LOCK TABLE network IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(\(holding)); COMMIT;", database: database)
            released.leave()
        }
        let locked = "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'network' AND l.mode = 'AccessExclusiveLock' AND l.granted"
        XCTAssertTrue(try ChildProcess.waitUntil(timeout: 3) { try server.psql(locked, database: database).trimmingCharacters(in: .whitespacesAndNewlines) == "1" })
        _ = try server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database)' AND query LIKE 'LISTEN%'")
        let waiting = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '\(database)' AND wait_event_type = 'Lock'"
        XCTAssertTrue(
            try ChildProcess.waitUntil(timeout: 3) { try server.psql(waiting).trimmingCharacters(in: .whitespacesAndNewlines) == "2" },
            "both instances read everything again and wait for the table")
        XCTAssertEqual(bStore.readsOfEverything, reads, "B's reading waits")

        var started = Date()
        XCTAssertEqual(lookup(b, before).type, "lookup_ok")
        let lookupTook = Date().timeIntervalSince(started)
        var during = try TestNode()
        started = Date()
        try register(b, &during)
        let registerTook = Date().timeIntervalSince(started)
        var fromA = try TestNode()
        try register(a, &fromA)
        print("RegistryInstancesTests: while B read everything again, a lookup took \(String(format: "%.3f", lookupTook)) s, a registration \(String(format: "%.3f", registerTook)) s")
        XCTAssertLessThan(lookupTook, 1, "answered from memory, not after the reading")
        XCTAssertLessThan(registerTook, 2, "a write the database takes is not held up by the reading")
        XCTAssertEqual(bStore.readsOfEverything, reads, "the table is still held")

        XCTAssertEqual(released.wait(timeout: .now() + holding + 10), .success)
        seconds(until: "A's and B's reading of everything done", within: 5) { aStore.readsOfEverything > aReads && bStore.readsOfEverything > reads }
        XCTAssertEqual(lookup(b, during).type, "lookup_ok", "B's own registration made while it read is kept")
        XCTAssertEqual(lookup(a, fromA).type, "lookup_ok", "A's own registration made while it read is kept")
        seconds(until: "A's registration made while B read, at B") { lookup(b, fromA).type == "lookup_ok" }
        seconds(until: "B's registration made while A read, at A") { lookup(a, during).type == "lookup_ok" }
        XCTAssertEqual(lookup(b, before).type, "lookup_ok")
    }

    /// A COMMIT PostgreSQL takes longer to do than B waits for (a deferred trigger sleeps 3 s in
    /// it): B answers "not done" within its deadline and restores its memory; PostgreSQL commits
    /// after all, and once the server process that did it has ended B reads the row again, so B
    /// answers what the database holds, as A does.
    func testACommitLeftUnansweredIsReadAgainOnceItsOutcomeIsSettled() throws {
        let (a, b, node) = try setHostnameWithACommitThatTakes(3, patience: .seconds(30))
        seconds(until: "the hostname PostgreSQL committed after all, at A", within: 8) { lookup(a, node)["hostname"] == "slow" }
        seconds(until: "the same at B, read again once the COMMIT's process ended", within: 8) { lookup(b, node)["hostname"] == "slow" }
        XCTAssertEqual(try storedHostname(node), "slow")
    }

    /// The same COMMIT, with a trigger that would sleep 60 s: past its patience (2 s here) B
    /// ends the server process (`pg_terminate_backend`), which undoes the COMMIT, and B answers
    /// what the database holds: the old name.
    func testACommitLeftUnansweredWhoseProcessWillNotEndIsEndedAndItsOutcomeRead() throws {
        let (a, b, node) = try setHostnameWithACommitThatTakes(60, patience: .seconds(2))
        let process = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '\(database)' AND query = 'COMMIT'"
        seconds(until: "the COMMIT's process ended by B", within: 10) {
            (try? server.psql(process).trimmingCharacters(in: .whitespacesAndNewlines)) == "0"
        }
        XCTAssertEqual(try storedHostname(node), "", "the COMMIT was undone")
        XCTAssertNotEqual(lookup(b, node)["hostname"], "slow")
        XCTAssertNotEqual(lookup(a, node)["hostname"], "slow")
        XCTAssertTrue(try server.log.contains("terminating connection due to administrator command"), "ended by pg_terminate_backend")
    }

    /// Instances A and B, node registered at B, and B's `set_hostname` to "slow" whose COMMIT
    /// a deferred trigger holds `sleep` seconds (B's feed waits `patience` for its process), answered
    /// "not done" within 2 s with B's memory as before.
    private func setHostnameWithACommitThatTakes(
        _ sleep: Int, patience: TimeAmount
    ) throws -> (a: Registry, b: Registry, node: TestNode) {
        let (a, _) = try makeInstance()
        let (b, _) = try makeInstance(commitPatience: patience)
        var node = try TestNode()
        try register(b, &node)
        seconds(until: "B's node at A") { lookup(a, node).type == "lookup_ok" }
        try server.psql(
            """
            CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(\(sleep)); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON node DEFERRABLE INITIALLY DEFERRED
                FOR EACH ROW WHEN (NEW.hostname IS DISTINCT FROM OLD.hostname) EXECUTE FUNCTION slow_commit();
            """, database: database)

        let started = Date()
        let reply = setHostname(b, node, "slow")
        let took = Date().timeIntervalSince(started)
        print("RegistryInstancesTests: a COMMIT left unanswered answered in \(String(format: "%.3f", took)) s: \(reply.json.encodedString())")
        XCTAssertEqual(reply.type, "error")
        XCTAssertTrue(reply["error"]?.stringValue?.contains("not done") == true, reply.json.encodedString())
        XCTAssertLessThan(took, 2, "refused within 2 s")
        XCTAssertNotEqual(lookup(b, node)["hostname"], "slow", "B's memory was restored")
        return (a, b, node)
    }

    /// The hostname column of `node`'s row ("" for none).
    private func storedHostname(_ node: TestNode) throws -> String {
        try server.psql("SELECT hostname FROM node WHERE id = \(node.id)", database: database).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
