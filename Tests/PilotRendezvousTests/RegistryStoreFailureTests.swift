import Foundation
import PilotCrypto
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

@testable import PilotRendezvous

/// A change the store refuses is answered with an error and leaves memory as it was: nothing is
/// acknowledged and then lost, and nothing unacknowledged is shown. On SQLite, through a store
/// that refuses on demand.
final class RegistryStoreFailureTests: XCTestCase {
    /// registry.db, refusing every write while `refusing`, or only the commit of an outermost
    /// transaction while `refusingCommits` (what a full disk does to a batch).
    private final class RefusingStore: RegistryStorage {
        let inner: RegistryStore
        var refusing = false
        var refusingCommits = false
        /// Every write refused as a unique violation (another instance taking the same value,
        /// again and again).
        var conflicting = false
        private var depth = 0

        init(path: String) throws { inner = try RegistryStore(path: path) }

        private func write<R>(_ body: () throws -> R) throws -> R {
            if refusing { throw RegistryStorageUnavailable(database: inner.location, reason: "refused by the test") }
            if conflicting { throw RegistryStorageConflict(database: inner.location, reason: "duplicate key value (SQLSTATE 23505)") }
            return try body()
        }

        var location: String { inner.location }
        func load(now: Double) throws -> RegistryState { try inner.load(now: now) }
        func save(_ node: NodeRecord) throws { try write { try inner.save(node) } }
        func retire(_ node: NodeRecord) throws { try write { try inner.retire(node) } }
        func retiredID(of key: [UInt8]) throws -> UInt32? { try inner.retiredID(of: key) }
        func revive(_ id: UInt32) throws { try write { try inner.revive(id) } }
        func highestRetiredID() throws -> UInt32 { try inner.highestRetiredID() }
        func newNodeID(next: UInt32) throws -> UInt32? { try inner.newNodeID(next: next) }
        func setTrust(_ a: UInt32, _ b: UInt32, _ trusted: Bool) throws { try write { try inner.setTrust(a, b, trusted) } }
        func addRequest(to: UInt32, _ request: PendingHandshake) throws { try write { try inner.addRequest(to: to, request) } }
        func addResponse(to: UInt32, _ response: PendingResponse) throws { try write { try inner.addResponse(to: to, response) } }
        func clearInbox(of node: UInt32) throws { try write { try inner.clearInbox(of: node) } }
        func add(_ network: CustomNetwork) throws { try write { try inner.add(network) } }
        func setMember(_ node: UInt32, of network: UInt16, _ member: Bool) throws { try write { try inner.setMember(node, of: network, member) } }
        func removeMemberships(of node: UInt32) throws { try write { try inner.removeMemberships(of: node) } }
        var isShared: Bool { inner.isShared }
        func storedNode(withKey key: [UInt8]) throws -> NodeRecord? { try inner.storedNode(withKey: key) }
        func lookUp(keys: [[UInt8]]) throws -> (stored: [NodeRecord], retired: [[UInt8]: UInt32]) { try inner.lookUp(keys: keys) }
        func recordSeen(_ nodes: [UInt32]) throws { try write { try inner.recordSeen(nodes) } }
        func stillSilent(_ nodes: [UInt32], timeout: Double) throws -> [UInt32]? { try inner.stillSilent(nodes, timeout: timeout) }

        func transaction<R>(_ body: () throws -> R) throws -> R {
            depth += 1
            defer { depth -= 1 }
            return try inner.transaction {
                let result = try body()
                if depth == 1, refusingCommits { throw StoreError(code: 13, message: "database or disk is full") }
                return result
            }
        }
    }

    private var directory: TemporaryDirectory!
    private var now = 1000.0

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-refusing")
    }

    override func tearDown() {
        directory.remove()
    }

    private func makeRegistry() throws -> (Registry, RefusingStore) {
        let store = try RefusingStore(path: directory.path("registry.db"))
        let clock = Clock(self)
        return (try Registry(store: store, configuration: Registry.Configuration(), clock: { clock.read() }, wallClock: { clock.read() }), store)
    }

    private final class Clock: @unchecked Sendable {
        weak var test: RegistryStoreFailureTests?
        init(_ test: RegistryStoreFailureTests) { self.test = test }
        func read() -> Double { test?.now ?? 0 }
    }

    private func register(_ registry: Registry, _ node: inout TestNode) throws {
        let reply = registry.handle(node.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(reply.type, "register_ok", reply.json.encodedString())
        node.id = try reply.nodeID("node_id")
    }

    private func setHostname(_ registry: Registry, _ node: TestNode, _ name: String) -> RegistryMessage {
        registry.handle(
            node.signed("set_hostname", "set_hostname:\(node.id)", ["node_id": .integer(Int64(node.id)), "hostname": .string(name)]),
            peerIP: "127.0.0.1")
    }

    func testRefusedWritesLeaveMemoryAsItWas() throws {
        let (registry, store) = try makeRegistry()
        var a = try TestNode()
        var b = try TestNode()
        try register(registry, &a)
        try register(registry, &b)
        XCTAssertEqual(setHostname(registry, a, "alpha").type, "set_hostname_ok")
        // a goes silent: offline, its name free, and a's to take back.
        now += 1000
        XCTAssertEqual(registry.reap(), 2)
        now += 1
        let heartbeat = b.signed("heartbeat", "heartbeat:\(b.id)", ["node_id": .integer(Int64(b.id))])
        XCTAssertEqual(registry.handle(heartbeat, peerIP: "127.0.0.1").type, "heartbeat_ok")

        store.refusing = true
        let newcomer = try TestNode()
        let refused = registry.handle(newcomer.register(), peerIP: "127.0.0.1")
        XCTAssertTrue(refused["error"]?.stringValue?.contains("not done") == true, refused.json.encodedString())
        XCTAssertEqual(registry.nodeCount, 2)
        XCTAssertEqual(registry.handle(a.register(), peerIP: "127.0.0.1").type, "error", "a's return is a write")
        XCTAssertNil(registry.node(withHostname: "alpha"), "a did not come back and take its name")
        XCTAssertEqual(setHostname(registry, b, "alpha").type, "error")
        XCTAssertNil(registry.node(withHostname: "alpha"), "b did not take it either")
        let rotated = try TestNode()
        let rotation = b.signed(
            "rotate_key", "rotate:\(b.id):\(rotated.publicKey)", ["node_id": .integer(Int64(b.id)), "new_public_key": .string(rotated.publicKey)])
        XCTAssertEqual(registry.handle(rotation, peerIP: "127.0.0.1").type, "error")
        XCTAssertEqual(registry.signingKey(of: b.id)?.base64, b.publicKey, "b keeps its key")
        let goodbye = b.signed("deregister", "deregister:\(b.id)", ["node_id": .integer(Int64(b.id))])
        XCTAssertEqual(registry.handle(goodbye, peerIP: "127.0.0.1").type, "error")
        XCTAssertEqual(
            registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(b.id))]), peerIP: "x")["online"], true,
            "b is still online")
        now += 1000
        let errors = registry.databaseErrors
        XCTAssertEqual(registry.reap(), 0, "the reaper could not store b offline, so b stays online")
        XCTAssertEqual(registry.databaseErrors, errors + 1, "the reaper's refused write is counted")

        store.refusing = false
        let bID = b.id
        try register(registry, &b)
        XCTAssertEqual(b.id, bID, "b's key still names b after the refused rotation")
        try register(registry, &a)
        XCTAssertEqual(registry.node(withHostname: "alpha"), a.id, "a takes its name back once the store takes writes")
    }

    func testABatchWhoseCommitFailsLeavesMemoryAsItWas() throws {
        let (registry, store) = try makeRegistry()
        var a = try TestNode()
        try register(registry, &a)
        store.refusingCommits = true
        let newcomers = try (0..<3).map { _ in try TestNode() }
        let named = a.signed("set_hostname", "set_hostname:\(a.id)", ["node_id": .integer(Int64(a.id)), "hostname": "alpha"])
        let batch = registry.handle(
            RegistryMessage(type: "batch", ["requests": .array(newcomers.map { $0.register().json } + [named.json])]), peerIP: "127.0.0.1")
        XCTAssertEqual(batch.type, "error", batch.json.encodedString())
        XCTAssertTrue(batch["error"]?.stringValue?.contains("nothing changed") == true, batch.json.encodedString())
        XCTAssertEqual(registry.nodeCount, 1)
        XCTAssertNil(registry.node(withHostname: "alpha"))

        store.refusingCommits = false
        var again = newcomers[0]
        try register(registry, &again)
        XCTAssertEqual(again.id, 2, "ids the failed batch took are handed out again (SQLite allocates in memory)")
    }
}

extension RegistryStoreFailureTests {
    /// A value taken by another instance again at the retry (a race of three instances): the
    /// request is answered as not done, to be tried again, alone or in a batch, never as an
    /// internal error or a bad request, and nothing is kept.
    func testAConflictThatOutlastsItsRetryIsAnsweredAsNotDone() throws {
        let (registry, store) = try makeRegistry()
        var node = try TestNode()
        store.conflicting = true
        let alone = registry.handle(node.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(alone.type, "error")
        let reason = alone["error"]?.stringValue ?? ""
        XCTAssertTrue(reason.hasPrefix("register: not done, ") && reason.hasSuffix("; try again"), reason)
        let batch = registry.handle(RegistryMessage(type: "batch", ["requests": .array([node.register().json])]), peerIP: "127.0.0.1")
        let item = batch["replies"]?.arrayValue?.first?["error"]?.stringValue ?? ""
        XCTAssertTrue(item.hasPrefix("register: not done, ") && item.hasSuffix("; try again"), batch.json.encodedString())
        XCTAssertEqual(registry.nodeCount, 0)
        XCTAssertEqual(registry.databaseErrors, 0, "a taken value is no database error")
        store.conflicting = false
        let reply = registry.handle(node.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(reply.type, "register_ok", reply.json.encodedString())
        node.id = try reply.nodeID("node_id")
    }
}
