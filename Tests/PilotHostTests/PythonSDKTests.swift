import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// The official Python SDK (`pilotprotocol` 1.18 from PyPI, installed into a venv the test
/// makes) on pilot-host identity sockets, unchanged: its `Driver` loads the wheel's libpilot,
/// which speaks the 1.18 driver protocol (docs/PROTOCOL.md §12.2). Two identities of one host:
/// info, resolve, the whole handshake, a stream to the echo port, a listener that accepts, a
/// datagram each way of send_to / recv_from, send_message, and publish_event / subscribe_event
/// on the event stream, each result checked. Skipped,
/// saying why, without the wheel or python3's venv.
final class PythonSDKTests: HostProcessTestCase {
    /// The steps, each printed as one JSON line `{"step": ..., "result": ...}`.
    static let script = #"""
        import json, sys, time, base64
        from pilotprotocol.client import Driver
        rt = sys.argv[1]
        def out(step, result): print(json.dumps({"step": step, "result": result}), flush=True)
        a = Driver(rt + "/id/alice.sock"); b = Driver(rt + "/id/bob.sock")
        ia, ib = a.info(), b.info()
        out("info", [ia["address"], ib["address"], ib["node_id"]])
        out("resolve", a.resolve_hostname("bob-sdk"))
        out("handshake", a.handshake(ib["node_id"], "sdk hello"))
        for _ in range(50):
            pending = b.pending_handshakes()["pending"]
            if pending: break
            time.sleep(0.1)
        out("pending", pending)
        out("approve", b.approve_handshake(ia["node_id"]))
        for _ in range(50):
            trusted = a.trusted_peers()["trusted"]
            if trusted: break
            time.sleep(0.1)
        out("trusted", trusted)
        echo = a.dial(ib["address"] + ":7"); echo.write(b"echo me")
        out("echo", echo.read(100).decode()); echo.close()
        listener = b.listen(5000)
        dialed = a.dial(ib["address"] + ":5000"); accepted = listener.accept()
        dialed.write(b"to bob"); out("accepted", accepted.read(100).decode())
        accepted.write(b"to alice"); out("dialed", dialed.read(100).decode())
        dialed.close(); accepted.close()
        a.send_to(ib["address"] + ":6000", b"datagram!")
        got = b.recv_from(); got["data"] = base64.b64decode(got["data"]).decode(); out("recv_from", got)
        out("send_message", a.send_message(ib["address"], b"hi via the sdk"))
        import threading
        events = []
        def subscribe():
            for topic, data in a.subscribe_event(ib["address"], "alerts", timeout=10):
                events.append([topic, data.decode()]); break
        subscriber = threading.Thread(target=subscribe); subscriber.start()
        time.sleep(1)
        out("publish_event", a.publish_event(ib["address"], "alerts", b"disk full"))
        subscriber.join(15)
        out("subscribe_event", events)
        """#

    /// A venv at `path` with the official wheel installed, or a skip saying why not.
    static func sdkVenv(at path: String) throws -> String {
        let official: OfficialPilot
        do { official = try OfficialPilot.binaries() } catch { throw XCTSkip("official pilotprotocol wheel unavailable: \(error)") }
        let wheels = try FileManager.default.contentsOfDirectory(atPath: OfficialPilot.cacheDirectory().appendingPathComponent("wheel").path)
        let wheel = try XCTUnwrap(wheels.first { $0.hasSuffix(".whl") }, "no wheel beside \(official.daemon.path)")
        let made = ChildProcess.run("/usr/bin/python3", ["-m", "venv", path], timeout: 120)
        guard made.status == 0 else { throw XCTSkip("python3 -m venv failed (python3-venv missing?): \(made.output.suffix(300))") }
        let installed = ChildProcess.run(
            "\(path)/bin/pip", ["install", "--no-index", "--quiet", OfficialPilot.cacheDirectory().appendingPathComponent("wheel/\(wheel)").path],
            timeout: 300)
        XCTAssertEqual(installed.status, 0, installed.output)
        return path
    }

    func testThePythonSDKDrivesIdentitySockets() throws {
        let venv = try Self.sdkVenv(at: directory.path("venv"))

        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        let alice = try XCTUnwrap(ctl(runtime, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(runtime, ["identity", "create", "bob", "--hostname", "bob-sdk"])?["data"]?["node_id"]?.integerValue)
        let run = ChildProcess.run("\(venv)/bin/python", ["-c", Self.script, runtime], environment: ["HOME": directory.path("home")], timeout: 120)
        var steps: [String: JSON] = [:]
        for line in run.stdout.split(separator: "\n") {
            guard let json = try? JSON(parsing: String(line)), let step = json["step"]?.stringValue else { continue }
            steps[step] = json["result"]
        }
        let aliceAddress = Address(node: UInt32(alice)).description, bobAddress = Address(node: UInt32(bob)).description
        XCTAssertEqual(steps["info"], [.string(aliceAddress), .string(bobAddress), .integer(bob)], run.output)
        XCTAssertEqual(steps["resolve"]?["node_id"]?.integerValue, bob, run.output)
        XCTAssertEqual(steps["handshake"]?["status"], "sent", run.output)
        XCTAssertEqual(steps["pending"]?.arrayValue?.first?["justification"], "sdk hello", run.output)
        XCTAssertEqual(steps["approve"]?["status"], "approved", run.output)
        XCTAssertEqual(steps["trusted"]?.arrayValue?.first?["node_id"]?.integerValue, bob, run.output)
        XCTAssertEqual(steps["echo"], "echo me", run.output)
        XCTAssertEqual(steps["accepted"], "to bob", run.output)
        XCTAssertEqual(steps["dialed"], "to alice", run.output)
        XCTAssertEqual(steps["recv_from"]?["data"], "datagram!", run.output)
        XCTAssertEqual(steps["recv_from"]?["src_addr"]?.stringValue, aliceAddress, run.output)
        XCTAssertEqual(steps["recv_from"]?["dst_port"]?.integerValue, 6000, run.output)
        XCTAssertEqual(steps["send_message"]?["ack"], "ACK TEXT 14 bytes", run.output)
        // An event published to bob's broker reaches a subscriber on another stream.
        XCTAssertEqual(steps["publish_event"]?["status"], "published", run.output)
        XCTAssertEqual(steps["subscribe_event"], [["alerts", "disk full"]], run.output)
        // And it arrived: bob's inbox, through the JSON protocol.
        let inbox = ctl(runtime, ["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue ?? []
        XCTAssertTrue(inbox.contains { $0["data"] == "hi via the sdk" }, "\(inbox)")
    }
}
