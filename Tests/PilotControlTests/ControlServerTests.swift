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
        try startServer(directory, gate: AccessGate(policy), group: group, idle: idle)
    }

    private func startServer(
        _ directory: TemporaryDirectory, gate: AccessGate, group: MultiThreadedEventLoopGroup, idle: TimeAmount = .minutes(10),
        limits: ConnectionLimits = ConnectionLimits()
    ) throws -> ControlServer {
        let server = ControlServer(
            path: directory.path("c.sock"), policy: { gate.policy }, idleTimeout: idle, logger: Logger(label: "test")
        ) { peer, request in
            guard request.command == "whoami" else { return .error(ControlFailure(.invalidArgument, "unknown command: \(request.command)")) }
            return .ok(["uid": .integer(Int64(peer.uid)), "pid": .integer(Int64(peer.pid))])
        }
        try server.start(on: group, mode: 0o666, limits: limits)
        return server
    }

    func testARequestAfterTheGateShutsIsRefusedAndTheConnectionCloses() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let gate = AccessGate(AccessPolicy(.identity(name: "alice", owner: getuid(), allowedGroups: [])))
        let server = try startServer(directory, gate: gate, group: group)
        let session = try ControlSession(path: directory.path("c.sock"))
        XCTAssertTrue(session.request(command: "whoami").isOK)
        gate.policy = AccessPolicy(.removed(name: "alice"))
        let refused = session.request(command: "whoami")
        guard case .reply(let body) = refused else { return XCTFail("no refusal: \(refused)") }
        XCTAssertEqual(try JSON(parsing: Array(body.utf8))["code"], "permission_denied")
        XCTAssertTrue(body.contains("which was deleted"), body)
        XCTAssertEqual(session.request(command: "whoami"), .closed)
        session.stop()
        server.stop()
        try await group.shutdownGracefully()
    }

    func testAUserPastItsConnectionLimitIsToldWhyAndItsOthersGoOn() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let gate = AccessGate(AccessPolicy(.identity(name: "alice", owner: getuid(), allowedGroups: [])))
        let server = try startServer(directory, gate: gate, group: group, limits: ConnectionLimits(perUser: 2))
        let first = try ControlSession(path: directory.path("c.sock"))
        let second = try ControlSession(path: directory.path("c.sock"))
        XCTAssertTrue(first.request(command: "whoami").isOK)
        XCTAssertTrue(second.request(command: "whoami").isOK)
        let third = try ControlSession(path: directory.path("c.sock"))
        guard case .reply(let body) = third.request(command: "whoami") else { return XCTFail("the third connection got no answer") }
        XCTAssertEqual(try JSON(parsing: Array(body.utf8))["code"], "unavailable")
        XCTAssertTrue(first.request(command: "whoami").isOK, "the connections held go on being served")
        // One closes: its place is free again.
        first.stop()
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5) { (try? ControlSession(path: directory.path("c.sock")))?.request(command: "whoami").isOK == true })
        for session in [second, third] { session.stop() }
        server.stop()
        try await group.shutdownGracefully()
    }

    func testOwnerIsServedAndEveryRequestAnswered() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let server = try await startServer(directory, policy: AccessPolicy(.identity(name: "alice", owner: getuid(), allowedGroups: [])), group: group)
        let result = ControlProbe.run(
            directory.path("c.sock"),
            ControlProbe.frames([#"{"command":"whoami"}"#, #"{"command":"nope"}"#, "not json", #"{"command":"whoami","args":{}}"#]), replies: 4)
        let lines = result.replies
        XCTAssertEqual(lines.count, 4, "\(result)")
        XCTAssertEqual(result.end, "OPEN", "an admitted connection stays open")
        XCTAssertEqual(try JSON(parsing: lines[0])["data"]?["uid"]?.integerValue, Int64(getuid()))
        XCTAssertEqual(try JSON(parsing: lines[1])["message"], "unknown command: nope")
        XCTAssertEqual(try JSON(parsing: lines[2])["code"], "invalid_argument")
        XCTAssertEqual(try JSON(parsing: lines[3])["status"], "ok")
        server.stop()
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
        let result = ControlProbe.run(directory.path("c.sock"), ControlProbe.frames([#"{"command":"whoami"}"#]), replies: 1, asNobody: asNobody)
        let lines = result.replies
        XCTAssertEqual(lines.count, 1, "exactly one frame, then the connection closes: \(result)")
        XCTAssertEqual(result.end, "CLOSED")
        let reply = try JSON(parsing: try XCTUnwrap(lines.first))
        XCTAssertEqual(reply["code"], "permission_denied")
        let uid = asNobody ? 65534 : getuid()
        XCTAssertTrue(reply["message"]?.stringValue?.hasPrefix("permission denied: uid \(uid) ") == true, "\(reply)")
        XCTAssertTrue(reply["message"]?.stringValue?.hasSuffix("may not use identity alice") == true)
        server.stop()
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
        let silent = ControlProbe.run(directory.path("c.sock"), "b''", replies: 1)
        XCTAssertEqual(silent.end, "CLOSED", "\(silent)")
        let served = ControlProbe.run(directory.path("c.sock"), ControlProbe.frames([#"{"command":"whoami"}"#]), replies: 1)
        XCTAssertTrue(served.replies.first?.contains(#""status":"ok""#) == true, "\(served)")
        server.stop()
        try await group.shutdownGracefully()
    }

    func testAnOversizedFrameIsRefusedAndTheServerKeepsServing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-control")
        defer { directory.remove() }
        let server = try await startServer(directory, policy: AccessPolicy(.admin(adminGroup: nil)), group: group)
        let path = directory.path("c.sock")
        if getuid() == 0 {
            let greedy = ControlProbe.run(path, "bytes([0x7F, 0xFF, 0xFF, 0xFF])", replies: 1)
            XCTAssertTrue(greedy.replies.first?.contains("invalid_argument") == true, "\(greedy)")
            let fine = ControlProbe.run(path, ControlProbe.frames([#"{"command":"whoami"}"#]), replies: 1)
            XCTAssertTrue(fine.replies.first?.contains(#""status":"ok""#) == true, "\(fine)")
        } else {
            let refused = ControlProbe.run(path, ControlProbe.frames([#"{"command":"whoami"}"#]), replies: 1)
            XCTAssertTrue(refused.replies.first?.contains("may not use the admin socket") == true, "\(refused)")
        }
        server.stop()
        try await group.shutdownGracefully()
    }
}
