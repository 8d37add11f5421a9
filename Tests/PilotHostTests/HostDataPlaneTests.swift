import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// pilot-host's identities on the network: between two identities of the host, from an
/// identity to the official 1.18 daemon, and from the daemon to a public identity.
final class HostDataPlaneTests: XCTestCase {
    private var processes: [ChildProcess] = []
    private let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

    override func tearDown() {
        for process in processes { process.stop() }
    }

    /// Our rendezvous and a public official daemon "alpha" (or a skip where it cannot run).
    private func overlay(public isPublic: Bool = true) throws -> (OverlayHarness, UInt32) {
        do { return try OverlayHarness.started(daemon: "alpha", extra: isPublic ? ["-public"] : []) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
    }

    /// pilot-host as a process on the overlay, its state and runtime in the overlay's directory.
    private func startHost(_ overlay: OverlayHarness, listen: String, generation: Int = 1, extra: [String] = []) throws -> ChildProcess {
        let host = try ChildProcess(
            name: "pilot-host-\(generation)", executable: bin.appendingPathComponent("pilot-host"),
            arguments: [
                "--state-dir", overlay.directory.path("state"), "--runtime-dir", overlay.directory.path("run"),
                "--registry", "127.0.0.1:\(overlay.registryPort)", "--beacon", "127.0.0.1:\(overlay.beaconPort)", "--listen", listen,
            ] + extra,
            logDirectory: overlay.directory.url)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { host.output.contains("pilot-host serving") }, host.output)
        return host
    }

    /// A file of `outgoing` random bytes from alice to the daemon "alpha" (named `target`), into
    /// its ~/.pilot/received, and one of `incoming` bytes from the daemon into alice's received
    /// files (saved, then cleared): both compared byte for byte.
    private func filesBothWays(_ overlay: OverlayHarness, to target: String, daemon: UInt32, outgoing: Int, incoming: Int, seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let outgoingBytes = (0..<outgoing).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let outgoingPath = overlay.directory.path("report.bin")
        try Data(outgoingBytes).write(to: URL(fileURLWithPath: outgoingPath))
        let sentFile = pilotctl(overlay, ["send-file", target, outgoingPath, "--identity", "alice"])
        XCTAssertEqual(sentFile?["data"]?["ack"], .string("ACK FILE \(outgoing) bytes"), "\(String(describing: sentFile))")
        let theirFiles = overlay.directory.url.appendingPathComponent("alpha/.pilot/received")
        let arrived = (try? FileManager.default.contentsOfDirectory(atPath: theirFiles.path).filter { $0.hasPrefix("report") }) ?? []
        XCTAssertEqual(arrived.count, 1, "\(arrived)")
        XCTAssertEqual(try? Data(contentsOf: theirFiles.appendingPathComponent(arrived.first ?? "-")), Data(outgoingBytes))
        let incomingBytes = (0..<incoming).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let incomingPath = overlay.directory.path("data.bin")
        try Data(incomingBytes).write(to: URL(fileURLWithPath: incomingPath))
        _ = try overlay.ctl("alpha", ["send-file", "alice", incomingPath])
        let saved = overlay.directory.path("saved")
        try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: true)
        let listing = pilotctl(overlay, ["received", "--identity", "alice", "--save", saved, "--clear"])?["data"]?["files"]?.arrayValue ?? []
        XCTAssertEqual(listing.first?["name"], "data.bin", "\(listing)")
        XCTAssertEqual(listing.first?["bytes"], .integer(Int64(incoming)))
        XCTAssertEqual(listing.first?["from"]?.stringValue, Address(node: daemon).description)
        XCTAssertEqual(try? Data(contentsOf: URL(fileURLWithPath: saved + "/data.bin")), Data(incomingBytes))
    }

    /// Our pilotctl with --json against the overlay's host; the parsed envelope.
    private func pilotctl(_ overlay: OverlayHarness, _ arguments: [String]) -> JSON? {
        runPilotctl(arguments, runtime: overlay.directory.path("run"), timeout: 60)
    }

    func testPingBetweenIdentitiesAndWithTheOfficialDaemonBothWays() throws {
        let (overlay, daemon) = try overlay()
        defer { overlay.stopAll() }
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())")
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        XCTAssertEqual(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["status"], "ok")
        let bob = pilotctl(["identity", "create", "bob", "--hostname", "bob", "--public"])
        let bobAddress = try XCTUnwrap(bob?["data"]?["address"]?.stringValue)

        func succeeded(_ reply: JSON?, _ count: Int, _ what: String) {
            let results = reply?["data"]?["results"]?.arrayValue ?? []
            XCTAssertEqual(results.count, count, "\(what): \(String(describing: reply))")
            XCTAssertTrue(results.allSatisfy { $0["error"] == nil && ($0["rtt_ms"]?.doubleValue ?? -1) >= 0 }, "\(what): \(String(describing: reply))")
        }
        // Two identities of this host, by hostname: in-process.
        succeeded(pilotctl(["ping", "bob", "--identity", "alice", "--count", "2"]), 2, "alice → bob")
        // An identity to the official daemon, through a tunnel.
        succeeded(pilotctl(["ping", Address(node: daemon).description, "--identity", "alice", "--count", "2"]), 2, "alice → daemon")
        // The official daemon to the public identity (its own socket, registered by the host).
        let pinged = try overlay.ctl("alpha", ["ping", bobAddress, "--count", "2"], timeout: 40)
        XCTAssertEqual(pinged["results"]?.arrayValue?.count, 2, "\(pinged)")
        XCTAssertTrue(pinged["results"]?.arrayValue?.allSatisfy { $0["error"] == nil } == true, "daemon → bob: \(pinged)\n\(host.output.suffix(3000))")
        // Two identities of this host: private alice does not answer bob until she trusts him.
        let refused = pilotctl(["ping", "alice", "--identity", "bob", "--count", "1", "--timeout", "2"])
        XCTAssertNotNil(refused?["data"]?["results"]?.arrayValue?.first?["error"], "\(String(describing: refused))")
        XCTAssertEqual(pilotctl(["handshake", "alice", "bob here", "--identity", "bob"])?["data"]?["status"], "sent")
        var pendingForAlice: [JSON] = []
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            pendingForAlice = pilotctl(["pending", "--identity", "alice"])?["data"]?["pending"]?.arrayValue ?? []
            return !pendingForAlice.isEmpty
        })
        XCTAssertEqual(pendingForAlice.first?["justification"], "bob here")
        let bobNode = try XCTUnwrap(pendingForAlice.first?["node_id"]?.integerValue)
        XCTAssertEqual(pilotctl(["approve", "\(bobNode)", "--identity", "alice"])?["data"]?["status"], "approved")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            pilotctl(["trust", "--identity", "bob"])?["data"]?["total"] == 1
        })
        succeeded(pilotctl(["ping", "alice", "--identity", "bob", "--count", "1"]), 1, "bob → alice, trusted")

        // bench: 50 MB through the daemon's echo port, and between two identities of this host,
        // every byte compared with what was sent.
        for (target, who) in [(Address(node: daemon).description, "alice"), ("alice", "bob")] {
            let bench = pilotctl(["bench", target, "50", "--identity", who])
            XCTAssertEqual(bench?["data"]?["bytes"]?.integerValue, 50 << 20, "\(who) → \(target): \(String(describing: bench))")
            XCTAssertEqual(bench?["data"]?["verified"], true)
        }

        // peers: alice has an encrypted tunnel with the daemon (bob is in-process: no tunnel).
        let peers = pilotctl(["peers", "--identity", "alice"])?["data"]?["peers"]?.arrayValue ?? []
        XCTAssertEqual(peers.compactMap { $0["node_id"]?.integerValue }, [Int64(daemon)], "\(peers)")
        XCTAssertEqual(pilotctl(["connections", "--identity", "carol-not-yet"])?["code"], "not_found")

        // A public identity nobody here has talked to is reachable from its creation on.
        let carol = pilotctl(["identity", "create", "carol", "--public"])
        let carolAddress = try XCTUnwrap(carol?["data"]?["address"]?.stringValue)
        let reached = try overlay.ctl("alpha", ["ping", carolAddress, "--count", "1"], timeout: 40)
        XCTAssertTrue(reached["results"]?.arrayValue?.first?["error"] == nil && reached["results"]?.arrayValue?.count == 1, "daemon → carol: \(reached)")
        // A node that does not exist: a clear error per probe, not a hang.
        let nowhere = pilotctl(["ping", "0:0000.0000.7777", "--identity", "alice", "--count", "1", "--timeout", "2"])
        XCTAssertEqual(nowhere?["code"], "not_found", "\(String(describing: nowhere))")
        XCTAssertTrue(host.isRunning)
    }

    /// The trust handshake with the official 1.18 daemon, both directions, with the official
    /// pilotctl on its side: request, pending, approve, trusted on both sides (and in host.db
    /// across a restart); a revoke reaches the daemon.
    func testTrustHandshakeWithTheOfficialDaemonBothWays() throws {
        let (overlay, daemon) = try overlay()
        defer { overlay.stopAll() }
        let listen = "127.0.0.1:\(try LoopbackSocket.freePort())"
        var host = try startHost(overlay, listen: listen)
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        let alice = try XCTUnwrap(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(pilotctl(["identity", "create", "bob", "--hostname", "bob", "--public"])?["data"]?["node_id"]?.integerValue)

        // alice asks the daemon; its owner approves with the official pilotctl.
        XCTAssertEqual(pilotctl(["handshake", "alpha", "let me in", "--identity", "alice"])?["data"]?["status"], "sent")
        try overlay.eventually("the daemon sees alice's request") {
            try overlay.ctl("alpha", ["pending"])["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == alice && $0["justification"] == "let me in" } == true
        }
        _ = try overlay.ctl("alpha", ["approve", "\(alice)"])
        try overlay.eventually("alice trusts the daemon") {
            pilotctl(["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(daemon) && $0["mutual"] == true } == true
        }

        // Streams on any port between trusted nodes: the daemon's `pilotctl send` to alice's `recv`.
        let receiver = try ChildProcess(
            name: "recv", executable: bin.appendingPathComponent("pilotctl"),
            arguments: ["recv", "5001", "--timeout", "20", "--json", "--identity", "alice", "--runtime-dir", overlay.directory.path("run")],
            logDirectory: overlay.directory.url)
        processes.append(receiver)
        try overlay.eventually("the daemon's send reaches alice's port 5001", timeout: 15) {
            (try? overlay.ctl("alpha", ["send", "alice", "5001", "--data", "hi-from-daemon"], timeout: 10)) != nil
        }
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { !receiver.isRunning }, receiver.output)
        let received = try JSON(parsing: Array(receiver.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        XCTAssertEqual(received["data"]?["messages"]?.arrayValue?.first?["data"], "hi-from-daemon", "\(received)")
        XCTAssertEqual(received["data"]?["messages"]?.arrayValue?.first?["from"]?.stringValue, Address(node: daemon).description)

        // Messages both ways on port 1001 (tagged frames, ACKed as 1.18 does).
        let sent = pilotctl(["send-message", "alpha", "--data", #"{"task":"sum","n":[1,2]}"#, "--type", "json", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK JSON 24 bytes", "\(String(describing: sent))")
        let theirs = try overlay.ctl("alpha", ["inbox"])["messages"]?.arrayValue ?? []
        XCTAssertEqual(theirs.first?["type"], "JSON", "\(theirs)")
        XCTAssertEqual(theirs.first?["from"]?.stringValue, Address(node: UInt32(alice)).description)
        let reply = try overlay.ctl("alpha", ["send-message", "alice", "--data", "sum is 3"])
        XCTAssertEqual(reply["ack"], "ACK TEXT 8 bytes", "\(reply)")
        let inbox = pilotctl(["inbox", "--identity", "alice", "--clear"])?["data"]?["messages"]?.arrayValue ?? []
        XCTAssertEqual(inbox.map { $0["data"]?.stringValue }, ["sum is 3"])
        XCTAssertEqual(inbox.first?["from"]?.stringValue, Address(node: daemon).description)
        XCTAssertEqual(inbox.first?["message_id"]?.stringValue?.count, 32)
        XCTAssertEqual(pilotctl(["inbox", "--identity", "alice"])?["data"]?["total"], 0, "--clear emptied it")

        // Files both ways (FILE frames on 1001), byte for byte: 5 MB from alice into the daemon's
        // ~/.pilot/received, 3 MB from the daemon into alice's received files.
        try filesBothWays(overlay, to: "alpha", daemon: daemon, outgoing: 5_000_000, incoming: 3_000_000, seed: 7)
        XCTAssertEqual(pilotctl(["received", "--identity", "alice"])?["data"]?["total"], 0, "--clear emptied them")

        // The event stream (1002) with the official pilotctl on both ends of alice's broker, and
        // alice's subscription on the daemon's broker.
        let theirSubscriber = try overlay.startCtl("alpha", ["subscribe", "alice", "news", "--count", "1", "--timeout", "20s"], label: "their-subscriber")
        processes.append(theirSubscriber)
        try overlay.eventually("the daemon's subscription reaches alice's broker", timeout: 10) {
            pilotctl(["connections", "--identity", "alice"])?["data"]?["connections"]?.arrayValue?.contains { $0["local_port"] == 1002 } == true
        }
        XCTAssertEqual(try overlay.ctl("alpha", ["publish", "alice", "news", "--data", "hello news"])["bytes"], 10)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { !theirSubscriber.isRunning }, theirSubscriber.output)
        XCTAssertTrue(theirSubscriber.output.contains(#""events":[{"bytes":10,"data":"hello news","topic":"news"}]"#), theirSubscriber.output)
        let ourSubscriber = try ChildProcess(
            name: "our-subscriber", executable: bin.appendingPathComponent("pilotctl"),
            arguments: ["subscribe", "alpha", "alerts", "--count", "1", "--timeout", "20", "--json", "--identity", "alice", "--runtime-dir", overlay.directory.path("run")],
            logDirectory: overlay.directory.url)
        processes.append(ourSubscriber)
        try overlay.eventually("alice's subscription reaches the daemon's broker", timeout: 10) {
            pilotctl(["connections", "--identity", "alice"])?["data"]?["connections"]?.arrayValue?.contains { $0["remote_port"] == 1002 } == true
        }
        _ = try overlay.ctl("alpha", ["publish", "alpha", "alerts", "--data", "disk full"])
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { !ourSubscriber.isRunning }, ourSubscriber.output)
        let events = try JSON(parsing: Array(ourSubscriber.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))["data"]?["events"]
        XCTAssertEqual(events, [["topic": "alerts", "data": "disk full", "bytes": 9]], ourSubscriber.output)

        // The daemon asks bob; bob's owner approves with our pilotctl.
        _ = try overlay.ctl("alpha", ["handshake", "bob", "hello bob"])
        var pending: [JSON] = []
        try overlay.eventually("bob sees the daemon's request") {
            pending = pilotctl(["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue ?? []
            return !pending.isEmpty
        }
        XCTAssertEqual(pending.first?["node_id"]?.integerValue, Int64(daemon))
        XCTAssertEqual(pending.first?["justification"], "hello bob")
        XCTAssertEqual(pilotctl(["approve", "\(daemon)", "--identity", "bob"])?["data"]?["status"], "approved")
        try overlay.eventually("the daemon trusts bob") {
            try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == bob } == true
        }
        // Not pending twice, and nobody trusts by being asked.
        XCTAssertEqual(pilotctl(["approve", "\(daemon)", "--identity", "bob"])?["code"], "not_found")
        XCTAssertEqual(pilotctl(["trust", "--identity", "bob"])?["data"]?["total"], 1)

        // A service identity trusts whoever asks, at once.
        let service = try XCTUnwrap(
            pilotctl(["identity", "create", "service", "--hostname", "service", "--public", "--auto-approve"])?["data"]?["node_id"]?.integerValue)
        _ = try overlay.ctl("alpha", ["handshake", "service", "auto please"])
        try overlay.eventually("the daemon trusts the service") {
            try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == service } == true
        }
        XCTAssertEqual(pilotctl(["pending", "--identity", "service"])?["data"]?["pending"]?.arrayValue?.count, 0)
        XCTAssertEqual(pilotctl(["trust", "--identity", "service"])?["data"]?["trusted"]?.arrayValue?.first?["node_id"]?.integerValue, Int64(daemon))

        // Trust is in host.db: a restarted host still has it.
        host.stop()
        host = try startHost(overlay, listen: listen, generation: 2)
        XCTAssertEqual(pilotctl(["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.first?["node_id"]?.integerValue, Int64(daemon))
        // alice (private) has not joined since the restart, and nobody here uses her: the
        // daemon, whose session with her is from before, reaches her all the same.
        let woken = try overlay.ctl("alpha", ["send-message", "alice", "--data", "woken"], timeout: 20)
        XCTAssertEqual(woken["ack"], "ACK TEXT 5 bytes", "\(woken)\n\(host.output.suffix(3000))")
        XCTAssertEqual(pilotctl(["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue?.compactMap { $0["data"]?.stringValue }, ["woken"])
        // bob (public) has its own UDP socket on the same port as before: the daemon's tunnel to
        // it re-keys at once instead of timing out on a dead endpoint.
        try overlay.eventually("the daemon reaches bob again after the restart", timeout: 15) {
            (try? overlay.ctl("alpha", ["send-message", "bob", "--data", "still there"], timeout: 10))?["ack"] == "ACK TEXT 11 bytes"
        }

        // bob revokes: gone here, and the daemon drops bob.
        XCTAssertEqual(pilotctl(["untrust", "\(daemon)", "--identity", "bob"])?["data"]?["status"], "revoked")
        XCTAssertEqual(pilotctl(["trust", "--identity", "bob"])?["data"]?["total"], 0)
        do {
            try overlay.eventually("the daemon forgets bob") {
                try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == bob } == false
            }
        } catch {
            print("--- pilot-host\n\(host.output.suffix(6000))\n--- overlay\n\(overlay.logs().suffix(8000))")
            throw error
        }
    }

    /// Files between two identities of one host: the largest we send (16 MiB less room for the
    /// name), byte for byte; a bigger or missing file gets a clear error and nothing is kept.
    func testFilesBetweenIdentitiesOfOneHost() throws {
        let (overlay, _) = try overlay()
        defer { overlay.stopAll() }
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())")
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        XCTAssertEqual(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["status"], "ok")
        XCTAssertEqual(pilotctl(["identity", "create", "bob", "--hostname", "bob", "--auto-approve"])?["status"], "ok")
        let path = overlay.directory.path("big.bin")
        var random = SplitMix64(seed: 11)
        let largest = (16 << 20) - 257
        let contents = random.bytes(largest)
        try Data(contents).write(to: URL(fileURLWithPath: path))

        XCTAssertEqual(pilotctl(["handshake", "bob", "files please", "--identity", "alice"])?["data"]?["status"], "sent")
        try overlay.eventually("bob trusts alice", timeout: 10) {
            pilotctl(["trust", "--identity", "alice"])?["data"]?["total"] == 1
        }
        let sent = pilotctl(["send-file", "bob", path, "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], .string("ACK FILE \(largest) bytes"), "\(String(describing: sent))")
        let saved = overlay.directory.path("saved")
        try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: true)
        let listing = pilotctl(["received", "--identity", "bob", "--save", saved])?["data"]?["files"]?.arrayValue ?? []
        XCTAssertEqual(listing.first?["name"], "big.bin", "\(listing)")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: saved + "/big.bin")), Data(contents))

        try Data(contents + [0]).write(to: URL(fileURLWithPath: path))
        let tooBig = pilotctl(["send-file", "bob", path, "--identity", "alice"])
        XCTAssertEqual(tooBig?["code"], "invalid_argument", "\(String(describing: tooBig))")
        XCTAssertTrue(tooBig?["message"]?.stringValue?.contains("at most \(largest) bytes") == true, "\(String(describing: tooBig))")
        XCTAssertEqual(pilotctl(["send-file", "bob", overlay.directory.path("missing"), "--identity", "alice"])?["code"], "invalid_argument")
        XCTAssertEqual(pilotctl(["received", "--identity", "bob"])?["data"]?["total"], 1, "nothing more arrived")
    }

    /// An identity's broker (1002) between identities of one host: topic subscribers get their
    /// topic, `*` subscribers everything, an event published to `*` reaches only `*`.
    func testEventStreamTopicsAndTheStar() throws {
        let (overlay, _) = try overlay()
        defer { overlay.stopAll() }
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())")
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        for (name, extra) in [("alice", []), ("bob", ["--auto-approve"]), ("carol", [])] {
            XCTAssertEqual(pilotctl(["identity", "create", name, "--hostname", name] + extra)?["status"], "ok")
        }
        for name in ["alice", "carol"] {
            XCTAssertEqual(pilotctl(["handshake", "bob", "events", "--identity", name])?["data"]?["status"], "sent")
            try overlay.eventually("bob trusts \(name)", timeout: 10) { pilotctl(["trust", "--identity", name])?["data"]?["total"] == 1 }
        }
        func subscriber(_ name: String, _ topic: String, count: Int) throws -> ChildProcess {
            let process = try ChildProcess(
                name: "subscriber-\(name)", executable: bin.appendingPathComponent("pilotctl"),
                arguments: ["subscribe", "bob", topic, "--count", "\(count)", "--timeout", "8", "--json", "--identity", name,
                            "--runtime-dir", overlay.directory.path("run")],
                logDirectory: overlay.directory.url)
            processes.append(process)
            return process
        }
        let alerts = try subscriber("alice", "alerts", count: 2)
        let everything = try subscriber("carol", "*", count: 3)
        try overlay.eventually("both subscriptions reach bob's broker", timeout: 10) {
            (pilotctl(["connections", "--identity", "bob"])?["data"]?["connections"]?.arrayValue ?? []).filter { $0["local_port"] == 1002 }.count == 2
        }
        for (who, topic, data) in [("carol", "alerts", "a1"), ("alice", "*", "s1"), ("alice", "other", "o1")] {
            XCTAssertEqual(pilotctl(["publish", "bob", topic, "--data", data, "--identity", who])?["data"]?["bytes"], 2)
        }
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 15) { !alerts.isRunning && !everything.isRunning })
        func events(_ process: ChildProcess) -> [String] {
            let json = try? JSON(parsing: Array(process.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
            return json?["data"]?["events"]?.arrayValue?.compactMap { event in
                event["topic"]?.stringValue.flatMap { topic in event["data"]?.stringValue.map { "\(topic):\($0)" } }
            } ?? []
        }
        XCTAssertEqual(events(alerts), ["alerts:a1"], alerts.output)
        XCTAssertEqual(events(everything), ["alerts:a1", "*:s1", "other:o1"], everything.output)
    }

    /// Private on both sides: neither can resolve the other, so requests and answers go through
    /// the registry (1.18 relays them; pilot-host polls every `handshake-poll` seconds).
    func testRelayedHandshakesWithAPrivateOfficialDaemon() throws {
        let (overlay, daemon) = try overlay(public: false)
        defer { overlay.stopAll() }
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())", extra: ["--handshake-poll", "1"])
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        let alice = try XCTUnwrap(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(pilotctl(["identity", "create", "bob", "--hostname", "bob"])?["data"]?["node_id"]?.integerValue)

        // alice → the private daemon: not resolvable, so relayed; approved there.
        let asked = pilotctl(["handshake", "\(daemon)", "relay me", "--identity", "alice"])
        XCTAssertEqual(asked?["data"]?["relayed"], true, "\(String(describing: asked))")
        try overlay.eventually("the daemon sees alice's relayed request", timeout: 45) {
            try overlay.ctl("alpha", ["pending"])["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == alice } == true
        }
        _ = try overlay.ctl("alpha", ["approve", "\(alice)"])
        try overlay.eventually("alice trusts the daemon", timeout: 30) {
            pilotctl(["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(daemon) } == true
        }
        // Now trusted, they reach each other directly.
        XCTAssertEqual(pilotctl(["ping", "\(daemon)", "--identity", "alice", "--count", "1"])?["data"]?["results"]?.arrayValue?.first?["error"], nil)

        // The daemon → private bob: 1.18 relays it, pilot-host's poll finds it, bob approves.
        _ = try overlay.ctl("alpha", ["handshake", "\(bob)", "relayed to bob"])
        try overlay.eventually("bob sees the relayed request", timeout: 30) {
            pilotctl(["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(daemon) } == true
        }
        XCTAssertEqual(pilotctl(["approve", "\(daemon)", "--identity", "bob"])?["data"]?["status"], "approved")
        try overlay.eventually("the daemon trusts bob", timeout: 45) {
            try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == bob } == true
        }
    }

    /// An official daemon started `-relay-only` registers without an endpoint to hand out:
    /// alice's handshake goes through the registry, and everything after (pings, messages, a
    /// 2 MB file each way) through the beacon, 0x05 out and 0x06/0x09 in, both directions.
    func testARelayOnlyOfficialDaemonIsReachedThroughTheBeaconBothWays() throws {
        let overlay: OverlayHarness, daemon: UInt32
        do { (overlay, daemon) = try OverlayHarness.started(daemon: "alpha", extra: ["-relay-only", "-trust-auto-approve"]) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())", extra: ["--handshake-poll", "1", "--log-level", "info"])
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        XCTAssertEqual(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["status"], "ok")

        // The registry hides the daemon's endpoint from everyone, trusted or not.
        let lookup = try overlay.ctl("alpha", ["lookup", "alpha"])
        XCTAssertNil(lookup["real_addr"], "\(lookup)")

        XCTAssertNotNil(pilotctl(["handshake", "\(daemon)", "relay me", "--identity", "alice"])?["data"])
        try overlay.eventually("alice and the daemon trust each other", timeout: 45) {
            pilotctl(["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.contains {
                $0["node_id"]?.integerValue == Int64(daemon) && $0["mutual"] == true
            } == true
        }
        let pinged = pilotctl(["ping", "\(daemon)", "--identity", "alice", "--count", "2"])
        let results = pinged?["data"]?["results"]?.arrayValue ?? []
        XCTAssertEqual(results.count, 2, "\(String(describing: pinged))\n\(host.output.suffix(3000))")
        XCTAssertTrue(results.allSatisfy { $0["error"] == nil }, "\(String(describing: pinged))")
        let peer = pilotctl(["peers", "--identity", "alice"])?["data"]?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == Int64(daemon) }
        XCTAssertEqual(peer?["relay"], true, "\(String(describing: peer))")
        XCTAssertTrue(host.output.contains("relaying through the beacon"), host.output.suffix(3000).description)

        // Messages both ways.
        let sent = pilotctl(["send-message", "\(daemon)", "--data", "through the beacon", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK TEXT 18 bytes", "\(String(describing: sent))")
        let theirs = try overlay.ctl("alpha", ["inbox"])
        XCTAssertEqual(theirs["messages"]?.arrayValue?.first?["preview"], "through the beacon", "\(theirs)")
        let reply = try overlay.ctl("alpha", ["send-message", "alice", "--data", "and back"])
        XCTAssertEqual(reply["ack"], "ACK TEXT 8 bytes", "\(reply)")
        let inbox = pilotctl(["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue ?? []
        XCTAssertEqual(inbox.map { $0["data"]?.stringValue }, ["and back"])

        // 2 MB each way, byte for byte.
        try filesBothWays(overlay, to: "\(daemon)", daemon: daemon, outgoing: 2_000_000, incoming: 2_000_000, seed: 55)
    }
}
