import Foundation
import Logging
import NIOPosix
import PilotCrypto
import PilotHost
import PilotRendezvous
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

final class IdentityPoolTests: XCTestCase {
    func withRendezvous(
        clock: @escaping @Sendable () -> Double = Registry.uptime,
        _ body: (RegistryClient, Registry, TemporaryDirectory) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-pool")
        let registry = try Registry(stateDirectory: directory.path("rendezvous"), clock: clock)
        let server = RegistryServer(registry: registry, configuration: .init(host: "127.0.0.1", port: 0), logger: Logger(label: "test"))
        let address = try await server.start(on: group)
        let client = RegistryClient(host: "127.0.0.1", port: address.port ?? 0, group: group)
        do {
            try await body(client, registry, directory)
        } catch {
            await client.disconnect()
            try await server.shutdown()
            try await group.shutdownGracefully()
            directory.remove()
            throw error
        }
        await client.disconnect()
        try await server.shutdown()
        try await group.shutdownGracefully()
        directory.remove()
    }

    func makePool(_ directory: TemporaryDirectory, _ client: RegistryClient) throws -> IdentityPool {
        let (master, _) = try MasterKey.load(stateDirectory: directory.url.path, environment: [:])
        return IdentityPool(
            store: try HostStore(path: directory.path("host.db")), keys: try IdentityKeys(masterKey: master),
            registry: client, listenAddress: "127.0.0.1:37000")
    }

    func testCreateRegistersStoresAndSurvivesARestart() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "alice"
            request.tags = ["worker"]
            request.groups = [100]
            let alice = try await pool.create(name: "alice", request)
            let bob = try await pool.create(name: "bob", IdentityPool.Request(owner: 1001))
            XCTAssertEqual([alice.nodeID, bob.nodeID], [1, 2])
            // The registry knows alice by hostname and tag.
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alice"]), peerIP: "x")["node_id"], 1)
            XCTAssertEqual(registry.handle(RegistryMessage(type: "lookup", ["node_id": 1]), peerIP: "x")["tags"], ["worker"])

            await XCTAssertThrowsErrorAsync(try await pool.create(name: "alice", IdentityPool.Request(owner: 1))) {
                XCTAssertEqual($0 as? PoolError, .exists("alice"))
            }
            await XCTAssertThrowsErrorAsync(try await pool.create(name: "../etc", IdentityPool.Request(owner: 1))) {
                XCTAssertEqual($0 as? PoolError, .invalidName("../etc"))
            }

            // A new process: load from host.db, register again, same addresses, working keys.
            let restarted = try makePool(directory, client)
            try await restarted.load()
            let names = await restarted.names
            XCTAssertEqual(names, ["alice", "bob"])
            let result = try await restarted.registerAll()
            XCTAssertEqual(result.changed, [])
            XCTAssertEqual(result.failed, [:])
            let loaded = await restarted.identity(named: "alice")
            XCTAssertEqual(loaded?.nodeID, 1)
            XCTAssertEqual(loaded?.allowedGIDs, [100])
        }
    }

    func testAnIdentityBackAfterTheReaperIsFoundByItsHostnameAgain() async throws {
        let clock = TestClock()
        try await withRendezvous(clock: { clock.now }) { client, registry, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "alice"
            _ = try await pool.create(name: "alice", request)
            clock.advance(181)
            XCTAssertEqual(registry.reap(), 1)
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alice"]), peerIP: "x").type, "error")

            let restarted = try makePool(directory, client)
            try await restarted.load()
            let result = try await restarted.registerAll()
            XCTAssertEqual(result.failed, [:])
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alice"]), peerIP: "x")["node_id"], 1)
        }
    }

    func testARegistryThatLostItsStateIsToldHostnameTagsAndVisibilityAgain() async throws {
        try await withRendezvous { client, _, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "bob"
            request.tags = ["worker", "gpu"]
            request.isPublic = true
            _ = try await pool.create(name: "alice", IdentityPool.Request(owner: 1000))
            _ = try await pool.create(name: "bob", request)
            // A second, empty registry: as one restored from nothing.
            try await withRendezvous { emptyClient, empty, _ in
                let restarted = try makePool(directory, emptyClient)
                try await restarted.load()
                let result = try await restarted.registerAll()
                XCTAssertEqual(result.failed, [:])
                XCTAssertEqual(result.changed, [], "the empty registry handed out the same ids")
                let loaded = await restarted.identity(named: "bob")
                let bob = try XCTUnwrap(loaded)
                let found = empty.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "bob"]), peerIP: "x")
                XCTAssertEqual(try found.nodeID("node_id"), bob.nodeID)
                let lookup = empty.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(bob.nodeID))]), peerIP: "x")
                XCTAssertEqual(lookup["tags"], ["worker", "gpu"])
                XCTAssertEqual(lookup["public"], true)
            }
        }
    }

    func testChangesAreSignedOverTheirValuesWhereTheRegistryTakesIt() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "alice"
            let alice = try await pool.create(name: "alice", request)
            XCTAssertTrue(registry.signsValues(alice.nodeID), "the 1.18 form is now refused for alice's key")
            _ = try await pool.setHostname(name: "alice", hostname: "alice-2")
            _ = try await pool.setTags(name: "alice", tags: ["worker"])
            _ = try await pool.setPublic(name: "alice", isPublic: true)
            // A new process picks nonces above the last one the registry saw.
            let restarted = try makePool(directory, client)
            try await restarted.load()
            _ = try await restarted.registerAll()
            _ = try await restarted.setHostname(name: "alice", hostname: "alice-3")
            let lookup = registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(alice.nodeID))]), peerIP: "x")
            XCTAssertEqual(lookup["hostname"], "alice-3")
            XCTAssertEqual(lookup["tags"], ["worker"])
            XCTAssertEqual(lookup["public"], true)
        }
    }

    func testTrustIsListedInPeerOrderAndSurvivesARestart() async throws {
        try await withRendezvous { client, _, directory in
            let pool = try makePool(directory, client)
            _ = try await pool.create(name: "alice", IdentityPool.Request(owner: 1000))
            try await pool.setTrust(TrustRecord(peerNode: 9, state: .pendingIn, reason: "hello", updatedAt: 1), for: "alice")
            try await pool.setTrust(TrustRecord(peerNode: 3, state: .pendingOut, updatedAt: 2), for: "alice")
            try await pool.setTrust(TrustRecord(peerNode: 5, state: .rejected, updatedAt: 3), for: "alice")
            try await pool.setTrust(TrustRecord(peerNode: 3, state: .trusted, updatedAt: 4, mutual: true), for: "alice")
            var peers = await pool.trust(of: "alice").map(\.peerNode)
            XCTAssertEqual(peers, [3, 5, 9])
            var related = await pool.relatedPeers(of: "alice")
            XCTAssertEqual(related, [3, 9])
            try await pool.removeTrust(peer: 9, for: "alice")
            let removed = await pool.trust(of: "alice", peer: 9)
            XCTAssertNil(removed)
            let trusted = await pool.trust(of: "alice", peer: 3)
            XCTAssertEqual(trusted?.state, .trusted)

            let restarted = try makePool(directory, client)
            try await restarted.load()
            peers = await restarted.trust(of: "alice").map(\.peerNode)
            XCTAssertEqual(peers, [3, 5])
            let reloaded = await restarted.trust(of: "alice", peer: 3)
            XCTAssertEqual(reloaded, trusted)
            related = await restarted.relatedPeers(of: "alice")
            XCTAssertEqual(related, [3])
            let none = await restarted.trust(of: "nobody")
            XCTAssertEqual(none, [])
        }
    }

    func testDeleteDeregistersAndForgets() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "temp"
            _ = try await pool.create(name: "temp", request)
            try await pool.delete(name: "temp")
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "temp"]), peerIP: "x").type, "error")
            XCTAssertNil(try HostStore(path: directory.path("host.db")).identity(named: "temp"))
            await XCTAssertThrowsErrorAsync(try await pool.delete(name: "temp")) { XCTAssertEqual($0 as? PoolError, .notFound("temp")) }
        }
    }

    func testARefusedRegistrationStoresNothing() async throws {
        try await withRendezvous { client, _, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "Not A Hostname"
            await XCTAssertThrowsErrorAsync(try await pool.create(name: "carol", request)) { error in
                guard case PoolError.registry = error else { return XCTFail("\(error)") }
            }
            XCTAssertEqual(try HostStore(path: directory.path("host.db")).all(), [])
            let names = await pool.names
            XCTAssertEqual(names, [])
        }
    }

    /// A create whose row cannot be stored (a full disk, a database another process holds)
    /// takes its registration back: the hostname is free at once, not held by a node nobody has
    /// the key of until the registry reaps it (180 s). The same when the name was taken in
    /// host.db underneath.
    func testACreateThatCannotBeStoredGivesBackItsRegistration() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            func hostnameIsFree(_ hostname: String) -> Bool {
                registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": .string(hostname)]), peerIP: "x").type == "error"
            }
            // Another connection holds the write lock: the insert fails once its busy wait is over.
            let holder = try Database(path: directory.path("host.db"))
            try holder.execute("BEGIN IMMEDIATE")
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "dana"
            await XCTAssertThrowsErrorAsync(try await pool.create(name: "dana", request)) { error in
                XCTAssertEqual((error as? StoreError).map { $0.code & 0xFF }, 5, "busy: \(error)")
            }
            try holder.execute("ROLLBACK")
            XCTAssertTrue(hostnameIsFree("dana"))
            let names = await pool.names
            XCTAssertEqual(names, [])

            try HostStore(path: directory.path("host.db")).create(IdentityRecord(name: "erin", sealedKey: [1], ownerUID: 1000, createdAt: 0))
            request.hostname = "erin"
            await XCTAssertThrowsErrorAsync(try await pool.create(name: "erin", request)) { XCTAssertEqual($0 as? PoolError, .exists("erin")) }
            XCTAssertTrue(hostnameIsFree("erin"))

            // Nothing lingers: the hostname can be had again.
            request.hostname = "dana"
            let dana = try await pool.create(name: "dana", request)
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "dana"]), peerIP: "x")["node_id"], .integer(Int64(dana.nodeID)))
        }
    }

    /// Keys are unsealed when first used: one damaged row does not stop the load; registering
    /// reports it by name and every other identity registers.
    func testOneDamagedKeyFailsOnlyItsIdentity() async throws {
        try await withRendezvous { client, _, directory in
            let pool = try makePool(directory, client)
            for name in ["alice", "bob", "carol"] { _ = try await pool.create(name: name, IdentityPool.Request(owner: 1000)) }
            let store = try HostStore(path: directory.path("host.db"))
            var bob = try XCTUnwrap(try store.identity(named: "bob"))
            bob.sealedKey[bob.sealedKey.count - 1] ^= 0x01
            try store.update(bob)

            let restarted = try makePool(directory, client)
            try await restarted.load()
            let result = try await restarted.registerAll()
            XCTAssertEqual(result.changed, [])
            XCTAssertEqual(Array(result.failed.keys), ["bob"])
            XCTAssertTrue(result.failed["bob"]?.contains("does not open") ?? false, "\(result.failed)")
            let lost = try await restarted.heartbeatAll()
            XCTAssertEqual(lost, [])
            let alice = try await restarted.setHostname(name: "alice", hostname: "alice-1")
            XCTAssertEqual(alice.hostname, "alice-1")
        }
    }

    func testAWrongMasterKeyIsReportedNotTakenForDataLoss() async throws {
        try await withRendezvous { client, _, directory in
            let pool = try makePool(directory, client)
            _ = try await pool.create(name: "alice", IdentityPool.Request(owner: 1000))
            let stranger = IdentityPool(
                store: try HostStore(path: directory.path("host.db")), keys: try IdentityKeys(masterKey: SecretBox.generateKey()),
                registry: client, listenAddress: "127.0.0.1:37000")
            await XCTAssertThrowsErrorAsync(try await stranger.load()) { error in
                guard case PoolError.unreadableKey(name: "alice", _) = error else { return XCTFail("\(error)") }
            }
        }
    }
}

/// A registry clock the test moves by hand.
final class TestClock: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var seconds = 1000.0
    var now: Double { lock.withLock { seconds } }
    func advance(_ by: Double) { lock.withLock { seconds += by } }
}

func XCTAssertThrowsErrorAsync<T>(
    _ expression: @autoclosure () async throws -> T, file: StaticString = #filePath, line: UInt = #line,
    _ check: (any Error) -> Void = { _ in }
) async {
    do {
        _ = try await expression()
        XCTFail("expected an error", file: file, line: line)
    } catch {
        check(error)
    }
}
