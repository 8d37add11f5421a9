import Foundation
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// `identity create --lease`: an identity that lasts as long as one process, on a real
/// pilot-host and pilot-rendezvous: its row in host.db, its socket and its registration go
/// when the holder ends, however it ends, and while the host is down too.
final class IdentityLeaseTests: HostProcessTestCase {
    private var registryPort: UInt16 = 0

    override func setUpWithError() throws {
        try super.setUpWithError()
        registryPort = try startRendezvous()
        _ = try startHost(registryPort: registryPort, generation: 1)
    }

    /// A process to hold a lease: `sleep`, killed at the end if the test did not.
    private func holder() throws -> ChildProcess {
        let process = try ChildProcess(
            name: "holder-\(processes.count)", executable: URL(fileURLWithPath: "/bin/sleep"), arguments: ["120"], logDirectory: directory.url)
        processes.append(process)
        return process
    }

    private func identityRows(_ name: String) throws -> Int {
        let database = try Database(path: directory.path("state") + "/host.db")
        return Int(try database.rows("SELECT count(*) FROM identity WHERE name = ?", [.text(name)]).first?[0].integer ?? -1)
    }

    /// What the registry's `lookup` says of `node`: online or not, or nil when it knows no such
    /// node (retired: the host deleted it for good).
    private func registryOnline(_ node: Int64) throws -> Bool? {
        let connection = try LoopbackSocket.connect(to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: registryPort))
        try connection.write(RegistryFrame.encode(RegistryMessage(type: "lookup", ["node_id": .integer(node)])))
        var decoder = RegistryFrameDecoder()
        guard let frame = try connection.readFrame(timeout: 5) else { throw HostTestError("no reply from the registry") }
        decoder.append(frame)
        guard case .message(let reply)? = try decoder.next() else { throw HostTestError("no reply from the registry") }
        if reply.type == "error" { return nil }
        return try XCTUnwrap(reply["online"]?.boolValue, "lookup_ok without online: \(reply.json.encodedString())")
    }

    /// Waits up to `seconds` for `condition`; how long it took, or nil.
    private func within(_ seconds: TimeInterval, _ condition: () throws -> Bool) rethrows -> TimeInterval? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if try condition() { return Date().timeIntervalSince(start) }
            usleep(20_000)
        }
        return try condition() ? Date().timeIntervalSince(start) : nil
    }

    func testKillingTheHolderDeletesTheIdentityWithinTwoSeconds() throws {
        let sleeper = try holder()
        let created = pilotctl(["identity", "create", "worker-1", "--lease-pid", "\(sleeper.pid)"])
        XCTAssertEqual(created.status, 0, "\(String(describing: created.json))")
        let data = try XCTUnwrap(created.json?["data"])
        XCTAssertEqual(data["lease_pid"]?.integerValue, Int64(sleeper.pid))
        let socket = try XCTUnwrap(data["socket"]?.stringValue)
        XCTAssertEqual(socket, runtime + "/id/worker-1.sock")
        XCTAssertTrue(FileManager.default.fileExists(atPath: socket))
        let node = try XCTUnwrap(data["node_id"]?.integerValue)
        XCTAssertEqual(try identityRows("worker-1"), 1)
        XCTAssertEqual(try registryOnline(node), true)
        XCTAssertEqual(pilotctl(["identity", "socket-path", "worker-1"]).json?["data"]?["socket"]?.stringValue, socket)

        sleeper.kill9()
        let gone = try within(2) { try identityRows("worker-1") == 0 && !FileManager.default.fileExists(atPath: socket) }
        XCTAssertNotNil(gone, "the identity outlived its holder by more than 2 s")
        print("leased identity gone \(String(format: "%.3f", gone ?? -1)) s after kill -9 of its holder")
        XCTAssertNil(try registryOnline(node), "the registry still has the node (only its tombstone should stay)")
        XCTAssertEqual(pilotctl(["identity", "show", "worker-1"]).json?["code"]?.stringValue, "not_found")
    }

    func testPilotctlHoldsTheLeaseWhileItsCommandRunsAsTheIdentity() throws {
        let script = """
            echo "identity=$PILOT_IDENTITY socket=$PILOT_SOCKET"; test -S "$PILOT_SOCKET" && echo socket-ready
            grep '^SigIgn' /proc/self/status; exit 3
            """
        let pilotctl = bin.appendingPathComponent("pilotctl").path
        let result = ChildProcess.run(
            pilotctl, ["identity", "create", "worker-2", "--runtime-dir", runtime, "--lease", "--", "/bin/sh", "-c", script], timeout: 20)
        XCTAssertEqual(result.status, 3, result.output)
        XCTAssertTrue(result.output.contains("identity=worker-2 socket=\(runtime)/id/worker-2.sock"), result.output)
        XCTAssertTrue(result.output.contains("socket-ready"), result.output)
        // The command gets SIGHUP, SIGINT and SIGTERM with their ordinary dispositions, not the
        // ignoring that pilotctl's forwarding sets for itself.
        let ignored = result.output.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }.flatMap { UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) }
        XCTAssertEqual(try XCTUnwrap(ignored, result.output) & (1 << 0 | 1 << 1 | 1 << 14), 0, result.output)
        XCTAssertNotNil(try within(2) { try identityRows("worker-2") == 0 }, "the identity outlived pilotctl --lease")

        let refused = self.pilotctl(["identity", "create", "worker-3", "--lease"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertEqual(try identityRows("worker-3"), 0)
    }

    func testSIGTERMToPilotctlStopsItsCommandAndEndsTheLease() throws {
        let pilotctl = try ChildProcess(
            name: "lease-holder", executable: bin.appendingPathComponent("pilotctl"),
            arguments: ["identity", "create", "worker-5", "--runtime-dir", runtime, "--lease", "--", "/bin/sh", "-c", "echo started; exec sleep 60"],
            logDirectory: directory.url)
        processes.append(pilotctl)
        XCTAssertNotNil(within(10) { pilotctl.output.contains("started") }, pilotctl.output)
        XCTAssertEqual(try identityRows("worker-5"), 1)
        kill(pilotctl.pid, SIGTERM)
        XCTAssertNotNil(within(5) { !pilotctl.isRunning }, "pilotctl did not end after SIGTERM")
        pilotctl.process.waitUntilExit()
        XCTAssertEqual(pilotctl.process.terminationStatus, 128 + SIGTERM, "the command's end by SIGTERM, as the shell reports it")
        XCTAssertNotNil(try within(2) { try identityRows("worker-5") == 0 }, "the identity outlived its lease")
    }

    func testALeaseToAProcessThatIsNotRunningIsRefused() throws {
        let sleeper = try holder()
        let pid = sleeper.pid
        sleeper.kill9()
        _ = within(2) { !sleeper.isRunning }
        let refused = pilotctl(["identity", "create", "worker-4", "--lease-pid", "\(pid)"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertEqual(refused.json?["code"]?.stringValue, "not_found", "\(String(describing: refused.json))")
        XCTAssertTrue(refused.json?["message"]?.stringValue?.contains("not running") == true, "\(String(describing: refused.json))")
        XCTAssertEqual(try identityRows("worker-4"), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: runtime + "/id/worker-4.sock"))
    }

    func testALeaseThatEndedWhileTheHostWasDownEndsAtStart() throws {
        let (ended, running) = (try holder(), try holder())
        XCTAssertEqual(pilotctl(["identity", "create", "gone-while-down", "--lease-pid", "\(ended.pid)"]).status, 0)
        XCTAssertEqual(pilotctl(["identity", "create", "still-held", "--lease-pid", "\(running.pid)"]).status, 0)
        XCTAssertEqual(pilotctl(["identity", "create", "unleased"]).status, 0)
        processes.first { $0.name == "pilot-host-1" }?.stop()
        ended.kill9()
        _ = within(2) { !ended.isRunning }
        _ = try startHost(registryPort: registryPort, generation: 2)
        XCTAssertEqual(try identityRows("gone-while-down"), 0)
        XCTAssertEqual(try identityRows("still-held"), 1)
        XCTAssertEqual(try identityRows("unleased"), 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: runtime + "/id/gone-while-down.sock"))
        // The survivor is watched again after the restart.
        running.kill9()
        XCTAssertNotNil(try within(2) { try identityRows("still-held") == 0 }, "a lease watched again after a restart did not end")
        XCTAssertEqual(try identityRows("unleased"), 1)
    }
}
