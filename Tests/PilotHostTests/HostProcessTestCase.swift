import Foundation
import PilotCrypto
import PilotHost
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// What tests of `pilot-host` and `pilotctl` as users run them share: a directory, child
/// processes killed at the end, `pilot-rendezvous` as the registry, pilotctl with JSON.
class HostProcessTestCase: XCTestCase {
    var directory: TemporaryDirectory!
    var processes: [ChildProcess] = []

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-hostexe")
        chmod(directory.url.path, 0o755)
    }

    override func tearDown() {
        if (testRun?.totalFailureCount ?? 0) > 0 { for process in processes { print("--- \(process.name)\n\(process.output)") } }
        for process in processes { process.stop() }
        directory.remove()
    }

    var bin: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    var runtime: String { directory.path("run") }

    /// A `pilot-rendezvous` named `name` on 127.0.0.1, its state in `directory`/`name`, with
    /// `extra` arguments; returns it with its registry port and the beacon port it printed.
    func startRendezvous(_ name: String, extra: [String] = []) throws -> (process: ChildProcess, registry: UInt16, beacon: UInt16) {
        let port = try LoopbackSocket.freePort()
        let process = try start(
            name, "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(port)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path(name)] + extra,
            ready: "beacon 127.0.0.1:")
        let line = process.output.split(separator: "\n").first { $0.hasPrefix("beacon 127.0.0.1:") }
        let beacon = try XCTUnwrap(line.flatMap { try? Endpoint(parsing: String($0.dropFirst("beacon ".count))).port })
        return (process, port, beacon)
    }

    func start(_ name: String, _ executable: String, _ arguments: [String], ready: String) throws -> ChildProcess {
        let process = try ChildProcess(
            name: name, executable: bin.appendingPathComponent(executable), arguments: arguments, logDirectory: directory.url)
        processes.append(process)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains(ready) }) else {
            throw HostTestError("\(name) did not start: \(process.output)")
        }
        return process
    }

    /// Starts pilot-rendezvous on a free port; returns the registry port.
    func startRendezvous(extra: [String] = []) throws -> UInt16 {
        try startRendezvousAndBeacon(extra: extra).registry
    }

    /// Starts pilot-rendezvous on free ports (with `extra` arguments); returns the registry's and
    /// the beacon's.
    func startRendezvousAndBeacon(extra: [String] = []) throws -> (registry: UInt16, beacon: UInt16) {
        let registryPort = try LoopbackSocket.freePort()
        let process = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rendezvous")] + extra,
            ready: "beacon 127.0.0.1:")
        let line = process.output.split(separator: "\n").first { $0.hasPrefix("beacon 127.0.0.1:") }
        guard let beaconPort = line.flatMap({ try? Endpoint(parsing: String($0.dropFirst("beacon ".count))).port }) else {
            throw HostTestError("no beacon port in: \(process.output)")
        }
        return (registryPort, beaconPort)
    }

    func startHost(registryPort: UInt16, generation: Int) throws -> ChildProcess {
        try start(
            "pilot-host-\(generation)", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registryPort)",
             "--beacon", "127.0.0.1:1", "--listen", "127.0.0.1:0"],
            ready: "pilot-host serving")
    }

    /// Starts `count` pilot-host processes on one registry, each with its own state and runtime
    /// directory and a free tunnel port; returns their runtime directories.
    func startHosts(_ count: Int, registryPort: UInt16, extra: [String] = []) throws -> [String] {
        try (0..<count).map { index in
            try startHost(index, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())", extra: extra).runtime
        }
    }

    /// Starts (or, after a stop, restarts) host number `index` of `startHosts`: the same state
    /// and runtime directories; returns its process and runtime directory.
    func startHost(
        _ index: Int, registryPort: UInt16, listen: String, extra: [String] = [], generation: Int = 1
    ) throws -> (process: ChildProcess, runtime: String) {
        let runtime = directory.path("run\(index)")
        let process = try start(
            generation == 1 ? "pilot-host-\(index)" : "pilot-host-\(index)-\(generation)", "pilot-host",
            ["--state-dir", directory.path("state\(index)"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registryPort)",
             "--listen", listen] + extra,
            ready: "pilot-host serving")
        return (process, runtime)
    }

    /// pilotctl --json against the host whose runtime directory is `runtime`: the parsed envelope.
    func ctl(_ runtime: String, _ arguments: [String]) -> JSON? {
        runPilotctl(arguments, runtime: runtime, timeout: 30)
    }

    /// Runs pilotctl (as uid 65534 with `asNobody`) and returns its exit status and parsed JSON.
    func pilotctl(_ arguments: [String], asNobody: Bool = false) -> (status: Int32, json: JSON?) {
        var command = [bin.appendingPathComponent("pilotctl").path] + arguments + ["--json", "--runtime-dir", runtime]
        if asNobody { command = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command }
        let result = ChildProcess.run(command[0], Array(command.dropFirst()), timeout: 20)
        let text = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        return (result.status, try? JSON(parsing: text))
    }
}

/// `pilotctl ARGS --json --runtime-dir RUNTIME`, the pilotctl built beside the tests: its
/// parsed JSON envelope (nil when it printed none).
func runPilotctl(_ arguments: [String], runtime: String, timeout: TimeInterval, environment: [String: String] = [:]) -> JSON? {
    let pilotctl = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pilotctl")
    let result = ChildProcess.run(pilotctl.path, arguments + ["--json", "--runtime-dir", runtime], environment: environment, timeout: timeout)
    return try? JSON(parsing: Array(result.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
}
