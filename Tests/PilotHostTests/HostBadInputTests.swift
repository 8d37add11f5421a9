import Foundation
import PilotTestSupport
import PilotWire
import XCTest

extension HostExecutableTests {
    private func probe(_ path: String, _ payload: String, replies: Int, halfClose: Bool = false) -> (replies: [JSON], end: String) {
        let outcome = ControlProbe.run(path, payload, replies: replies, halfClose: halfClose)
        return (outcome.replies.compactMap { try? JSON(parsing: Array($0.utf8)) }, outcome.end)
    }

    /// Bad input on a live pilot-host's admin socket and on an identity's socket: every case gets
    /// a clear error (or, where no reply can be framed, a closed connection), and the host goes on
    /// serving everyone, including a client that connected and never wrote.
    func testBadInputOnBothSocketsGetsClearErrorsAndEveryoneElseIsServed() throws {
        let host = try startHost(registryPort: try startRendezvous(), generation: 1)
        XCTAssertEqual(pilotctl(["identity", "create", "alice"]).json?["status"], "ok")

        // A client that connects to each socket and never writes, for the whole test.
        let silent = ["admin.sock", "id/alice.sock"].map { socket in
            try? ChildProcess(
                name: "silent-\(socket.replacingOccurrences(of: "/", with: "-"))", executable: URL(fileURLWithPath: "/usr/bin/python3"),
                arguments: ["-c", "import socket, time; s = socket.socket(socket.AF_UNIX); s.connect('\(runtime)/\(socket)'); print('connected', flush=True); time.sleep(60)"],
                logDirectory: directory.url)
        }
        for process in silent.compactMap({ $0 }) {
            processes.append(process)
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { process.output.contains("connected") }, process.output)
        }

        let sockets: [(path: String, valid: String, wrongType: String)] = [
            (runtime + "/admin.sock", #"{"command":"identity.list"}"#, #"{"command":"identity.create","args":{"name":42}}"#),
            (runtime + "/id/alice.sock", #"{"command":"info"}"#, #"{"command":"set-tags","args":{"tags":"gpu"}}"#),
        ]
        for socket in sockets {
            let context = socket.path
            func error(_ reply: JSON?) -> String? { reply?["status"] == "error" ? reply?["code"]?.stringValue : "not an error: \(String(describing: reply))" }

            // Text where a length prefix belongs ("GET " is 1.2 GB): one error frame, then closed.
            let garbage = probe(socket.path, #"b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'"#, replies: 1)
            XCTAssertEqual(garbage.replies.count, 1, context)
            XCTAssertEqual(error(garbage.replies.first), "invalid_argument", context)
            XCTAssertTrue(garbage.replies.first?["message"]?.stringValue?.contains("malformed frame") == true, "\(garbage)")
            XCTAssertEqual(garbage.end, "CLOSED", context)

            // A frame announced at 2 MiB (the limit is 1 MiB), its body never sent.
            let oversized = probe(socket.path, "struct.pack('>I', 2 << 20) + b'{'", replies: 1)
            XCTAssertEqual(error(oversized.replies.first), "invalid_argument", context)
            XCTAssertEqual(oversized.end, "CLOSED", context)

            // Well framed but not a request: each gets its error and the connection goes on.
            let payload = [
                "frame('{not json')", "frame('')", "frame('[' * 100000 + ']' * 100000)", "frame('[1,2]')",
                "frame('{\"command\":42}')", "frame('{\"command\":\"x\",\"args\":\"y\"}')",
                "frame(\(socket.wrongType.debugDescription))", "frame('{\"command\":\"rm -rf /\"}')",
                "frame(b'\\xff\\xfe{}')", "frame(\(socket.valid.debugDescription))",
            ].joined(separator: " + ")
            let framed = probe(socket.path, payload, replies: 10)
            XCTAssertEqual(framed.replies.count, 10, "\(context): \(framed)")
            XCTAssertEqual(framed.replies.prefix(9).map(error), Array(repeating: "invalid_argument", count: 9), "\(context): \(framed.replies)")
            XCTAssertTrue(framed.replies.dropLast().allSatisfy { ($0["message"]?.stringValue?.count ?? 0) > 10 }, "\(framed.replies)")
            guard framed.replies.count == 10 else { continue }
            XCTAssertTrue(framed.replies[7]["message"]?.stringValue?.contains("unknown") == true, "\(framed.replies[7])")
            XCTAssertEqual(framed.replies.last?["status"], "ok", context)
            XCTAssertEqual(framed.end, "OPEN", context)

            // Half a frame, then the client stops writing: told so and closed, nothing stuck.
            let truncated = probe(socket.path, "struct.pack('>I', 100) + b'{\"comm'", replies: 1, halfClose: true)
            XCTAssertTrue(truncated.replies.first?["message"]?.stringValue?.contains("truncated frame") == true, "\(truncated)")
            XCTAssertEqual(truncated.end, "CLOSED", "\(context): \(truncated)")

            // A whole request, then the write side shut: answered, then closed.
            let finished = probe(socket.path, "frame(\(socket.valid.debugDescription))", replies: 1, halfClose: true)
            XCTAssertEqual(finished.replies.first?["status"], "ok", "\(context): \(finished)")
            XCTAssertEqual(finished.end, "CLOSED", "\(context): \(finished)")
        }

        // Everyone is still served, the silent clients are still connected, and nothing was made.
        XCTAssertTrue(host.isRunning)
        XCTAssertEqual(pilotctl(["info", "--identity", "alice"]).json?["data"]?["name"], "alice")
        XCTAssertEqual(pilotctl(["identity", "create", "bob"]).json?["status"], "ok")
        let names = pilotctl(["identity", "list"]).json?["data"]?["identities"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(names, ["alice", "bob"])
        XCTAssertTrue(silent.compactMap { $0 }.allSatisfy(\.isRunning))
    }
}
