import Foundation
import Logging
import NIOCore
import NIOPosix
import PilotControl
import PilotTestSupport
import PilotWire
import XCTest

final class ControlServerTests: XCTestCase {
    private func startServer(
        _ directory: TemporaryDirectory, policy: AccessPolicy, group: MultiThreadedEventLoopGroup, idle: TimeAmount = .minutes(10)
    ) async throws -> ControlServer {
        let server = ControlServer(
            path: directory.path("c.sock"), policy: { policy }, idleTimeout: idle, logger: Logger(label: "test")
        ) { peer, request in
            guard request.command == "whoami" else { return .error(ControlFailure(.invalidArgument, "unknown command: \(request.command)")) }
            return .ok(["uid": .integer(Int64(peer.uid)), "pid": .integer(Int64(peer.pid))])
        }
        try await server.start(on: group, mode: 0o666)
        return server
    }

    /// Runs a Python client that sends `requests` (JSON bodies) and prints each reply on a line.
    private func client(_ path: String, _ requests: [String], asNobody: Bool, raw: [UInt8]? = nil) -> ChildProcess.Result {
        let frames = requests.map { "struct.pack('>I', len(\($0.debugDescription).encode())) + \($0.debugDescription).encode()" }
        let payload = raw.map { "bytes(\($0))" } ?? (frames.isEmpty ? "b''" : frames.joined(separator: " + "))
        let script = """
            import socket, struct
            s = socket.socket(socket.AF_UNIX); s.connect(\(path.debugDescription)); s.sendall(\(payload))
            s.settimeout(5)
            buf, frames = b'', 0
            while frames < \(max(1, requests.count)):
                try:
                    chunk = s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not chunk: break
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack('>I', buf[:4])[0]:
                    n = struct.unpack('>I', buf[:4])[0]; print(buf[4:4+n].decode(), flush=True); buf = buf[4+n:]; frames += 1
            s.settimeout(1)
            try:
                extra = s.recv(65536)
                print('CLOSED' if not extra else 'MORE', flush=True)
            except socket.timeout:
                print('OPEN', flush=True)
            except ConnectionResetError:
                print('CLOSED', flush=True)
            """
        var arguments = ["/usr/bin/python3", "-c", script]
        if asNobody { arguments = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + arguments }
        return ChildProcess.run("/usr/bin/env", arguments, timeout: 20)
    }

    func testOwnerIsServedAndEveryRequestAnswered() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let server = try await startServer(directory, policy: AccessPolicy(.identity(name: "alice", owner: getuid(), allowedGroups: [])), group: group)
        let result = client(
            directory.path("c.sock"), [#"{"command":"whoami"}"#, #"{"command":"nope"}"#, "not json", #"{"command":"whoami","args":{}}"#],
            asNobody: false)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5, result.output)
        XCTAssertEqual(lines.last, "OPEN", "an admitted connection stays open")
        XCTAssertEqual(try JSON(parsing: lines[0])["data"]?["uid"]?.integerValue, Int64(getuid()))
        XCTAssertEqual(try JSON(parsing: lines[1])["message"], "unknown command: nope")
        XCTAssertEqual(try JSON(parsing: lines[2])["code"], "invalid_argument")
        XCTAssertEqual(try JSON(parsing: lines[3])["status"], "ok")
        await server.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path("c.sock")))
        try await group.shutdownGracefully()
    }

    func testAnotherUserGetsOneClearErrorAndIsDisconnected() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        chmod(directory.url.path, 0o777)
        let asNobody = getuid() == 0
        let owner: UInt32 = asNobody ? 4242 : getuid() + 1
        let server = try await startServer(directory, policy: AccessPolicy(.identity(name: "alice", owner: owner, allowedGroups: [])), group: group)
        let result = client(directory.path("c.sock"), [#"{"command":"whoami"}"#], asNobody: asNobody)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2, "exactly one frame, then the connection closes: \(result.output)")
        XCTAssertEqual(lines.last, "CLOSED")
        let reply = try JSON(parsing: try XCTUnwrap(lines.first))
        XCTAssertEqual(reply["code"], "permission_denied")
        let uid = asNobody ? 65534 : getuid()
        XCTAssertTrue(reply["message"]?.stringValue?.hasPrefix("permission denied: uid \(uid) ") == true, "\(reply)")
        XCTAssertTrue(reply["message"]?.stringValue?.hasSuffix("may not use identity alice") == true)
        await server.stop()
        try await group.shutdownGracefully()
    }

    func testASilentClientIsClosedAfterTheIdleTimeoutWhileOthersAreServed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let server = try await startServer(
            directory, policy: AccessPolicy(.identity(name: "alice", owner: getuid(), allowedGroups: [])), group: group,
            idle: .milliseconds(500))
        // Connects and never writes.
        let silent = client(directory.path("c.sock"), [], asNobody: false, raw: [])
        XCTAssertEqual(silent.stdout.split(separator: "\n").last, "CLOSED", silent.output)
        let served = client(directory.path("c.sock"), [#"{"command":"whoami"}"#], asNobody: false)
        XCTAssertTrue(served.stdout.contains(#""status":"ok""#), served.output)
        await server.stop()
        try await group.shutdownGracefully()
    }

    func testAnOversizedFrameIsRefusedAndTheServerKeepsServing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let server = try await startServer(directory, policy: AccessPolicy(.admin(adminGroup: nil)), group: group)
        let path = directory.path("c.sock")
        if getuid() == 0 {
            let greedy = client(path, [], asNobody: false, raw: [0x7F, 0xFF, 0xFF, 0xFF])
            XCTAssertTrue(greedy.stdout.contains("invalid_argument"), greedy.output)
            let fine = client(path, [#"{"command":"whoami"}"#], asNobody: false)
            XCTAssertTrue(fine.stdout.contains(#""status":"ok""#), fine.output)
        } else {
            let refused = client(path, [#"{"command":"whoami"}"#], asNobody: false)
            XCTAssertTrue(refused.stdout.contains("may not use the admin socket"), refused.output)
        }
        await server.stop()
        try await group.shutdownGracefully()
    }
}
