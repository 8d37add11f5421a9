import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Custom networks and broadcast, as 1.18 has them: a network created with the registry's admin
/// token, joined with its own token, and a broadcast (with the host's admin token) that reaches
/// every member, ours and an official daemon, and nobody else.
final class BroadcastTests: XCTestCase {
    private var processes: [ChildProcess] = []
    private let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

    override func tearDown() {
        for process in processes { process.stop() }
    }

    func testABroadcastReachesEveryMemberOfACustomNetworkAndNobodyElse() throws {
        let overlay: OverlayHarness
        do { overlay = try OverlayHarness() } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }
        // One admin token for the registry, the host and the official daemon, as an operator
        // of a private overlay would have it.
        let token = "s3cret-\(UInt32.random(in: 0...UInt32.max))"
        let tokenFile = overlay.directory.path("admin-token")
        try (token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        try overlay.startRendezvous(extra: ["--admin-token-file", tokenFile])
        let alpha = try overlay.startDaemon("alpha", extra: ["-public", "-admin-token", token])
        let host = try ChildProcess(
            name: "pilot-host", executable: bin.appendingPathComponent("pilot-host"),
            arguments: [
                "--state-dir", overlay.directory.path("state"), "--runtime-dir", overlay.directory.path("run"),
                "--registry", "127.0.0.1:\(overlay.registryPort)", "--beacon", "127.0.0.1:\(overlay.beaconPort)",
                "--listen", "127.0.0.1:\(try LoopbackSocket.freePort())", "--admin-token-file", tokenFile, "--handshake-poll", "1",
            ],
            logDirectory: overlay.directory.url)
        processes.append(host)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { host.output.contains("pilot-host serving") }, host.output)
        let home = overlay.directory.path("home")  // no ~/.pilot/config.json: the token comes from the environment or nowhere
        func pilotctl(_ arguments: [String], token: String = "") -> JSON? {
            runPilotctl(arguments, runtime: overlay.directory.path("run"), timeout: 60, environment: ["HOME": home, "PILOT_ADMIN_TOKEN": token])
        }
        var nodes: [String: UInt32] = [:]
        for name in ["alice", "bob", "carol"] {
            let created = pilotctl(["identity", "create", name, "--hostname", name])
            nodes[name] = try XCTUnwrap(created?["data"]?["node_id"]?.integerValue.flatMap(UInt32.init(exactly:)), "\(String(describing: created))")
        }
        let (alice, bob) = (nodes["alice"]!, nodes["bob"]!)

        // alice creates "crew" (token rule); she is its first member. Without the admin token
        // pilotctl refuses before asking anyone, as 1.18's does.
        XCTAssertEqual(pilotctl(["network", "create", "--name", "crew", "--identity", "alice"])?["code"], "auth_required")
        let created = pilotctl(["network", "create", "--name", "crew", "--join-rule", "token", "--token", "tk1", "--identity", "alice"], token: token)
        let network = try XCTUnwrap(created?["data"]?["network_id"]?.integerValue.flatMap(UInt16.init(exactly:)), "\(String(describing: created))")
        XCTAssertGreaterThan(network, 0)
        // bob joins with the network's token (a wrong one is refused); so does the official
        // daemon, with its own pilotctl; carol stays out.
        XCTAssertEqual(pilotctl(["network", "join", "\(network)", "--token", "nope", "--identity", "bob"])?["status"], "error")
        let joined = pilotctl(["network", "join", "\(network)", "--token", "tk1", "--identity", "bob"])
        XCTAssertEqual(joined?["data"]?["type"], "join_network_ok", "\(String(describing: joined))")
        XCTAssertEqual(joined?["data"]?["address"]?.stringValue, Address(network: network, node: bob).description)
        _ = try overlay.ctl("alpha", ["network", "join", "\(network)", "--token", "tk1"])
        let members = pilotctl(["network", "members", "\(network)", "--identity", "carol"])?["data"]?["nodes"]?.arrayValue ?? []
        XCTAssertEqual(Set(members.compactMap { $0["node_id"]?.integerValue }), [Int64(alice), Int64(bob), Int64(alpha)], "\(members)")
        let listed = pilotctl(["network", "list", "--identity", "carol"])?["data"]?["networks"]?.arrayValue ?? []
        XCTAssertTrue(listed.contains { $0["name"] == "crew" && $0["id"]?.integerValue == Int64(network) }, "\(listed)")

        // Trust still gates what reaches an identity here: bob and carol trust alice (carol is
        // not a member, so the broadcast must pass her by all the same).
        for name in ["bob", "carol"] {
            XCTAssertEqual(pilotctl(["handshake", "alice", "crew", "--identity", name])?["data"]?["status"], "sent")
            let asker = nodes[name]!
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
                pilotctl(["pending", "--identity", "alice"])?["data"]?["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(asker) } == true
            })
            XCTAssertEqual(pilotctl(["approve", "\(asker)", "--identity", "alice"])?["data"]?["status"], "approved")
        }

        // Refusals, in 1.18's order and words.
        func refusal(_ arguments: [String], token: String) -> String {
            let reply = pilotctl(["broadcast"] + arguments, token: token)
            XCTAssertEqual(reply?["code"], "broadcast_failed", "\(String(describing: reply))")
            return reply?["message"]?.stringValue ?? ""
        }
        XCTAssertEqual(pilotctl(["broadcast", "\(network)", "x", "--identity", "alice"])?["code"], "auth_required")
        XCTAssertTrue(refusal(["\(network)", "x", "--identity", "alice"], token: "wrong").contains("broadcast denied: invalid admin token"))
        XCTAssertTrue(refusal(["0", "x", "--identity", "alice"], token: token).contains("broadcast not permitted on backbone network"))
        XCTAssertTrue(refusal(["\(network)", "x", "--identity", "carol"], token: token).contains("is not a member of network \(network)"))

        // alice broadcasts: bob and the official daemon get it from N:alice; carol does not.
        func listener(_ name: String, seconds: Int) throws -> ChildProcess {
            let process = try ChildProcess(
                name: "listen-\(name)", executable: bin.appendingPathComponent("pilotctl"),
                arguments: ["listen", "1000", "--count", "1", "--timeout", "\(seconds)", "--json", "--identity", name, "--runtime-dir", overlay.directory.path("run")],
                logDirectory: overlay.directory.url)
            processes.append(process)
            return process
        }
        let bobListens = try listener("bob", seconds: 20)
        let carolListens = try listener("carol", seconds: 8)
        let alphaListens = try overlay.startCtl("alpha", ["listen", "1000", "--count", "1"], label: "listen-alpha")
        processes.append(alphaListens)
        // A listener is ready some time after it starts, and nothing says when: alice broadcasts
        // again each second until bob and the daemon have it (or their listeners ended).
        var sent: JSON?
        let heard = ChildProcess.waitUntil(timeout: 20, every: 0) {
            sent = pilotctl(["broadcast", "\(network)", "hello crew", "--identity", "alice"], token: token)
            return ChildProcess.waitUntil(timeout: 1) { !bobListens.isRunning && !alphaListens.isRunning }
        }
        XCTAssertTrue(heard, "bob: \(bobListens.output)\nalpha: \(alphaListens.output)")
        XCTAssertEqual(sent?["data"], ["bytes": 10, "network_id": .integer(Int64(network)), "port": 1000], "\(String(describing: sent))")
        let fromAlice = Address(network: network, node: alice).description
        for process in [bobListens, carolListens, alphaListens] {
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 25) { !process.isRunning }, "\(process.name): \(process.output)")
        }
        let bobGot = try JSON(parsing: Array(bobListens.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))["data"]?["datagrams"]?.arrayValue
        XCTAssertEqual(bobGot?.first?["data"], "hello crew", bobListens.output)
        XCTAssertEqual(bobGot?.first?["from"]?.stringValue, fromAlice)
        let alphaGot = try JSON(parsing: Array(alphaListens.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))["data"]?["messages"]?.arrayValue
        XCTAssertEqual(alphaGot?.first?["data"], "hello crew", alphaListens.output)
        XCTAssertEqual(alphaGot?.first?["src_addr"]?.stringValue, fromAlice)
        let carolGot = try JSON(parsing: Array(carolListens.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))["data"]
        XCTAssertEqual(carolGot?["datagrams"]?.arrayValue?.count, 0, carolListens.output)

        // The official daemon broadcasts (its pilotctl with the admin token): bob, who trusts it,
        // gets it from N:alpha.
        _ = try overlay.ctl("alpha", ["handshake", "bob", "crew"])
        try overlay.eventually("bob sees the daemon's request") {
            pilotctl(["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(alpha) } == true
        }
        XCTAssertEqual(pilotctl(["approve", "\(alpha)", "--identity", "bob"])?["data"]?["status"], "approved")
        try overlay.eventually("the daemon trusts bob") {
            try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(bob) } == true
        }
        let bobListensAgain = try listener("bob", seconds: 20)
        // As above: the daemon broadcasts each second until bob's listener has it.
        let heardAgain = try ChildProcess.waitUntil(timeout: 20, every: 0) {
            _ = try overlay.ctl("alpha", ["broadcast", "\(network)", "hello from alpha"], environment: ["PILOT_ADMIN_TOKEN": token])
            return ChildProcess.waitUntil(timeout: 1) { !bobListensAgain.isRunning }
        }
        XCTAssertTrue(heardAgain, bobListensAgain.output)
        let fromAlpha = try JSON(parsing: Array(bobListensAgain.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))["data"]?["datagrams"]?.arrayValue
        XCTAssertEqual(fromAlpha?.first?["data"], "hello from alpha", "\(bobListensAgain.output)\n\(host.output.suffix(2000))")
        XCTAssertEqual(fromAlpha?.first?["from"]?.stringValue, Address(network: network, node: alpha).description)
        XCTAssertTrue(host.isRunning)
    }
}
