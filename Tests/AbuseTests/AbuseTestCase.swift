import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// A real `pilot-rendezvous` and `pilot-host`, and throwaway local users who own identities on
/// it: the tenants a test turns against each other. Needs root (other uids); skipped otherwise.
class AbuseTestCase: XCTestCase {
    var directory: TemporaryDirectory!
    var accounts: ThrowawayAccounts!
    var processes: [ChildProcess] = []
    private(set) var host: ChildProcess!

    var bin: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    var runtime: String { directory.path("run") }

    override func setUpWithError() throws {
        if let reason = ThrowawayAccounts.unavailableReason { throw XCTSkip(reason) }
        accounts = ThrowawayAccounts()
        directory = try TemporaryDirectory(prefix: "pilot-abuse")
        chmod(directory.url.path, 0o755)
    }

    override func tearDown() {
        if (testRun?.totalFailureCount ?? 0) > 0 { for process in processes { print("--- \(process.name)\n\(process.output.suffix(4000))") } }
        for process in processes { process.stop() }
        accounts?.removeAll()
        directory?.remove()
    }

    /// Starts the rendezvous and the host (with `extra` arguments).
    func startHost(extra: [String] = []) throws {
        let registryPort = try LoopbackSocket.freePort()
        _ = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rendezvous")],
            ready: "beacon 127.0.0.1:")
        host = try start(
            "pilot-host", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registryPort)",
             "--beacon", "127.0.0.1:1", "--listen", "127.0.0.1:\(try LoopbackSocket.freePort())"] + extra,
            ready: "pilot-host serving")
    }

    private func start(_ name: String, _ executable: String, _ arguments: [String], ready: String) throws -> ChildProcess {
        let process = try ChildProcess(
            name: name, executable: bin.appendingPathComponent(executable), arguments: arguments, logDirectory: directory.url)
        processes.append(process)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains(ready) }) else {
            throw SocketError(description: "\(name) did not start: \(process.output)")
        }
        return process
    }

    /// A throwaway user who owns identity `identity` on the host; returns the user's name.
    func tenant(_ prefix: String, owning identity: String) throws -> String {
        let user = try accounts.user(prefix)
        let created = pilotctl(as: nil, ["identity", "create", identity, "--owner", user])
        XCTAssertEqual(created?["status"], "ok", "identity create \(identity): \(String(describing: created))")
        return user
    }

    /// `pilotctl ARGS --json` as `user` (nil: root); the parsed envelope, nil when none.
    func pilotctl(as user: String?, _ arguments: [String], timeout: TimeInterval = 20) -> JSON? {
        var command = [bin.appendingPathComponent("pilotctl").path] + arguments + ["--json", "--runtime-dir", runtime]
        if let user { command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups"] + command }
        let result = ChildProcess.run(command[0], Array(command.dropFirst()), timeout: timeout)
        return try? JSON(parsing: Array(result.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
    }

    /// Whether `pilotctl ARGS` as `user` answers ok within `limit` seconds, and how long it took.
    func answers(as user: String?, _ arguments: [String], within limit: TimeInterval = 1) -> (ok: Bool, seconds: Double) {
        let started = Date()
        let reply = pilotctl(as: user, arguments, timeout: limit + 5)
        let seconds = Date().timeIntervalSince(started)
        return (reply?["status"] == "ok" && seconds <= limit, seconds)
    }

    /// The host's resident memory, in MiB.
    var hostRSS: Double {
        let status = (try? String(contentsOfFile: "/proc/\(host.pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        let kib = line.flatMap { Double($0.split(whereSeparator: \.isWhitespace).dropFirst().first ?? "") } ?? 0
        return kib / 1024
    }

    /// Runs a Python `script` as `user` in the background (killed at the end of the test).
    func background(_ name: String, as user: String, _ script: String) throws -> ChildProcess {
        let process = try ChildProcess(
            name: name, executable: URL(fileURLWithPath: "/usr/bin/setpriv"),
            arguments: ["--reuid=\(user)", "--regid=\(user)", "--init-groups", "/usr/bin/python3", "-u", "-c", script],
            logDirectory: directory.url)
        processes.append(process)
        return process
    }

    /// The socket of identity `name`.
    func socket(_ name: String) -> String { runtime + "/id/\(name).sock" }
}
