import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Trust handshakes (`TrustService`) with the official 1.18 daemon: direct both ways, and
/// relayed through the registry for a private daemon.
final class TrustServiceTests: OfficialOverlayTestCase {
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
}
