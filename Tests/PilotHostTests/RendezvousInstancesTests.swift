import Foundation
import NIOConcurrencyHelpers
import PilotCrypto
import PilotTestSupport
import PilotWire
import XCTest

/// Two `pilot-rendezvous` processes on one PostgreSQL database, as the README's second
/// deployment runs them: instance A and instance B, each with its registry and its beacon, the
/// beacons peers of each other because they found each other in the database. Nodes registered at different instances find, trust and reach
/// each other; a host moves from a killed instance to the other with the same addresses; a
/// database outage is answered with clear errors and loses nothing that was acknowledged.
final class RendezvousInstancesTests: OfficialOverlayTestCase {
    /// A database of its own on a private PostgreSQL server, or a skip where none can run.
    private func database(_ name: String) throws -> (PostgresServer, String) {
        if let reason = PostgresServer.unavailableReason { throw XCTSkip(reason) }
        let server = try PostgresServer()
        _ = try server.psql("CREATE DATABASE \(name)")
        return (server, server.url(database: name))
    }

    /// Instance B beside the overlay's rendezvous (A): its own registry, beacon and state
    /// directory, the same database. Returns the process and its registry and beacon ports.
    private func startInstanceB(
        _ overlay: OverlayHarness, database: String, beaconB: UInt16, metrics: UInt16, extra: [String] = []
    ) throws -> (ChildProcess, UInt16) {
        let registryB = try LoopbackSocket.freePort()
        let process = try ChildProcess(
            name: "rendezvous-b", executable: OverlayHarness.rendezvousBinary,
            arguments: [
                "--registry-addr", "127.0.0.1:\(registryB)", "--beacon-addr", "127.0.0.1:\(beaconB)", "--state-dir",
                overlay.directory.path("rendezvous-b"), "--log-level", "info", "--database", database,
                "--metrics-listen", "127.0.0.1:\(metrics)",
            ] + extra,
            logDirectory: overlay.directory.url)
        processes.append(process)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { process.output.contains("registry 127.0.0.1:\(registryB)") }, process.output)
        return (process, registryB)
    }

    /// An official daemon (alpha) at A and one (bravo) at B, both relay-only, and pilot-host's
    /// alice at B: they find each other by hostname across the instances, handshake through
    /// them (a request stored by one is polled at the other), and exchange messages relayed
    /// through both beacons; the directory beside A finds what alice published through B. Then
    /// B is killed mid-traffic: alice moves to A with the same
    /// address, and messages between her and alpha go on with the trust they had.
    func testNodesAtTwoInstancesFindTrustAndReachEachOtherAndSurviveAKilledInstance() throws {
        let (postgres, url) = try database("instances")
        defer { postgres.remove() }
        let overlay: OverlayHarness
        do { overlay = try OverlayHarness() } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }
        let beaconB = try LoopbackSocket.freePort()
        let metricsA = try LoopbackSocket.freePort(), metricsB = try LoopbackSocket.freePort()
        try overlay.startRendezvous(extra: [
            "--database", url, "--metrics-listen", "127.0.0.1:\(metricsA)",
            "--directory-addr", "127.0.0.1:0",
        ])
        let (instanceB, registryB) = try startInstanceB(overlay, database: url, beaconB: beaconB, metrics: metricsB)
        let registryA = overlay.registryPort

        let alpha = try overlay.startDaemon("alpha", extra: ["-relay-only"])
        let bravo = try overlay.startDaemon("bravo", extra: ["-relay-only"], registry: registryB, beacon: beaconB)
        let host = try startHost(
            overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())",
            registry: "127.0.0.1:\(registryB), 127.0.0.1:\(registryA)", beacon: "127.0.0.1:\(beaconB), 127.0.0.1:\(overlay.beaconPort)",
            extra: ["--handshake-poll", "1", "--log-level", "info"])
        processes.append(host)
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        let alice = try XCTUnwrap(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["data"]?["node_id"]?.integerValue)
        XCTAssertEqual(pilotctl(["--identity", "alice", "info"])?["data"]?["registry"], .string("127.0.0.1:\(registryB)"))

        // Hostnames registered at one instance resolve at the other, at once.
        XCTAssertEqual(try overlay.ctl("alpha", ["find", "bravo"])["node_id"]?.integerValue, Int64(bravo))
        XCTAssertEqual(try overlay.ctl("bravo", ["find", "alpha"])["node_id"]?.integerValue, Int64(alpha))
        XCTAssertEqual(try overlay.ctl("alpha", ["find", "alice"])["node_id"]?.integerValue, alice)
        XCTAssertEqual(pilotctl(["find", "alpha", "--identity", "alice"])?["data"]?["node_id"]?.integerValue, Int64(alpha))

        // Official to official: alpha's request, stored through A, is polled by bravo at B.
        let asked = Date()
        _ = try overlay.ctl("alpha", ["handshake", "bravo", "from A"])
        func pending(_ name: String) throws -> [Int64] {
            try overlay.ctl(name, ["pending"])["pending"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue } ?? []
        }
        try overlay.eventually("alpha's request at bravo", timeout: 20) { try pending("bravo").contains(Int64(alpha)) }
        print("alpha's handshake request reached bravo, at the other instance, in \(String(format: "%.2f", Date().timeIntervalSince(asked))) s")
        _ = try overlay.ctl("bravo", ["approve", "\(alpha)"])
        // pilot-host to official: alice (at B) asks alpha (at A).
        XCTAssertEqual(pilotctl(["handshake", "\(alpha)", "from B", "--identity", "alice"])?["data"]?["status"], "sent")
        try overlay.eventually("alice's request at alpha", timeout: 20) { try pending("alpha").contains(alice) }
        _ = try overlay.ctl("alpha", ["approve", "\(alice)"])
        try overlay.eventually("alice and alpha trust each other", timeout: 30) {
            pilotctl(["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.contains {
                $0["node_id"]?.integerValue == Int64(alpha) && $0["mutual"] == true
            } == true
        }

        // Both daemons are relay-only: every message goes beacon to beacon. The beacons found
        // each other in the database; A learns of bravo and alice from B's sync (every 10 s),
        // so the first message may need a retry.
        for port in [metricsA, metricsB] {
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 15, every: 0.2) {
                (try? MetricsScrape.get(port: port).exposition.value("pilot_rendezvous_beacon_peers")) == 1
            }, "each beacon has the other as its peer")
        }
        try overlay.eventually("alpha's message at bravo", timeout: 30) {
            _ = try overlay.ctl("alpha", ["send-message", "bravo", "--data", "A to B"], timeout: 15)
            return try overlay.ctl("bravo", ["inbox"])["messages"]?.arrayValue?.contains { $0["preview"] == "A to B" } == true
        }
        let sent = pilotctl(["send-message", "\(alpha)", "--data", "alice to alpha", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK TEXT 14 bytes", "\(String(describing: sent))\n\(host.output.suffix(3000))")
        XCTAssertEqual(try overlay.ctl("alpha", ["send-message", "alice", "--data", "alpha to alice"])["ack"], "ACK TEXT 14 bytes")
        XCTAssertEqual(pilotctl(["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue?.map { $0["data"]?.stringValue }, ["alpha to alice"])
        // Each beacon forwarded to the other: what was relayed crossed both.
        for (name, port) in [("A", metricsA), ("B", metricsB)] {
            let forwarded = try MetricsScrape.get(port: port).exposition.value("pilot_rendezvous_beacon_peer_relays_forwarded_total") ?? 0
            XCTAssertGreaterThan(forwarded, 0, "beacon \(name) forwarded relays to its peer")
        }

        // The directory runs beside A and searches its copy of the listings: alice publishes
        // through B, and A's copy has her within a second or so.
        XCTAssertEqual(
            pilotctl(["--identity", "alice", "directory", "publish", "--description", "Tide tables by port", "--category", "data"])?["data"]?["listed"], true)
        let published = Date()
        var searched: JSON?
        let found = ChildProcess.waitUntil(timeout: 20, every: 0.3) {
            searched = pilotctl(["--identity", "alice", "directory", "search", "tide"])
            return searched?["data"]?["items"]?.arrayValue?.first?["hostname"] == "alice"
        }
        XCTAssertTrue(found, "alice in the directory at A: \(String(describing: searched))\n\(overlay.rendezvous?.output.suffix(3000) ?? "")")
        XCTAssertEqual(searched?["data"]?["items"]?.arrayValue?.count, 1, "\(String(describing: searched))")
        print("alice's listing, made through B, found by A's directory in \(String(format: "%.2f", Date().timeIntervalSince(published))) s")

        // B dies mid-traffic: alice moves to A with the same node, and her trust is there.
        let traffic = try overlay.startCtl("alpha", ["send-message", "alice", "--data", "during", "--count", "40"], label: "traffic")
        defer { traffic.stop() }
        instanceB.kill9()
        let killed = Date()
        _ = pilotctl(["find", "alpha", "--identity", "alice"])
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 15) { pilotctl(["--identity", "alice", "info"])?["data"]?["registry"] == .string("127.0.0.1:\(registryA)") },
            host.output.suffix(3000).description)
        let info = pilotctl(["--identity", "alice", "info"])?["data"]
        XCTAssertEqual(info?["node_id"]?.integerValue, alice, "the same node at A")
        print("alice registered at A \(String(format: "%.2f", Date().timeIntervalSince(killed))) s after B was killed")
        XCTAssertEqual(try overlay.ctl("alpha", ["find", "alice"])["node_id"]?.integerValue, alice)
        let lookup = try overlay.ctl("alpha", ["lookup", "\(alice)"])
        XCTAssertEqual(lookup["node_id"]?.integerValue, alice, "\(lookup)")
        try overlay.eventually("a message from alpha after the move", timeout: 30) {
            _ = try? overlay.ctl("alpha", ["send-message", "alice", "--data", "after the move"], timeout: 15)
            return pilotctl(["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue?.contains { $0["data"] == "after the move" } == true
        }
        let back = pilotctl(["send-message", "\(alpha)", "--data", "still trusted", "--identity", "alice"])
        XCTAssertEqual(back?["data"]?["ack"], "ACK TEXT 13 bytes", "\(String(describing: back))")
        XCTAssertEqual(
            try postgres.psql("SELECT count(*) FROM trust WHERE (a, b) IN ((\(min(alice, Int64(alpha))), \(max(alice, Int64(alpha)))))", database: "instances")
                .trimmingCharacters(in: .whitespacesAndNewlines), "1", "the trust pair committed through B is in the database")
    }

    /// 1,000 registrations at once, spread over both instances, get 1,000 distinct addresses,
    /// each resolved at the instance it did not register at. Then PostgreSQL stops for 10 s:
    /// writes are refused with an error that says why within 2 s, lookups are answered from
    /// memory, and when it returns both instances take writes again by themselves (and see
    /// each other's again); nothing acknowledged before is lost.
    func testConcurrentRegistrationsAtTwoInstancesAndADatabaseOutage() throws {
        let (postgres, url) = try database("outage")
        defer { postgres.remove() }
        let directory = try TemporaryDirectory(prefix: "pilot-instances")
        let limits = ["--new-keys-per-second", "1000000", "--all-new-keys-per-second", "1000000", "--connection-requests-per-second", "1000000"]
        let ports = try (0..<2).map { index in
            let port = try LoopbackSocket.freePort()
            let process = try ChildProcess(
                name: "rendezvous-\(index)", executable: OverlayHarness.rendezvousBinary,
                arguments: [
                    "--registry-addr", "127.0.0.1:\(port)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("r\(index)"),
                    "--log-level", "info", "--database", url,
                ] + limits,
                logDirectory: directory.url)
            processes.append(process)
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { process.output.contains("registry 127.0.0.1:\(port)") }, process.output)
            return port
        }

        let count = 1_000, workers = 20
        let keys = try (0..<count).map { _ in try Ed25519PrivateKey() }
        let registers = keys.enumerated().map { index, secret in
            let listen = "127.0.0.1:\(20_000 + index)"
            let key = secret.publicKey.base64
            return RegistryMessage(
                type: "register",
                ["listen_addr": .string(listen), "public_key": .string(key), "signature": .string(Base64.encode(secret.sign("register:\(listen):\(key)")))])
        }
        let ids = NIOLockedValueBox([Int: Int64]())
        let failures = NIOLockedValueBox([String]())
        let started = Date()
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            do {
                let client = try RegistryConnection(port: ports[worker % 2])
                for index in stride(from: worker, to: count, by: workers) {
                    let reply = try client.request(registers[index])
                    guard reply.type == "register_ok", let id = reply["node_id"]?.integerValue else {
                        failures.withLockedValue { $0.append("\(reply.type) \(reply["error"]?.stringValue ?? "")") }
                        continue
                    }
                    ids.withLockedValue { $0[index] = id }
                }
            } catch { failures.withLockedValue { $0.append("\(error)") } }
        }
        print("1,000 registrations over two instances in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        XCTAssertEqual(failures.withLockedValue { $0 }, [])
        let assigned = ids.withLockedValue { $0 }
        XCTAssertEqual(assigned.count, count)
        XCTAssertEqual(Set(assigned.values).count, count, "1,000 distinct addresses")
        // Each node resolves at the instance it did not register at.
        let clients = try ports.map { try RegistryConnection(port: $0) }
        for (index, id) in assigned.sorted(by: { $0.key < $1.key }) {
            let other = clients[1 - (index % workers) % 2]
            let reply = try other.request(RegistryMessage(type: "lookup", ["node_id": .integer(id)]))
            XCTAssertEqual(reply.type, "lookup_ok", "node \(id) at the other instance: \(reply["error"]?.stringValue ?? "")")
            if reply.type != "lookup_ok" { break }
        }

        // The database goes away for 10 s.
        try postgres.stop()
        let stopped = Date()
        let extra = try Ed25519PrivateKey()
        func registerExtra(_ listen: String) -> RegistryMessage {
            let key = extra.publicKey.base64
            return RegistryMessage(
                type: "register",
                ["listen_addr": .string(listen), "public_key": .string(key), "signature": .string(Base64.encode(extra.sign("register:\(listen):\(key)")))])
        }
        for (index, client) in clients.enumerated() {
            let asked = Date()
            let refused = try client.request(registerExtra("127.0.0.1:9"))
            let took = Date().timeIntervalSince(asked)
            XCTAssertEqual(refused.type, "error", "instance \(index)")
            XCTAssertTrue(refused["error"]?.stringValue?.contains("unavailable") == true, "\(refused.json.encodedString())")
            XCTAssertLessThan(took, 2.5, "refused within 2 s (and the test's slack)")
            print("instance \(index): a write during the outage refused in \(String(format: "%.2f", took)) s: \(refused["error"]?.stringValue ?? "")")
            let read = try client.request(RegistryMessage(type: "lookup", ["node_id": .integer(assigned[index] ?? 0)]))
            XCTAssertEqual(read.type, "lookup_ok", "a lookup during the outage, from memory")
        }
        Thread.sleep(forTimeInterval: max(0, 10 - Date().timeIntervalSince(stopped)))
        try postgres.start()

        // Both take writes again by themselves; the extra node registered at 0 is seen at 1.
        var extraID: Int64?
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 15, every: 0.5) {
            guard let reply = try? clients[0].request(registerExtra("127.0.0.1:9")), reply.type == "register_ok" else { return false }
            extraID = reply["node_id"]?.integerValue
            return true
        })
        let seen = ChildProcess.waitUntil(timeout: 10, every: 0.2) {
            (try? clients[1].request(RegistryMessage(type: "lookup", ["node_id": .integer(extraID ?? 0)])))?.type == "lookup_ok"
        }
        XCTAssertTrue(seen, "instance 1 sees instance 0's registration after the outage")
        let rows = try postgres.psql("SELECT count(*) FROM node", database: "outage").trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(rows, "\(count + 1)", "every acknowledged registration, and the one after the outage")
    }
}

/// One registry connection, one request at a time.
private final class RegistryConnection: @unchecked Sendable {
    // @unchecked: each is used by one thread at a time.
    private let socket: LoopbackSocket

    init(port: UInt16) throws { socket = try LoopbackSocket.connect(to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: port)) }

    func request(_ message: RegistryMessage) throws -> RegistryMessage {
        try socket.write(RegistryFrame.encode(message))
        var decoder = RegistryFrameDecoder()
        while let frame = try socket.readFrame(timeout: 10) {
            decoder.append(frame)
            if case .message(let reply)? = try decoder.next() { return reply }
        }
        throw SocketError(description: "no registry reply to \(message.type)")
    }
}
