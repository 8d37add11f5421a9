import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// One tenant floods its own control socket; another tenant and the admin socket go on being
/// answered within a second, and the host's memory stays bounded (issue 12, findings 3 to 5).
final class ControlFloodTests: AbuseTestCase {
    private var long: Bool { ProcessInfo.processInfo.environment["PILOT_LONG"] == "1" }

    /// The other tenant's `info` and the admin's `identity list`, each answered within 1 s.
    private func othersAreServed(_ bystander: String, during flood: String) {
        let info = answers(as: bystander, ["info"])
        XCTAssertTrue(info.ok, "the other tenant's info took \(info.seconds) s during \(flood)")
        let list = answers(as: nil, ["identity", "list"])
        XCTAssertTrue(list.ok, "the admin's identity list took \(list.seconds) s during \(flood)")
        print("during \(flood): other tenant's info \(String(format: "%.3f", info.seconds)) s, admin list \(String(format: "%.3f", list.seconds)) s")
    }

    func testPipelinedFramesBehindAWaitingRequestDoNotGrowTheHost() throws {
        try startHost()
        let flooder = try tenant("ptflooda", owning: "alice")
        let bystander = try tenant("ptfloodb", owning: "bob")
        let before = hostRSS
        let frames = 1000
        let flood = try background("pipeline", as: flooder, """
            import json, socket, struct, sys, time
            def frame(command, args):
                body = json.dumps({"command": command, "args": args}).encode()
                return struct.pack('>I', len(body)) + body
            s = socket.socket(socket.AF_UNIX); s.connect(\(socket("alice").debugDescription))
            s.sendall(frame("recv", {"port": 5000, "timeout": 3600}))
            big = frame("info", {"pad": "x" * ((1 << 20) - 64)})
            s.settimeout(2)
            sent = 0
            try:
                while sent < \(frames):
                    s.sendall(big); sent += 1
            except socket.timeout:
                pass
            print('HOLDING %d' % sent, flush=True)
            time.sleep(120)
            """)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 60) { flood.output.contains("HOLDING") }, flood.output)
        let held = Int(flood.output.split(separator: " ").last?.split(separator: "\n").first ?? "") ?? -1
        let during = hostRSS
        print("pipelined 1 MiB frames behind a waiting recv: \(held) of \(frames) taken; host RSS \(Int(before)) -> \(Int(during)) MiB")
        XCTAssertLessThan(held, 64, "the host must stop reading a connection whose requests pile up")
        XCTAssertLessThan(during - before, 64, "one connection's queue grew the host by \(during - before) MiB")
        othersAreServed(bystander, during: "a pipelining flood")

        // The client goes: its waiting recv is cancelled and frees the port at once.
        flood.stop()
        let freed = ChildProcess.waitUntil(timeout: 10, every: 0.2) {
            self.pilotctl(as: flooder, ["recv", "5000", "--timeout", "1"])?["code"] != "already_exists"
        }
        XCTAssertTrue(freed, "the recv of a client that hung up still holds port 5000")
    }

    func testOneUsersConnectionsCannotTakeTheHostsDescriptors() throws {
        try startHost()
        let flooder = try tenant("ptflooda", owning: "alice")
        let bystander = try tenant("ptfloodb", owning: "bob")
        let before = hostRSS
        let connections = long ? 19_000 : 2000
        let flood = try background("connections", as: flooder, """
            import json, socket, struct, time
            body = json.dumps({"command": "info", "args": {}}).encode()
            held = []
            for _ in range(\(connections)):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(\(socket("alice").debugDescription))
                except OSError:
                    s.close(); continue
                held.append(s)
            answers = {"ok": 0, "unavailable": 0, "other": 0}
            for s in held:
                try:
                    s.settimeout(5)
                    s.sendall(struct.pack('>I', len(body)) + body)
                    head = s.recv(4, socket.MSG_WAITALL)
                    reply = json.loads(s.recv(struct.unpack('>I', head)[0], socket.MSG_WAITALL))
                    key = "ok" if reply.get("status") == "ok" else reply.get("code")
                    answers[key if key in answers else "other"] += 1
                except Exception:
                    answers["other"] += 1
            print('HOLDING ' + json.dumps(answers), flush=True)
            time.sleep(120)
            """)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 120) { flood.output.contains("HOLDING") }, flood.output)
        let line = flood.output.split(separator: "\n").first { $0.hasPrefix("HOLDING ") }.map { String($0.dropFirst(8)) } ?? ""
        let answers = try JSON(parsing: Array(line.utf8))
        let served = Int(answers["ok"]?.integerValue ?? -1)
        print("\(connections) connections from one user: \(line); host RSS \(Int(before)) -> \(Int(hostRSS)) MiB")
        XCTAssertEqual(served, 64, "one user holds at most control-connections-per-user (64) connections")
        // Refused connections beyond the 256 kept for their answer are closed at once; a client
        // that writes and then reads, as pilotctl does, is told why.
        let refused = pilotctl(as: flooder, ["info"])
        XCTAssertEqual(refused?["code"], "unavailable", "\(String(describing: refused))")
        XCTAssertTrue(refused?["message"]?.stringValue?.contains("the most one user may hold") == true, "\(String(describing: refused))")
        othersAreServed(bystander, during: "a connection flood")
        XCTAssertEqual(pilotctl(as: nil, ["identity", "create", "carol", "--owner", bystander])?["status"], "ok",
                       "identities can still be created during the flood")
    }

    func testOneUsersUploadsCannotBlockAnothersSendFile() throws {
        try startHost()
        let flooder = try tenant("ptflooda", owning: "a1")
        for name in ["a2", "a3", "a4"] {
            XCTAssertEqual(pilotctl(as: nil, ["identity", "create", name, "--owner", flooder])?["status"], "ok")
        }
        let bystander = try tenant("ptfloodb", owning: "bob")
        let before = hostRSS
        // 16 MiB less 257 bytes for the frame, less the file name's room: the largest upload.
        let largest = 16_777_216 - 257 - 2 - 255
        var accepted = 0
        var refusals: [String] = []
        for name in ["a1", "a2", "a3", "a4"] {
            let session = try ControlSession(path: socket(name), user: flooder)
            for index in 0..<4 {
                let outcome = session.request(#"{"command":"upload","args":{"upload":"f\#(index)","size":\#(largest),"offset":0,"data":""}}"#)
                if outcome.isOK { accepted += 1 } else { refusals.append(outcome.description) }
            }
        }
        print("uploads of the largest size declared by one user over four identities: \(accepted) of 16 taken; host RSS \(Int(before)) -> \(Int(hostRSS)) MiB")
        othersAreServed(bystander, during: "an upload flood")
        XCTAssertLessThanOrEqual(accepted, 4, "one user reserved \(accepted) uploads of 16 MiB")
        XCTAssertTrue(refusals.first?.contains("uid") == true, "\(refusals.prefix(1))")
        let bob = try ControlSession(path: socket("bob"), user: bystander)
        let upload = bob.request(#"{"command":"upload","args":{"upload":"b0","size":\#(largest),"offset":0,"data":"AAAA"}}"#)
        XCTAssertTrue(upload.isOK, "another tenant's upload was refused: \(upload)")
    }
}
