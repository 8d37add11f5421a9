import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Every command against every kind of caller, with throwaway users and groups: the owner of an
/// identity, another user, a member of the identity's allowed group, root, and a member of the
/// admin group. Needs root (useradd, setpriv); skipped with the reason otherwise.
final class AccessMatrixTests: XCTestCase {
    private var accounts: ThrowawayAccounts!
    private var suffix: String { accounts.suffix }
    private var directory: TemporaryDirectory!
    private var processes: [ChildProcess] = []

    private var bin: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }

    override func tearDown() {
        if (testRun?.totalFailureCount ?? 0) > 0 { for process in processes { print("--- \(process.name)\n\(process.output)") } }
        for process in processes { process.stop() }
        accounts?.removeAll()
        directory?.remove()
    }

    /// pilotctl as `user` (nil: as root) with that user's groups; returns the reply's status or code.
    private func outcome(_ user: String?, _ arguments: [String]) -> String {
        var command = [bin.appendingPathComponent("pilotctl").path] + arguments + ["--json", "--runtime-dir", directory.path("run")]
        if let user { command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups"] + command }
        let result = ChildProcess.run(command[0], Array(command.dropFirst()), timeout: 20)
        guard let json = try? JSON(parsing: result.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return "unparsable: \(result.output.prefix(200))"
        }
        return json["status"] == "ok" ? "ok" : (json["code"]?.stringValue ?? "?")
    }

    func testEveryCallerGetsExactlyWhatThePolicySays() throws {
        if let reason = ThrowawayAccounts.unavailableReason { throw XCTSkip(reason) }
        accounts = ThrowawayAccounts()
        let team = try accounts.group("ptteam")
        let admins = try accounts.group("ptadm")
        let owner = try accounts.user("ptown")
        let other = try accounts.user("ptoth")
        let member = try accounts.user("ptmem", groups: [team])
        let admin = try accounts.user("ptadmu", groups: [admins])

        directory = try TemporaryDirectory(prefix: "pilot-matrix")
        chmod(directory.url.path, 0o755)
        let registryPort = try LoopbackSocket.freePort()
        let rendezvous = try ChildProcess(
            name: "rendezvous", executable: bin.appendingPathComponent("pilot-rendezvous"),
            arguments: ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rdv")],
            logDirectory: directory.url)
        processes.append(rendezvous)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { rendezvous.output.contains("registry 127.0.0.1") })
        let host = try ChildProcess(
            name: "pilot-host", executable: bin.appendingPathComponent("pilot-host"),
            arguments: ["--state-dir", directory.path("state"), "--runtime-dir", directory.path("run"), "--registry", "127.0.0.1:\(registryPort)",
                        "--listen", "127.0.0.1:0", "--admin-group", admins],
            logDirectory: directory.url)
        processes.append(host)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { host.output.contains("pilot-host serving") })

        XCTAssertEqual(outcome(nil, ["identity", "create", "agent", "--owner", owner, "--group", team, "--hostname", "agent\(suffix)"]), "ok")

        let identityCommands: [[String]] = [
            ["info"], ["set-tags", "x"], ["clear-tags"], ["set-hostname", "agent\(suffix)"], ["set-public"], ["set-private"],
            ["lookup", "1"], ["find", "agent\(suffix)"], ["clear-hostname"],
        ]
        let adminCommands: [[String]] = [["identity", "list"], ["identity", "show", "agent"]]
        // Expected outcome per caller: identity commands, admin commands.
        let callers: [(String, String?, String, String)] = [
            ("owner", owner, "ok", "permission_denied"),
            ("another user", other, "permission_denied", "permission_denied"),
            ("allowed group member", member, "ok", "permission_denied"),
            ("root", nil, "ok", "ok"),
            ("admin group member", admin, "permission_denied", "ok"),
        ]
        for (label, user, identityExpected, adminExpected) in callers {
            for command in identityCommands {
                XCTAssertEqual(outcome(user, command + ["--identity", "agent"]), identityExpected, "\(label): \(command)")
            }
            for command in adminCommands {
                XCTAssertEqual(outcome(user, command), adminExpected, "\(label): \(command)")
            }
        }
        // Mutating admin commands, by those who may not and then by an admin.
        for user in [owner, other, member] {
            XCTAssertEqual(outcome(user, ["identity", "create", "stolen", "--owner", user]), "permission_denied", user)
            XCTAssertEqual(outcome(user, ["identity", "set-owner", "agent", user]), "permission_denied", user)
            XCTAssertEqual(outcome(user, ["identity", "delete", "agent"]), "permission_denied", user)
        }
        XCTAssertEqual(outcome(admin, ["identity", "set-owner", "agent", other]), "ok")
        XCTAssertEqual(outcome(other, ["info", "--identity", "agent"]), "ok", "the new owner gets in")
        XCTAssertEqual(outcome(owner, ["info", "--identity", "agent"]), "permission_denied", "the old owner is out")
        XCTAssertEqual(outcome(admin, ["identity", "delete", "agent"]), "ok")
    }
}
