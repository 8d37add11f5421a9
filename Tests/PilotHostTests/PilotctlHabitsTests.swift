import Foundation
import PilotClient
import PilotTestSupport
import PilotWire
import XCTest

/// pilotctl takes the reference pilotctl's habits: global flags anywhere (`GlobalFlags`), the
/// environment variables, and 1.18's command names.
final class PilotctlHabitsTests: HostProcessTestCase {
    /// pilotctl's shape where it matters: commands, nested ones, aliases.
    private let commands = GlobalFlags.CommandTree([
        "info": .init(), "set-tags": .init(), "lookup": .init(), "send": .init(), "version": .init(),
        "send-datagram": .init(), "dgram": .init(),
        "identity": .init(["list": .init(), "show": .init()]),
        "extras": .init(["set-tags": .init(), "send-datagram": .init(), "dgram": .init()]),
    ])

    func testGlobalFlagsArePlacedRightAfterTheSubcommandPathWhereverTheyStood() {
        let cases: [(given: [String], placed: [String])] = [
            // Before the subcommand, as the reference's users write them.
            (["--json", "info"], ["info", "--json"]),
            (["--json", "--identity", "alice", "info"], ["info", "--json", "--identity", "alice"]),
            (["--identity=alice", "info"], ["info", "--identity=alice"]),
            (["--runtime-dir", "/tmp/r", "--json", "info"], ["info", "--runtime-dir", "/tmp/r", "--json"]),
            (["--json", "set-tags", "worker", "gpu"], ["set-tags", "--json", "worker", "gpu"]),
            // After it, and among its arguments.
            (["info", "--json"], ["info", "--json"]),
            (["set-tags", "worker", "--json", "gpu", "--identity", "alice"], ["set-tags", "--json", "--identity", "alice", "worker", "gpu"]),
            (["send", "bob", "7", "--data", "hi", "--runtime-dir=/r"], ["send", "--runtime-dir=/r", "bob", "7", "--data", "hi"]),
            // Between the words of a nested command.
            (["identity", "--json", "list"], ["identity", "list", "--json"]),
            (["--runtime-dir", "/r", "identity", "show", "alice"], ["identity", "show", "--runtime-dir", "/r", "alice"]),
            (["extras", "--json", "set-tags", "gpu"], ["extras", "set-tags", "--json", "gpu"]),
            // Aliases are commands too.
            (["--json", "dgram", "bob", "7", "--data", "hi"], ["dgram", "--json", "bob", "7", "--data", "hi"]),
            (["--json", "extras", "dgram", "bob", "7"], ["extras", "dgram", "--json", "bob", "7"]),
            (["--json", "lookup", "alice"], ["lookup", "--json", "alice"]),
            // An argument that names a command is an argument once the path has ended.
            (["--json", "lookup", "info"], ["lookup", "--json", "info"]),
            (["identity", "show", "list", "--json"], ["identity", "show", "--json", "list"]),
            // Nothing at or after -- moves.
            (["--json", "send", "bob", "7", "--", "--json", "--identity", "x"], ["send", "--json", "bob", "7", "--", "--json", "--identity", "x"]),
            (["send", "--", "--identity", "x"], ["send", "--", "--identity", "x"]),
            // --help stays where it is.
            (["--help"], ["--help"]),
            (["info", "-h"], ["info", "-h"]),
            (["--json", "info", "--help"], ["info", "--json", "--help"]),
            // An option without its value stays for the parser to report.
            (["info", "--identity"], ["info", "--identity"]),
            (["--identity", "--", "info"], ["--identity", "--", "info"]),
            // Not a command: the flags go first, where the parser names the unknown word.
            (["--json", "frobnicate"], ["--json", "frobnicate"]),
            ([], []),
        ]
        for (given, placed) in cases {
            XCTAssertEqual(GlobalFlags.placed(given, commands: commands), placed, "\(given)")
        }
    }

    /// The built pilotctl against a running host: flags in every place, the environment's
    /// precedence, and 1.18's names.
    func testPilotctlTakesTheReferencesFlagsEnvironmentAndNames() throws {
        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        XCTAssertEqual(ctl(runtime, ["identity", "create", "alice", "--hostname", "alice"])?["data"]?["node_id"], 1)
        XCTAssertEqual(ctl(runtime, ["identity", "create", "bob", "--hostname", "bob"])?["data"]?["node_id"], 2)
        let unset = ["PILOT_SOCKET": "", "PILOT_IDENTITY": "", "PILOT_RUNTIME_DIR": ""]

        /// Runs the built pilotctl with exactly `arguments`; its status and JSON (stdout or stderr).
        func run(_ arguments: [String], _ environment: [String: String] = [:]) -> (status: Int32, json: JSON?) {
            let result = ChildProcess.run(
                bin.appendingPathComponent("pilotctl").path, arguments, environment: unset.merging(environment) { $1 }, timeout: 20)
            return (result.status, try? JSON(parsing: Array(result.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8)))
        }
        func hostname(_ arguments: [String], _ environment: [String: String] = [:]) -> JSON? { run(arguments, environment).json?["data"]?["hostname"] }

        XCTAssertEqual(hostname(["--json", "--identity", "alice", "--runtime-dir", runtime, "info"]), "alice")
        XCTAssertEqual(hostname(["--json", "--identity=bob", "--runtime-dir=\(runtime)", "info"]), "bob")
        XCTAssertEqual(hostname(["info", "--json", "--identity", "alice", "--runtime-dir", runtime]), "alice")
        XCTAssertEqual(run(["identity", "--json", "--runtime-dir", runtime, "list"]).json?["data"]?["identities"]?.arrayValue?.count, 2)
        let tagged = run(["--json", "set-tags", "worker", "gpu", "--identity", "alice", "--runtime-dir", runtime])
        XCTAssertEqual(tagged.json?["data"]?["tags"], ["worker", "gpu"])
        XCTAssertEqual(run(["extras", "--json", "set-tags", "edge", "--identity", "bob", "--runtime-dir", runtime]).json?["data"]?["tags"], ["edge"])

        // --identity, then $PILOT_SOCKET, then $PILOT_IDENTITY; two sockets and none named is an error.
        let bobSocket = runtime + "/id/bob.sock"
        XCTAssertEqual(run(["--json", "info", "--runtime-dir", runtime]).status, 1)
        XCTAssertEqual(hostname(["--json", "info", "--runtime-dir", runtime], ["PILOT_IDENTITY": "alice"]), "alice")
        XCTAssertEqual(hostname(["--json", "info", "--runtime-dir", runtime], ["PILOT_SOCKET": bobSocket, "PILOT_IDENTITY": "alice"]), "bob")
        XCTAssertEqual(hostname(["--json", "--identity", "alice", "info", "--runtime-dir", runtime], ["PILOT_SOCKET": bobSocket]), "alice")
        XCTAssertEqual(hostname(["--json", "info"], ["PILOT_SOCKET": bobSocket]), "bob", "the socket is used as it is, whatever the runtime directory")

        // lookup takes a hostname as 1.18's does.
        let looked = run(["--json", "lookup", "alice", "--identity", "bob", "--runtime-dir", runtime])
        XCTAssertEqual(looked.json?["data"]?["node_id"], 1, "\(String(describing: looked.json))")
        XCTAssertEqual(run(["--json", "lookup", "nobody-here", "--identity", "bob", "--runtime-dir", runtime]).json?["code"], "not_found")

        // dgram is send-datagram: the same command, checked the same way.
        for words in [["dgram"], ["extras", "dgram"]] {
            let sent = run(["--json"] + words + ["alice", "6000", "--data", "hi", "--identity", "bob", "--runtime-dir", runtime])
            XCTAssertEqual(sent.json?["data"]?["to"], "0:0000.0000.0001", "\(words): \(String(describing: sent.json))")
        }
        let datagram = run(["--json", "dgram", "alice", "0", "--data", "hi", "--identity", "bob", "--runtime-dir", runtime])
        XCTAssertEqual(datagram.json?["code"], "invalid_argument")
        XCTAssertTrue(datagram.json?["message"]?.stringValue?.hasPrefix("send-datagram") == true, "\(String(describing: datagram.json))")

        let version = run(["--json", "version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertNotNil(version.json?["data"]?["version"]?.stringValue)

        // health, top level and under extras: 1.18's keys.
        for words in [["health"], ["extras", "health"]] {
            let health = run(["--json"] + words + ["--identity", "alice", "--runtime-dir", runtime])
            XCTAssertEqual(health.json?["data"]?["status"], "ok", "\(words): \(String(describing: health.json))")
            XCTAssertNotNil(health.json?["data"]?["uptime_seconds"]?.integerValue, "\(words)")
            XCTAssertEqual(health.json?["data"]?["name"], "alice", "\(words)")
        }

        // What pilot-host cannot do yet says so, with a code a script can test.
        for command in [["extras", "set-webhook", "http://x"], ["extras", "clear-webhook"]] {
            let refused = run(["--json"] + command + ["--identity", "alice", "--runtime-dir", runtime])
            XCTAssertEqual(refused.status, 1, "\(command)")
            XCTAssertEqual(refused.json?["status"], "error", "\(command)")
            XCTAssertEqual(refused.json?["code"], "unsupported", "\(command)")
            let name = command[0] == "extras" ? command[1] : command[0]
            XCTAssertEqual(refused.json?["message"], .string("pilotctl \(name): not available on pilot-host yet"))
        }
        // 1.18's names that are served now: disconnect (alice has no stream 3), prefer-direct
        // (alice has no session with bob).
        let disconnect = run(["--json", "disconnect", "3", "--identity", "alice", "--runtime-dir", runtime])
        XCTAssertEqual(disconnect.json?["code"], "not_found", "\(String(describing: disconnect.json))")
        let preferred = run(["--json", "prefer-direct", "bob", "--identity", "alice", "--runtime-dir", runtime])
        XCTAssertEqual(preferred.status, 0, "\(String(describing: preferred.json))")
        XCTAssertEqual(preferred.json?["data"]?["had_tunnel"], false)
        XCTAssertEqual(preferred.json?["data"]?["was_relay_pinned"], false)
    }
}
