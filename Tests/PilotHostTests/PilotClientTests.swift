import PilotClient
import PilotTestSupport
import PilotWire
import XCTest

/// The SDK's typed calls against a real pilot-host, on its admin socket and an identity's own.
final class PilotClientTests: HostProcessTestCase {
    func testTypedCallsReachBothSocketsAndErrorsArriveAsTheirFailure() async throws {
        let registryPort = try startRendezvous()
        // A free tunnel port: other hosts may hold the fixed one.
        let runtime = try startHost(0, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())").runtime
        let admin = PilotClient.admin(runtimeDirectory: runtime)

        let alice = try await admin.createIdentity(AdminControl.CreateIdentity(identity: "alice", owner: "0", tags: ["worker"]))
        XCTAssertEqual(alice.address, "0:0000.0000.0001")
        XCTAssertEqual(alice.tags, ["worker"])
        XCTAssertEqual(alice.socket, runtime + "/id/alice.sock", "create says where the socket is")
        // Lists and the identity's own info leave the socket out (it is the one asked, or a name
        // away): otherwise the same.
        var aliceListed = alice
        aliceListed.socket = nil
        let listed = try await admin.identities()
        XCTAssertEqual(listed, [aliceListed])

        let client = PilotClient(identity: "alice", runtimeDirectory: runtime)
        let info = try await client.info()
        XCTAssertEqual(info, aliceListed)
        let named = try await client.setHostname("alice")
        XCTAssertEqual(named.hostname, "alice")
        let untagged = try await client.setTags([])
        XCTAssertEqual(untagged.tags, [])
        let trusted = try await client.trustedPeers()
        XCTAssertEqual(trusted, [])
        let pending = try await client.pendingTrust()
        XCTAssertEqual(pending, [])
        do {
            _ = try await admin.identity(named: "carol")
            XCTFail("carol does not exist")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .notFound)
        }
        do {
            _ = try await client.handshake(with: "alice")
            XCTFail("an identity cannot trust itself")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure, ControlFailure(.invalidArgument, "handshake: an identity cannot trust itself"))
        }
        // Its standing at the registry: prefer-direct, a new key, then out until a restart.
        let preferred = try await client.preferDirect("alice")
        XCTAssertEqual(preferred.nodeID, 1)
        XCTAssertFalse(preferred.hadTunnel, "itself: in-process, no tunnel")
        let rotated = try await client.rotateKey()
        XCTAssertEqual(rotated["type"], "rotate_key_ok")
        let registered = try await client.lookup("1")
        XCTAssertEqual(registered["public_key"], rotated["public_key"], "the registry holds the new key")
        let gone = try await client.deregister()
        XCTAssertEqual(gone["type"], "deregister_ok")
        let described = try await client.info()
        XCTAssertTrue(described.isDeregistered)
        do {
            _ = try await client.deregister()
            XCTFail("deregistered already")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .unavailable)
            XCTAssertTrue(failure.message.contains("deregistered itself"), failure.message)
        }

        do {
            _ = try await PilotClient(identity: "carol", runtimeDirectory: runtime).info()
            XCTFail("carol has no socket")
        } catch let error as ControlClientError {
            XCTAssertFalse(error.permission)
        }
    }
}
