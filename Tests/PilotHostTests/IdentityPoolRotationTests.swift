import Foundation
import PilotCrypto
import PilotHost
import PilotRendezvous
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// An identity deregistering itself and rotating its key (`IdentityPool+Rotation.swift`,
/// `IdentityPool+Registry.swift`), against a real registry.
extension IdentityPoolTests {
    private func lookup(_ registry: Registry, _ node: UInt32) -> RegistryMessage {
        registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node))]), peerIP: "x")
    }

    func testADeregisteredIdentityStaysOfflineThroughHeartbeatsUntilARestart() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            var request = IdentityPool.Request(owner: 1000)
            request.hostname = "alice"
            let alice = try await pool.create(name: "alice", request)
            let bob = try await pool.create(name: "bob", IdentityPool.Request(owner: 1000))
            let reply = try await pool.deregister(name: "alice")
            XCTAssertEqual(reply.type, "deregister_ok")
            XCTAssertEqual(try reply.nodeID("node_id"), alice.nodeID)
            XCTAssertEqual(lookup(registry, alice.nodeID)["online"], false)
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alice"]), peerIP: "x").type, "error")
            let deregistered = await pool.isDeregistered("alice")
            XCTAssertTrue(deregistered)

            // Heartbeats, a registration pass and handshake polls leave her out; bob goes on.
            let lost = try await pool.heartbeatAll()
            XCTAssertEqual(lost, [])
            let registered = try await pool.registerAll()
            XCTAssertEqual(registered.failed, [:])
            _ = try await pool.pollHandshakes()
            XCTAssertEqual(lookup(registry, alice.nodeID)["online"], false, "nothing brought her back")
            XCTAssertEqual(lookup(registry, bob.nodeID)["online"], true)
            // What would speak to the registry as her says why not.
            await XCTAssertThrowsErrorAsync(try await pool.setHostname(name: "alice", hostname: "alice-2")) {
                XCTAssertEqual($0 as? PoolError, .deregistered("alice"))
            }
            await XCTAssertThrowsErrorAsync(try await pool.rotateKey(name: "alice")) {
                XCTAssertEqual($0 as? PoolError, .deregistered("alice"))
            }
            let stored = await pool.identity(named: "alice")
            XCTAssertNotNil(stored, "deregistered, not deleted")

            // The next start registers her again, with the same address and hostname.
            let restarted = try makePool(directory, client)
            try await restarted.load()
            let again = try await restarted.registerAll()
            XCTAssertEqual(again.failed, [:])
            XCTAssertEqual(again.changed, [])
            XCTAssertEqual(lookup(registry, alice.nodeID)["online"], true)
            XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alice"]), peerIP: "x")["node_id"], .integer(Int64(alice.nodeID)))
        }
    }

    func testRotateKeyChangesTheKeyAtTheRegistryAndInHostDBKeepingTheAddress() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            let alice = try await pool.create(name: "alice", IdentityPool.Request(owner: 1000))
            let old = try await pool.signingKey(of: "alice").publicKey.base64
            let (reply, key) = try await pool.rotateKey(name: "alice")
            XCTAssertEqual(reply.type, "rotate_key_ok")
            XCTAssertEqual(reply["public_key"]?.stringValue, key.publicKey.base64)
            XCTAssertNotEqual(key.publicKey.base64, old)
            XCTAssertEqual(lookup(registry, alice.nodeID)["public_key"]?.stringValue, key.publicKey.base64)
            let current = try await pool.signingKey(of: "alice").publicKey.base64
            XCTAssertEqual(current, key.publicKey.base64)
            // Heartbeats are signed by the new key.
            let lost = try await pool.heartbeatAll()
            XCTAssertEqual(lost, [])

            // host.db holds the new key: a new process registers with it and keeps the node id.
            let restarted = try makePool(directory, client)
            try await restarted.load()
            let loaded = try await restarted.signingKey(of: "alice").publicKey.base64
            XCTAssertEqual(loaded, key.publicKey.base64)
            let result = try await restarted.registerAll()
            XCTAssertEqual(result.failed, [:])
            XCTAssertEqual(result.changed, [], "the same node, not a new one")
            let record = await restarted.identity(named: "alice")
            XCTAssertNil(record?.pendingSealedKey)
        }
    }

    /// A crash between storing the pending key and the registry's answer, either side of the
    /// registry taking it: the next start keeps whichever key the registry holds.
    func testAnUnsettledRotationKeepsTheKeyTheRegistryHolds() async throws {
        try await withRendezvous { client, registry, directory in
            let pool = try makePool(directory, client)
            let alice = try await pool.create(name: "alice", IdentityPool.Request(owner: 1000))
            let bob = try await pool.create(name: "bob", IdentityPool.Request(owner: 1000))
            let (master, _) = try MasterKey.load(stateDirectory: directory.url.path, environment: [:])
            let keys = try IdentityKeys(masterKey: master)
            let store = try HostStore(path: directory.path("host.db"))

            // alice: the pending key stored, the registry never asked.
            let aliceOld = try await pool.signingKey(of: "alice")
            var aliceRecord = try XCTUnwrap(try store.identity(named: "alice"))
            aliceRecord.pendingSealedKey = keys.seal(try Ed25519PrivateKey())
            try store.update(aliceRecord)
            // bob: the pending key stored, and the registry took it (signed by his old key).
            let bobOld = try await pool.signingKey(of: "bob")
            let bobNew = try Ed25519PrivateKey()
            var bobRecord = try XCTUnwrap(try store.identity(named: "bob"))
            bobRecord.pendingSealedKey = keys.seal(bobNew)
            try store.update(bobRecord)
            let newText = bobNew.publicKey.base64
            let rotated = registry.handle(RegistryMessage(type: "rotate_key", [
                "node_id": .integer(Int64(bob.nodeID)), "new_public_key": .string(newText),
                "signature": .string(Base64.encode(bobOld.sign("rotate:\(bob.nodeID):\(newText)"))),
            ]), peerIP: "x")
            XCTAssertEqual(rotated.type, "rotate_key_ok", "\(rotated)")

            let restarted = try makePool(directory, client)
            try await restarted.load()
            let result = try await restarted.registerAll()
            XCTAssertEqual(result.failed, [:])
            XCTAssertEqual(result.changed, [], "neither got a new node id")
            let aliceKey = try await restarted.signingKey(of: "alice").publicKey
            let bobKey = try await restarted.signingKey(of: "bob").publicKey
            XCTAssertEqual(aliceKey.base64, aliceOld.publicKey.base64, "the registry never took alice's new key")
            XCTAssertEqual(bobKey.base64, newText, "the registry took bob's")
            XCTAssertEqual(lookup(registry, alice.nodeID)["public_key"]?.stringValue, aliceOld.publicKey.base64)
            XCTAssertEqual(lookup(registry, bob.nodeID)["public_key"]?.stringValue, newText)
            XCTAssertNil(try store.identity(named: "alice")?.pendingSealedKey)
            XCTAssertNil(try store.identity(named: "bob")?.pendingSealedKey)
        }
    }
}
