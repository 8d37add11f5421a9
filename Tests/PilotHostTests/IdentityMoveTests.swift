import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// An identity moves between hosts (`pilotctl identity export` / `import`, `MoveCommands`):
/// alice, on host A, trusted by bob on host B and by an official 1.18 daemon, is exported to
/// host C and imported there. She keeps her node and address, A serves her no more, and bob's
/// and the daemon's next messages to her address reach C within seconds, with no new
/// handshake. A file for another host, and a file changed by one byte, are refused, and
/// nothing is made of them.
final class IdentityMoveTests: OfficialOverlayTestCase {
    /// pilot-host `label` on the overlay, with state and runtime of its own; its runtime.
    private func startHost(_ overlay: OverlayHarness, _ label: String) throws -> String {
        let runtime = overlay.directory.path("run-\(label)")
        let host = try ChildProcess(
            name: "pilot-host-\(label)", executable: bin.appendingPathComponent("pilot-host"),
            arguments: [
                "--state-dir", overlay.directory.path("state-\(label)"), "--runtime-dir", runtime,
                "--registry", "127.0.0.1:\(overlay.registryPort)", "--beacon", "127.0.0.1:\(overlay.beaconPort)",
                "--listen", "127.0.0.1:\(try LoopbackSocket.freePort())",
            ],
            logDirectory: overlay.directory.url)
        processes.append(host)
        guard ChildProcess.waitUntil(timeout: 20, { host.output.contains("pilot-host serving") }) else {
            throw HarnessError("pilot-host \(label) did not start: \(host.output)")
        }
        return runtime
    }

    /// `pilotctl identity export NAME --to-host-key KEY ... > FILE` on the host of `runtime`,
    /// as a user runs it (stdout redirected); its exit status and stderr.
    private func export(_ name: String, to key: String, from runtime: String, into file: String, extra: [String] = []) -> ChildProcess.Result {
        let pilotctl = bin.appendingPathComponent("pilotctl").path
        let line = ([pilotctl, "identity", "export", name, "--to-host-key", key, "--runtime-dir", runtime] + extra)
            .map { "'\($0)'" }.joined(separator: " ")
        return ChildProcess.run("/bin/sh", ["-c", "\(line) > '\(file)'"], timeout: 30)
    }

    func testAnIdentityMovesToAnotherHostKeepsItsAddressAndItsPeersFollowItThere() throws {
        let overlay: OverlayHarness
        let daemon: UInt32
        do { (overlay, daemon) = try OverlayHarness.started(daemon: "alpha", extra: ["-public", "-trust-auto-approve"]) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }
        let (hostA, hostB, hostC) = (try startHost(overlay, "a"), try startHost(overlay, "b"), try startHost(overlay, "c"))
        func ctl(_ runtime: String, _ arguments: [String]) -> JSON? { runPilotctl(arguments, runtime: runtime, timeout: 30) }
        func inbox(_ runtime: String) -> [String] {
            ctl(runtime, ["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue?.compactMap { $0["data"]?.stringValue } ?? []
        }

        let created = ctl(hostA, ["identity", "create", "alice", "--hostname", "alice", "--tags", "worker"])?["data"]
        let alice = try XCTUnwrap(created?["node_id"]?.integerValue.flatMap(UInt32.init(exactly:)), "\(String(describing: created))")
        let address = try XCTUnwrap(created?["address"]?.stringValue)
        XCTAssertEqual(ctl(hostA, ["identity", "create", "carol"])?["status"], "ok")
        XCTAssertEqual(ctl(hostB, ["identity", "create", "bob", "--hostname", "bob", "--auto-approve"])?["status"], "ok")

        // alice asks bob and the daemon (both approve whoever asks); both then talk to her on A.
        XCTAssertEqual(ctl(hostA, ["handshake", "bob", "move test", "--identity", "alice"])?["data"]?["status"], "sent")
        XCTAssertEqual(ctl(hostA, ["handshake", "alpha", "move test", "--identity", "alice"])?["data"]?["status"], "sent")
        try overlay.eventually("alice trusted by bob and the daemon", timeout: 20) {
            let trusted = ctl(hostA, ["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue ?? []
            return trusted.count == 2 && trusted.allSatisfy { $0["mutual"] == true }
        }
        XCTAssertEqual(ctl(hostB, ["send-message", address, "--data", "before from bob", "--identity", "bob"])?["data"]?["ack"], "ACK TEXT 15 bytes")
        XCTAssertEqual(try overlay.ctl("alpha", ["send-message", address, "--data", "before from alpha"])["ack"], "ACK TEXT 17 bytes")
        XCTAssertEqual(inbox(hostA).sorted(), ["before from alpha", "before from bob"])

        let keyC = try XCTUnwrap(ctl(hostC, ["host-key"])?["data"]?["public_key"]?.stringValue)
        let keyB = try XCTUnwrap(ctl(hostB, ["host-key"])?["data"]?["public_key"]?.stringValue)
        XCTAssertEqual(ctl(hostC, ["host-key"])?["data"]?["public_key"]?.stringValue, keyC, "the same key every time")

        // Exported to C: the file on stdout, and nothing of alice left on A.
        let file = overlay.directory.path("alice.pilot")
        let exported = export("alice", to: keyC, from: hostA, into: file, extra: ["--with-inbox"])
        XCTAssertEqual(exported.status, 0, exported.output)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        XCTAssertEqual(Array(bytes.prefix(8)), Array("PILOT-ID".utf8))
        // A keeps its own copy, written before alice was deleted.
        let keptDirectory = overlay.directory.path("state-a") + "/exported"
        let kept = try FileManager.default.contentsOfDirectory(atPath: keptDirectory)
        XCTAssertEqual(kept.count, 1, "\(kept)")
        XCTAssertTrue(kept.first?.hasPrefix("alice-\(alice)-") == true, "\(kept)")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: keptDirectory + "/" + (kept.first ?? ""))), bytes)
        XCTAssertEqual(ctl(hostA, ["identity", "show", "alice"])?["code"], "not_found")
        XCTAssertFalse(FileManager.default.fileExists(atPath: hostA + "/id/alice.sock"), "alice's socket on A is gone")
        XCTAssertEqual(ctl(hostA, ["info", "--identity", "alice"])?["code"], "not_found")

        // A file sealed to another host, and one altered by a byte: refused, nothing made on C.
        let carolFile = overlay.directory.path("carol.pilot")
        XCTAssertEqual(export("carol", to: keyB, from: hostA, into: carolFile).status, 0)
        let wrongHost = ctl(hostC, ["identity", "import", carolFile])
        XCTAssertEqual(wrongHost?["code"], "invalid_argument")
        XCTAssertTrue(wrongHost?["message"]?.stringValue?.hasPrefix("this file is sealed to another host key") == true, "\(String(describing: wrongHost))")
        var altered = bytes
        altered[altered.count - 20] ^= 0x40
        let alteredFile = overlay.directory.path("altered.pilot")
        try altered.write(to: URL(fileURLWithPath: alteredFile))
        let damaged = ctl(hostC, ["identity", "import", alteredFile])
        XCTAssertTrue(damaged?["message"]?.stringValue?.hasPrefix("the file is damaged or was altered") == true, "\(String(describing: damaged))")
        XCTAssertEqual(ctl(hostC, ["identity", "list"])?["data"]?["total"], 0)

        // Imported on C: the same node and address, her settings, trust and inbox with her.
        let imported = ctl(hostC, ["identity", "import", file])
        XCTAssertEqual(imported?["data"]?["node_id"]?.integerValue, Int64(alice), "\(String(describing: imported))")
        XCTAssertEqual(imported?["data"]?["address"]?.stringValue, address)
        XCTAssertEqual(imported?["data"]?["hostname"], "alice")
        XCTAssertEqual(imported?["data"]?["tags"], ["worker"])
        XCTAssertEqual(imported?["data"]?["apps_restored"], [], "she had no apps")
        let moved = Date()
        XCTAssertEqual(ctl(hostC, ["identity", "import", file])?["code"], "already_exists", "not twice")
        XCTAssertEqual(inbox(hostC).sorted(), ["before from alpha", "before from bob"])
        let trust = ctl(hostC, ["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue ?? []
        XCTAssertEqual(Set(trust.compactMap { $0["node_id"]?.integerValue }).count, 2, "\(trust)")

        // bob's and the daemon's next messages to her address arrive on C, within 10 s.
        try overlay.eventually("bob's message reaches alice on C", timeout: 10) {
            ctl(hostB, ["send-message", address, "--data", "after from bob", "--identity", "bob"])?["data"]?["ack"] == "ACK TEXT 14 bytes"
        }
        try overlay.eventually("the daemon's message reaches alice on C", timeout: 10 - Date().timeIntervalSince(moved)) {
            (try? overlay.ctl("alpha", ["send-message", address, "--data", "after from alpha"], timeout: 8))?["ack"] == "ACK TEXT 16 bytes"
        }
        XCTAssertLessThan(Date().timeIntervalSince(moved), 10)
        XCTAssertEqual(inbox(hostC).sorted(), ["after from alpha", "after from bob", "before from alpha", "before from bob"])
        XCTAssertEqual(inbox(hostA), [])

        // No new handshake anywhere: nothing pending, and both still trust her as before.
        XCTAssertEqual(ctl(hostC, ["pending", "--identity", "alice"])?["data"]?["pending"]?.arrayValue?.count, 0)
        XCTAssertEqual(ctl(hostB, ["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue?.count, 0)
        XCTAssertEqual(try overlay.ctl("alpha", ["pending"])["pending"]?.arrayValue?.count ?? 0, 0)
        XCTAssertTrue(try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(alice) } == true)
        _ = daemon
    }
}
