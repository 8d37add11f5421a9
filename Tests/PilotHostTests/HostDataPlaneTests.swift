import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// pilot-host's identities on the network: between two identities of the host, from an
/// identity to the official 1.18 daemon, and from the daemon to a public identity.
final class HostDataPlaneTests: XCTestCase {
    func testPingBetweenIdentitiesAndWithTheOfficialDaemonBothWays() throws {
        let (overlay, daemon): (OverlayHarness, UInt32)
        do { (overlay, daemon) = try OverlayHarness.started(daemon: "alpha", extra: ["-public"]) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }

        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let runtime = overlay.directory.path("run")
        let host = try ChildProcess(
            name: "pilot-host", executable: bin.appendingPathComponent("pilot-host"),
            arguments: [
                "--state-dir", overlay.directory.path("state"), "--runtime-dir", runtime,
                "--registry", "127.0.0.1:\(overlay.registryPort)", "--beacon", "127.0.0.1:\(overlay.beaconPort)",
                "--listen", "127.0.0.1:\(try LoopbackSocket.freePort())",
            ],
            logDirectory: overlay.directory.url)
        defer { host.stop() }
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { host.output.contains("pilot-host serving") }, host.output)

        func pilotctl(_ arguments: [String]) -> JSON? {
            let result = ChildProcess.run(bin.appendingPathComponent("pilotctl").path, arguments + ["--json", "--runtime-dir", runtime], timeout: 60)
            return try? JSON(parsing: Array(result.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        }
        XCTAssertEqual(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["status"], "ok")
        let bob = pilotctl(["identity", "create", "bob", "--hostname", "bob", "--public"])
        let bobAddress = try XCTUnwrap(bob?["data"]?["address"]?.stringValue)

        func succeeded(_ reply: JSON?, _ count: Int, _ what: String) {
            let results = reply?["data"]?["results"]?.arrayValue ?? []
            XCTAssertEqual(results.count, count, "\(what): \(String(describing: reply))")
            XCTAssertTrue(results.allSatisfy { $0["error"] == nil && ($0["rtt_ms"]?.doubleValue ?? -1) >= 0 }, "\(what): \(String(describing: reply))")
        }
        // Two identities of this host, by hostname: in-process.
        succeeded(pilotctl(["ping", "bob", "--identity", "alice", "--count", "2"]), 2, "alice → bob")
        // An identity to the official daemon, through a tunnel.
        succeeded(pilotctl(["ping", Address(node: daemon).description, "--identity", "alice", "--count", "2"]), 2, "alice → daemon")
        // The official daemon to the public identity (its own socket, registered by the host).
        let pinged = try overlay.ctl("alpha", ["ping", bobAddress, "--count", "2"], timeout: 40)
        XCTAssertEqual(pinged["results"]?.arrayValue?.count, 2, "\(pinged)")
        XCTAssertTrue(pinged["results"]?.arrayValue?.allSatisfy { $0["error"] == nil } == true, "daemon → bob: \(pinged)\n\(host.output.suffix(3000))")
        // A public identity nobody here has talked to is reachable from its creation on.
        let carol = pilotctl(["identity", "create", "carol", "--public"])
        let carolAddress = try XCTUnwrap(carol?["data"]?["address"]?.stringValue)
        let reached = try overlay.ctl("alpha", ["ping", carolAddress, "--count", "1"], timeout: 40)
        XCTAssertTrue(reached["results"]?.arrayValue?.first?["error"] == nil && reached["results"]?.arrayValue?.count == 1, "daemon → carol: \(reached)")
        // A node that does not exist: a clear error per probe, not a hang.
        let nowhere = pilotctl(["ping", "0:0000.0000.7777", "--identity", "alice", "--count", "1", "--timeout", "2"])
        XCTAssertEqual(nowhere?["code"], "not_found", "\(String(describing: nowhere))")
        XCTAssertTrue(host.isRunning)
    }
}
