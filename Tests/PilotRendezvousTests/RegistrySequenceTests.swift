import Foundation
import PilotCrypto
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// Signed registration sequences (`Registry+Sequence.swift`): an identity that moved to another
/// host is not moved back by a replay of its old host's `register`.
final class RegistrySequenceTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory(prefix: "pilot-sequence") }
    override func tearDown() { directory.remove() }

    /// A `register` as pilot-host sends it: 1.18's fields and signature, and a signed sequence.
    private func register(_ node: TestNode, listen: String, sequence: Int64) -> RegistryMessage {
        node.register(listen: listen)
            .with(RegisterSequence.field, .integer(sequence))
            .with(RegisterSequence.signatureField, node.signature(RegisterSequence.text(publicKey: node.publicKey, listenAddress: listen, sequence: sequence)))
    }

    private func lookup(_ registry: Registry, _ node: TestNode) -> RegistryMessage {
        registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node.id))]), peerIP: "x")
    }

    func testAReplayOfTheOldHostsRegistrationIsRefusedOnceTheIdentityRegisteredFromItsNewHost() throws {
        var registry = try Registry(stateDirectory: directory.path("state"))
        var alice = try TestNode()
        // Host A (10.0.0.1) registers alice; the message is captured on the way.
        let captured = register(alice, listen: "10.0.0.1:37000", sequence: 1_000)
        let first = registry.handle(captured, peerIP: "10.0.0.1")
        XCTAssertEqual(first.type, "register_ok", "\(first)")
        alice.id = try first.nodeID("node_id")
        let nonce: Int64 = 1
        let visibility = alice.signed(
            "set_visibility", SignedChange.text(type: "set_visibility", node: alice.id, nonce: nonce, values: "public"),
            ["node_id": .integer(Int64(alice.id)), "public": true, "nonce": .integer(nonce)])
        XCTAssertEqual(registry.handle(visibility, peerIP: "10.0.0.1").type, "set_visibility_ok")

        // Moved: host C (10.0.0.3) registers the same key with a newer sequence, same node.
        let moved = registry.handle(register(alice, listen: "10.0.0.3:37000", sequence: 2_000), peerIP: "10.0.0.3")
        XCTAssertEqual(moved.type, "register_ok", "\(moved)")
        XCTAssertEqual(try moved.nodeID("node_id"), alice.id)
        XCTAssertEqual(lookup(registry, alice)["real_addr"], "10.0.0.3:37000")

        // The captured registration, replayed from A's address or any other, moves nothing.
        for source in ["10.0.0.1", "10.0.0.9"] {
            let replay = registry.handle(captured, peerIP: source)
            XCTAssertEqual(replay.type, "error")
            XCTAssertTrue(replay["error"]?.stringValue?.hasPrefix("register: stale registration for node \(alice.id): sequence 1000 is not above 2000") == true, "\(replay)")
        }
        // Nor does the 1.18 form, which carries no sequence, nor C's own message played again.
        let unsequenced = registry.handle(alice.register(listen: "10.0.0.1:37000"), peerIP: "10.0.0.1")
        XCTAssertTrue(unsequenced["error"]?.stringValue?.contains("stale registration") == true, "\(unsequenced)")
        let again = registry.handle(register(alice, listen: "10.0.0.9:37000", sequence: 2_000), peerIP: "10.0.0.9")
        XCTAssertTrue(again["error"]?.stringValue?.contains("is not above 2000") == true, "\(again)")
        XCTAssertEqual(lookup(registry, alice)["real_addr"], "10.0.0.3:37000")
        XCTAssertEqual(registry.lastRegisterSequence(of: alice.id), 2_000)

        // Kept in registry.db: a restarted registry refuses the replay all the same.
        registry = try Registry(stateDirectory: directory.path("state"))
        XCTAssertEqual(registry.lastRegisterSequence(of: alice.id), 2_000)
        XCTAssertTrue(registry.handle(captured, peerIP: "10.0.0.1")["error"]?.stringValue?.contains("stale registration") == true)
        XCTAssertEqual(registry.handle(register(alice, listen: "10.0.0.3:37000", sequence: 3_000), peerIP: "10.0.0.3").type, "register_ok")
    }

    func testTheSequenceSignatureCoversTheAddressAndTheKey() throws {
        let registry = try Registry(stateDirectory: directory.path("state"))
        let alice = try TestNode()
        XCTAssertEqual(registry.handle(register(alice, listen: "10.0.0.1:37000", sequence: 5), peerIP: "10.0.0.1").type, "register_ok")
        // A newer sequence whose signature was made for another address is no proof.
        let forged = register(alice, listen: "10.0.0.1:37000", sequence: 9).with("listen_addr", "10.0.0.1:4000")
            .with("signature", alice.signature("register:10.0.0.1:4000:\(alice.publicKey)"))
        XCTAssertTrue(registry.handle(forged, peerIP: "10.0.0.1")["error"]?.stringValue?.hasPrefix("invalid signature for register-sequence:") == true)
        // Signed by another key.
        let mallory = try TestNode()
        let stolen = register(alice, listen: "10.0.0.1:37000", sequence: 9)
            .with(RegisterSequence.signatureField, mallory.signature(RegisterSequence.text(publicKey: alice.publicKey, listenAddress: "10.0.0.1:37000", sequence: 9)))
        XCTAssertEqual(registry.handle(stolen, peerIP: "10.0.0.1").type, "error")
        XCTAssertEqual(registry.handle(register(alice, listen: "10.0.0.1:37000", sequence: 6), peerIP: "10.0.0.1").type, "register_ok")
    }

    func testANodeThatNeverSentASequenceRegistersAs118Does() throws {
        let registry = try Registry(stateDirectory: directory.path("state"))
        let daemon = try TestNode()
        for _ in 0..<2 {
            let reply = registry.handle(daemon.register(listen: "10.0.0.2:4000"), peerIP: "10.0.0.2")
            XCTAssertEqual(reply.type, "register_ok", "\(reply)")
            XCTAssertEqual(reply["signed_values"], 1)
        }
    }
}
