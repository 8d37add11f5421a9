import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Unmodified official 1.18 daemons on a private overlay served by our `pilot-rendezvous`.
final class OfficialDaemonTests: XCTestCase {
    private var overlay: OverlayHarness?

    override func tearDown() {
        if let overlay, (testRun?.totalFailureCount ?? 0) > 0 { print(overlay.logs()) }
        overlay?.stopAll()
        overlay = nil
        super.tearDown()
    }

    /// Register, find by hostname and tag, a handshake approved by `pilotctl approve`, ping and
    /// messages both ways; then the rendezvous restarts and both keep their addresses and talk.
    func testDiscoveryManualApprovalMessagingAndRestart() throws {
        let overlay = try makeOverlay()
        self.overlay = overlay
        try overlay.startRendezvous()
        let alpha = try overlay.startDaemon("alpha")
        let beta = try overlay.startDaemon("beta")
        XCTAssertNotEqual(alpha, beta)
        let alphaAddress = try XCTUnwrap(try overlay.ctl("alpha", ["info"])["address"]?.stringValue)
        let betaAddress = try XCTUnwrap(try overlay.ctl("beta", ["info"])["address"]?.stringValue)
        XCTAssertEqual(Address(alphaAddress), Address(node: alpha))

        // Find each other by hostname.
        XCTAssertTrue(try overlay.ctl("alpha", ["find", "beta"]).encodedString().contains(betaAddress))
        XCTAssertTrue(try overlay.ctl("beta", ["find", "alpha"]).encodedString().contains(alphaAddress))

        // The backbone's members, as the official pilotctl lists them.
        let members = try overlay.ctl("alpha", ["network", "members", "0"])
        XCTAssertEqual(Set(members["nodes"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue } ?? []), ["alpha", "beta"])

        // Tags: set with the official pilotctl, seen by lookup, found with our find_by_tag.
        _ = try overlay.ctl("alpha", ["extras", "set-tags", "worker", "gpu"])
        _ = try overlay.ctl("beta", ["extras", "set-tags", "worker"])
        XCTAssertTrue(try overlay.ctl("beta", ["lookup", "\(alpha)"]).encodedString().contains("gpu"))
        let workers = try overlay.registryRequest(RegistryMessage(type: "find_by_tag", ["tag": "worker"]))
        XCTAssertEqual(workers.type, "find_by_tag_ok")
        XCTAssertEqual(
            Set(workers["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue } ?? []), [Int64(alpha), Int64(beta)])
        let gpus = try overlay.registryRequest(RegistryMessage(type: "find_by_tag", ["tag": "#gpu"]))
        XCTAssertEqual(gpus["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [Int64(alpha)])

        // Handshake: both are private, so it is relayed through the registry; beta approves.
        _ = try overlay.ctl("alpha", ["handshake", "beta", "integration test"])
        try overlay.eventually("beta to see alpha's request") {
            try overlay.ctl("beta", ["pending"]).encodedString().contains("\"node_id\":\(alpha)")
        }
        _ = try overlay.ctl("beta", ["approve", "\(alpha)"])
        try overlay.eventually("alpha to trust beta") {
            try overlay.ctl("alpha", ["trust"]).encodedString().contains("\"node_id\":\(beta)")
        }

        try assertTalk(overlay, "alpha", "beta", tag: "before restart")

        // 1.18 asks for the backbone's network policy at start; an error there makes it log a
        // warning and keep a "last-known" policy it never had.
        for name in ["alpha", "beta"] {
            XCTAssertFalse(overlay.log(of: name).contains("network policy load failed"), overlay.log(of: name))
            XCTAssertFalse(overlay.log(of: name).contains("unknown type"), overlay.log(of: name))
        }

        // Restart the rendezvous on the same state: nobody loses an address.
        overlay.stopRendezvous()
        try overlay.startRendezvous()
        try overlay.eventually("alpha to be found by hostname after the restart") {
            try overlay.ctl("beta", ["find", "alpha"]).encodedString().contains(alphaAddress)
        }
        XCTAssertEqual(try overlay.ctl("alpha", ["info"])["address"]?.stringValue, alphaAddress)
        XCTAssertEqual(try overlay.ctl("beta", ["info"])["address"]?.stringValue, betaAddress)
        try assertTalk(overlay, "alpha", "beta", tag: "after restart")

        // Restarting a daemon keeps its node id too (proven by its key).
        XCTAssertEqual(
            try overlay.registryRequest(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(alpha))]))["hostname"],
            "alpha")
    }

    /// The nameserver is a public node of the overlay: official daemons reach it on port 53 with
    /// the official `pilotctl connect`, register A and S records for themselves only, find each
    /// other's hostnames, and find it at the same address after the rendezvous restarts.
    func testTheNameserverAnswersOfficialDaemonsAndKeepsItsAddressAcrossRestarts() throws {
        let overlay = try makeOverlay()
        self.overlay = overlay
        let nameserverArguments = ["--nameserver-addr", "127.0.0.1:\(try LoopbackSocket.freePort())"]
        try overlay.startRendezvous(extra: nameserverArguments)
        let alpha = Address(node: try overlay.startDaemon("alpha"))
        let beta = Address(node: try overlay.startDaemon("beta"))
        let found = try overlay.ctl("alpha", ["find", "nameserver"])
        XCTAssertEqual(found["public"], true)
        let nameserver = try XCTUnwrap(found["address"]?.stringValue)

        func ask(_ name: String, _ request: String) throws -> String {
            let reply = try overlay.ctl(name, ["connect", "nameserver", "53", "--message", request])
            return try XCTUnwrap(reply["response"]?.stringValue, reply.encodedString())
        }
        XCTAssertEqual(try ask("alpha", "QUERY A beta"), "A beta \(beta)", "registry hostnames answer A queries")
        XCTAssertEqual(try ask("alpha", "REGISTER A web \(alpha)"), "OK")
        XCTAssertEqual(try ask("beta", "QUERY A web"), "A web \(alpha)")
        XCTAssertEqual(try ask("beta", "REGISTER A web \(beta)"), "ERR REGISTER A: web is held by \(alpha) until it expires")
        // The registering node is the stream's tunnel peer, whatever the request says.
        XCTAssertEqual(try ask("beta", "REGISTER A mine \(alpha)"), "ERR REGISTER A: \(alpha) is not the registering node \(beta)")
        XCTAssertEqual(try ask("alpha", "REGISTER S api \(alpha) 0 8080"), "OK")
        XCTAssertEqual(try ask("beta", "REGISTER S api \(beta) 0 8080"), "OK")
        XCTAssertEqual(try ask("alpha", "QUERY S 0 8080"), "S api \(alpha) 8080\nS api \(beta) 8080")
        XCTAssertEqual(try ask("alpha", "QUERY N backbone"), "N backbone 0")
        XCTAssertTrue(try ask("alpha", "hello").hasPrefix("ERR invalid nameserver request"))

        overlay.stopRendezvous()
        try overlay.startRendezvous(extra: nameserverArguments)
        try overlay.eventually("the nameserver to answer after the restart") {
            try overlay.ctl("beta", ["find", "nameserver"])["address"]?.stringValue == nameserver
                && (try? ask("beta", "QUERY A alpha")) == "A alpha \(alpha)"
        }
    }

    /// Auto-approval, then a flood of malformed and hostile requests at the registry and the beacon
    /// while the two daemons keep messaging.
    func testAutoApprovalAndMessagingSurviveHostileTraffic() throws {
        let overlay = try makeOverlay()
        self.overlay = overlay
        try overlay.startRendezvous()
        let alpha = try overlay.startDaemon("alpha")
        let beta = try overlay.startDaemon("beta", extra: ["-trust-auto-approve"])

        _ = try overlay.ctl("alpha", ["handshake", "beta", "auto please"])
        try overlay.eventually("alpha to trust beta without anyone approving") {
            try overlay.ctl("alpha", ["trust"]).encodedString().contains("\"node_id\":\(beta)")
        }
        try overlay.eventually("beta to trust alpha") {
            try overlay.ctl("beta", ["trust"]).encodedString().contains("\"node_id\":\(alpha)")
        }

        let attack = HostileTraffic(registry: overlay.registryEndpoint, beacon: overlay.beaconEndpoint, victims: [alpha, beta])
        attack.start()
        defer { attack.stop() }
        for round in 1...5 {
            try assertTalk(overlay, "alpha", "beta", tag: "under attack \(round)")
        }
        attack.stop()
        XCTAssertGreaterThan(attack.sent, 2000, "the attack should have sent thousands of requests")

        // Everyone is still served.
        XCTAssertTrue(try overlay.ctl("alpha", ["find", "beta"]).encodedString().contains("\(beta)"))
        let reply = try overlay.registryRequest(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(beta))]))
        XCTAssertEqual(reply.type, "lookup_ok")
        XCTAssertEqual(overlay.rendezvous?.isRunning, true)
    }

    /// The registry over TLS: the official daemon pins the certificate's SHA-256 and registers.
    func testOfficialDaemonRegistersOverPinnedTLS() throws {
        let overlay = try makeOverlay()
        self.overlay = overlay
        let certificate = overlay.directory.path("cert.pem")
        let key = overlay.directory.path("key.pem")
        let made = ChildProcess.run(
            "/usr/bin/env",
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key,
             "-out", certificate, "-days", "2", "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        guard made.status == 0 else { throw XCTSkip("openssl cannot make a test certificate: \(made.output.suffix(300))") }
        let der = ChildProcess.run("/usr/bin/env", ["sh", "-c", "openssl x509 -in '\(certificate)' -outform DER | sha256sum"])
        let fingerprint = String(der.stdout.prefix(64))
        XCTAssertEqual(fingerprint.count, 64)

        try overlay.startRendezvous(tls: (certificate, key))
        let printed = ChildProcess.waitUntil(timeout: 5) { overlay.rendezvous?.output.contains("registry-fingerprint \(fingerprint)") == true }
        XCTAssertTrue(printed, "pilot-rendezvous prints the fingerprint to pin")
        let node = try overlay.startDaemon("secure", extra: ["-registry-tls", "-registry-fingerprint", fingerprint])
        XCTAssertEqual(node, 1)
        XCTAssertTrue(try overlay.ctl("secure", ["find", "secure"]).encodedString().contains("0:0000.0000.0001"))

        // A wrong pin is refused by the daemon: it never registers.
        let wrong = String(repeating: "0", count: 64)
        XCTAssertThrowsError(try overlay.startDaemon("impostor", extra: ["-registry-tls", "-registry-fingerprint", wrong], timeout: 8))
    }

    /// Custom networks with the official pilotctl: one made by a `create_network` request carrying
    /// the admin token of `--admin-token-file`, joined by two daemons (each signs its join) with the
    /// network's token, listed as members, trusted through it, and left.
    func testOfficialDaemonsJoinListAndLeaveACustomNetwork() throws {
        let overlay = try makeOverlay()
        self.overlay = overlay
        let tokenFile = overlay.directory.path("admin-token")
        try "tok-123\nthe first line only\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        try overlay.startRendezvous(extra: ["--admin-token-file", tokenFile])
        let alpha = try overlay.startDaemon("alpha")
        let beta = try overlay.startDaemon("beta")
        func create(adminToken: String) throws -> RegistryMessage {
            try overlay.registryRequest(
                RegistryMessage(
                    type: "create_network",
                    ["node_id": 0, "name": "lab", "join_rule": "token", "token": "tk1", "admin_token": .string(adminToken)]))
        }
        XCTAssertEqual(try create(adminToken: "tok-1234")["error"], "create_network: invalid admin token")
        XCTAssertEqual(try create(adminToken: "tok-123")["network_id"], 1)

        XCTAssertThrowsError(try overlay.ctl("alpha", ["network", "join", "1", "--token", "tk2"])) { error in
            XCTAssertTrue("\(error)".contains("invalid token for network 1"), "\(error)")
        }
        let joined = try overlay.ctl("alpha", ["network", "join", "1", "--token", "tk1"])
        XCTAssertEqual(joined["address"]?.stringValue, Address(network: 1, node: alpha).description, joined.encodedString())
        _ = try overlay.ctl("beta", ["network", "join", "1", "--token", "tk1"])

        let members = try overlay.ctl("alpha", ["network", "members", "1"])
        XCTAssertEqual(members["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [Int64(alpha), Int64(beta)])
        XCTAssertEqual(members["nodes"]?.arrayValue?.first?["hostname"], "alpha")
        let listed = try overlay.ctl("beta", ["network", "list"])
        let lab = listed["networks"]?.arrayValue?.first { $0["name"] == "lab" }
        XCTAssertEqual(lab?["members"], 2, listed.encodedString())
        let trust = try overlay.registryRequest(
            RegistryMessage(type: "check_trust", ["node_id": .integer(Int64(alpha)), "peer_id": .integer(Int64(beta))]))
        XCTAssertEqual(trust["trusted"], true, "co-members are trusted")
        try overlay.eventually("alpha's info to show its address in network 1") {
            try overlay.ctl("alpha", ["info"]).encodedString().contains(Address(network: 1, node: alpha).description)
        }

        let left = try overlay.ctl("beta", ["network", "leave", "1"])
        XCTAssertEqual(left["network_id"], 1, left.encodedString())
        let after = try overlay.ctl("alpha", ["network", "members", "1"])
        XCTAssertEqual(after["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [Int64(alpha)])
        for name in ["alpha", "beta"] {
            XCTAssertFalse(overlay.log(of: name).contains("network policy load failed"), overlay.log(of: name))
        }
    }

    /// Ping and a text message each way, with the message checked in the receiver's inbox.
    private func assertTalk(_ overlay: OverlayHarness, _ a: String, _ b: String, tag: String) throws {
        for (from, to) in [(a, b), (b, a)] {
            let ping = try overlay.ctl(from, ["ping", to, "--count", "2"])
            XCTAssertFalse(ping.encodedString().isEmpty)
            let text = "\(tag): \(from) to \(to) \(UUID().uuidString.prefix(8))"
            let sent = try overlay.ctl(from, ["send-message", to, "--data", text])
            XCTAssertEqual(sent["ack"]?.stringValue, "ACK TEXT \(text.utf8.count) bytes", "\(tag) \(from)→\(to)")
            try overlay.eventually("\(to)'s inbox to hold \(text)", timeout: 10) {
                try overlay.ctl(to, ["inbox"]).encodedString().contains(text)
            }
        }
    }
}

/// Malformed and hostile traffic on background threads until stopped: garbage and oversized
/// frames, bad JSON, unknown types, forged signatures, half frames, and UDP junk and relay spam.
final class HostileTraffic: @unchecked Sendable {
    // @unchecked: counters and the flag are guarded by `lock`.
    private let registry: LoopbackEndpoint
    private let beacon: LoopbackEndpoint
    private let victims: [UInt32]
    private let lock = NSLock()
    private var running = false
    private var count = 0
    private var threads: [Thread] = []

    init(registry: LoopbackEndpoint, beacon: LoopbackEndpoint, victims: [UInt32]) {
        self.registry = registry
        self.beacon = beacon
        self.victims = victims
    }

    var sent: Int { lock.withLock { count } }
    private var isRunning: Bool { lock.withLock { running } }
    private func add(_ n: Int) { lock.withLock { count += n } }

    func start() {
        lock.withLock { running = true }
        let tcp = Thread { [self] in
            var round = 0
            let deadline = Date().addingTimeInterval(120)
            while isRunning, Date() < deadline {
                round += 1
                guard let connection = try? LoopbackSocket.connect(to: registry) else { continue }
                let victim = victims[round % victims.count]
                let frames: [[UInt8]] = [
                    frame(#"{"type":"heartbeat","node_id":\#(victim),"signature":"AAAA"}"#),
                    frame(#"{"type":"set_hostname","node_id":\#(victim),"hostname":"evil","signature":"\#(String(repeating: "A", count: 88))"}"#),
                    frame(#"{"type":"deregister","node_id":\#(victim)}"#),
                    frame(#"{"type":"no_such_type"}"#),
                    frame("{not json"),
                    frame(#"{"type":7}"#),
                    frame(#"{"type":"register","public_key":"short"}"#),
                    frame(#"{"type":"resolve","node_id":\#(victim),"requester_id":999999,"signature":"AAAA"}"#),
                ]
                for bytes in frames { try? connection.write(bytes) }
                // Read what comes back so the server is not blocked on us, then misbehave.
                _ = try? connection.read(exactly: 4, timeout: 0.2)
                switch round % 3 {
                case 0: try? connection.write([0x7F, 0xFF, 0xFF, 0xFF])  // 2 GB frame: must be refused, not buffered
                case 1: try? connection.write([0, 0, 0, 50, 0x7B])  // half a frame, then gone
                default: try? connection.write((0..<64).map { _ in UInt8.random(in: 0...255) })
                }
                add(frames.count + 1)
            }
        }
        let udp = Thread { [self] in
            guard let socket = try? LoopbackSocket.udp() else { return }
            let deadline = Date().addingTimeInterval(120)
            var round: UInt32 = 0
            while isRunning, Date() < deadline {
                round &+= 1
                let junk: [[UInt8]] = [
                    (0..<Int.random(in: 0...200)).map { _ in UInt8.random(in: 0...255) },
                    [0x05, 0, 0, 0, 9, 0x7F, 0xFF, 0xFF, 0xFF] + Array("PILS".utf8) + [UInt8](repeating: 1, count: 40),
                    [0x03, 0, 0, 0, 9],  // truncated punch request
                    [0x02, 4, 127, 0, 0, 1, 0, 80],  // a reply sent to the beacon
                    [0x07, 0, 0, 0, 1, 0xFF, 0xFF],  // sync lying about its count
                ]
                for bytes in junk { try? socket.send(bytes, to: beacon) }
                add(junk.count)
                if round % 64 == 0 { usleep(1_000) }  // deliberate: paces the flood, waits for nothing
            }
        }
        threads = [tcp, udp]
        threads.forEach { $0.start() }
    }

    func stop() {
        lock.withLock { running = false }
        let deadline = Date().addingTimeInterval(5)
        while threads.contains(where: { $0.isExecuting }), Date() < deadline { usleep(10_000) }
    }

    private func frame(_ text: String) -> [UInt8] {
        let body = Array(text.utf8)
        return [UInt8(body.count >> 24 & 0xFF), UInt8(body.count >> 16 & 0xFF), UInt8(body.count >> 8 & 0xFF), UInt8(body.count & 0xFF)] + body
    }
}

/// The overlay harness, or a skip naming why the official binaries are missing.
func makeOverlay() throws -> OverlayHarness {
    do { return try OverlayHarness() } catch let error as OfficialPilot.Unavailable {
        throw XCTSkip("official pilot-daemon unavailable: \(error)")
    }
}
