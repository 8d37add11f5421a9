import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// `pilot-host` and `pilotctl` as users run them, with `pilot-rendezvous` as the registry.
final class HostExecutableTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var processes: [ChildProcess] = []

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-hostexe")
        chmod(directory.url.path, 0o755)
    }

    override func tearDown() {
        if (testRun?.totalFailureCount ?? 0) > 0 { for process in processes { print("--- \(process.name)\n\(process.output)") } }
        for process in processes { process.stop() }
        directory.remove()
    }

    private var bin: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    private var runtime: String { directory.path("run") }

    private func start(_ name: String, _ executable: String, _ arguments: [String], ready: String) throws -> ChildProcess {
        let process = try ChildProcess(
            name: name, executable: bin.appendingPathComponent(executable), arguments: arguments, logDirectory: directory.url)
        processes.append(process)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains(ready) }) else {
            throw HostTestError("\(name) did not start: \(process.output)")
        }
        return process
    }

    private func startHost(registryPort: UInt16, generation: Int) throws -> ChildProcess {
        try start(
            "pilot-host-\(generation)", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registryPort)",
             "--beacon", "127.0.0.1:1", "--listen", "127.0.0.1:37000"],
            ready: "pilot-host serving")
    }

    /// Runs pilotctl (as uid 65534 with `asNobody`) and returns its exit status and parsed JSON.
    private func pilotctl(_ arguments: [String], asNobody: Bool = false) -> (status: Int32, json: JSON?) {
        var command = [bin.appendingPathComponent("pilotctl").path] + arguments + ["--json", "--runtime-dir", runtime]
        if asNobody { command = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command }
        let result = ChildProcess.run(command[0], Array(command.dropFirst()), timeout: 20)
        let text = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        return (result.status, try? JSON(parsing: text))
    }

    func testAdminCreatesIdentitiesThatKeepTheirAddressesAcrossARestart() throws {
        let registryPort = try LoopbackSocket.freePort()
        _ = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rendezvous")],
            ready: "registry 127.0.0.1")
        let host = try startHost(registryPort: registryPort, generation: 1)

        let alice = pilotctl(["identity", "create", "alice", "--hostname", "alice", "--tags", "worker"])
        XCTAssertEqual(alice.status, 0)
        XCTAssertEqual(alice.json?["data"]?["address"], "0:0000.0000.0001")
        let bob = pilotctl(["identity", "create", "bob", "--owner", "65534"])
        XCTAssertEqual(bob.json?["data"]?["node_id"], 2)
        let duplicate = pilotctl(["identity", "create", "alice"])
        XCTAssertEqual(duplicate.status, 1)
        XCTAssertEqual(duplicate.json?["code"], "already_exists")
        let badName = pilotctl(["identity", "create", "../x"])
        XCTAssertEqual(badName.json?["code"], "invalid_argument")
        let missing = pilotctl(["identity", "show", "carol"])
        XCTAssertEqual(missing.json?["code"], "not_found")
        XCTAssertEqual(pilotctl(["identity", "list"]).json?["data"]?["identities"]?.arrayValue?.count, 2)

        // Sockets: each identity's is owned by its owner.
        var info = stat()
        XCTAssertEqual(stat(runtime + "/id/bob.sock", &info), 0)
        XCTAssertEqual(info.st_uid, 65534)

        host.stop()
        _ = try startHost(registryPort: registryPort, generation: 2)
        let shown = pilotctl(["identity", "show", "alice"])
        XCTAssertEqual(shown.json?["data"]?["address"], "0:0000.0000.0001")
        XCTAssertEqual(pilotctl(["info", "--identity", "bob"]).json?["data"]?["node_id"], 2)

        // The identity's own commands go to the registry and stick across restarts of the host.
        let tagged = pilotctl(["set-tags", "gpu", "batch", "--identity", "alice"])
        XCTAssertEqual(tagged.json?["data"]?["tags"], ["gpu", "batch"])
        XCTAssertEqual(pilotctl(["set-hostname", "alice2", "--identity", "alice"]).json?["data"]?["hostname"], "alice2")
        XCTAssertEqual(pilotctl(["set-public", "--identity", "alice"]).json?["data"]?["public"], true)
        let found = pilotctl(["find", "alice2", "--identity", "bob"])
        XCTAssertEqual(found.json?["data"]?["address"], "0:0000.0000.0001")
        let looked = pilotctl(["lookup", "0:0000.0000.0001", "--identity", "bob"])
        XCTAssertEqual(looked.json?["data"]?["tags"], ["gpu", "batch"])
        XCTAssertEqual(looked.json?["data"]?["public"], true)
        XCTAssertEqual(pilotctl(["find", "nobody-here", "--identity", "bob"]).json?["code"], "not_found")
        XCTAssertEqual(pilotctl(["set-hostname", "Bad Name", "--identity", "alice"]).json?["code"], "invalid_argument")
        _ = pilotctl(["clear-tags", "--identity", "alice"])
        _ = pilotctl(["clear-hostname", "--identity", "alice"])
        let cleared = pilotctl(["info", "--identity", "alice"]).json?["data"]
        XCTAssertEqual(cleared?["tags"], [])
        XCTAssertEqual(cleared?["hostname"], .null)

        XCTAssertEqual(pilotctl(["identity", "delete", "alice"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: runtime + "/id/alice.sock"))
        XCTAssertEqual(pilotctl(["identity", "list"]).json?["data"]?["identities"]?.arrayValue?.count, 1)
    }

    func testAnotherUserReachesOnlyItsOwnIdentity() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run pilotctl as another uid (running as uid \(getuid()))") }
        let registryPort = try LoopbackSocket.freePort()
        _ = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rendezvous")],
            ready: "registry 127.0.0.1")
        _ = try startHost(registryPort: registryPort, generation: 1)
        XCTAssertEqual(pilotctl(["identity", "create", "root-agent"]).status, 0)
        XCTAssertEqual(pilotctl(["identity", "create", "nobody-agent", "--owner", "65534"]).status, 0)

        // With no identity named, nobody gets the one it may use.
        let own = pilotctl(["info"], asNobody: true)
        XCTAssertEqual(own.status, 0)
        XCTAssertEqual(own.json?["data"]?["name"], "nobody-agent")
        let other = pilotctl(["info", "--identity", "root-agent"], asNobody: true)
        XCTAssertEqual(other.status, 1)
        XCTAssertEqual(other.json?["code"], "permission_denied")
        let admin = pilotctl(["identity", "list"], asNobody: true)
        XCTAssertEqual(admin.json?["code"], "permission_denied")

        // Ownership moves with set-owner: now root-agent is nobody's too.
        XCTAssertEqual(pilotctl(["identity", "set-owner", "root-agent", "65534"]).status, 0)
        XCTAssertEqual(pilotctl(["info", "--identity", "root-agent"], asNobody: true).status, 0)
    }
}

struct HostTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
