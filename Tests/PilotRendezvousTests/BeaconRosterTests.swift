import Foundation
import Logging
import NIOCore
import NIOPosix
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// Beacons that find their peers in the database they share (`BeaconRoster`), on a private
/// PostgreSQL server shared by the class, a database of its own per test (`PostgresTestCase`).
final class BeaconRosterTests: PostgresTestCase {
    private var group: MultiThreadedEventLoopGroup?

    override func setUpWithError() throws {
        try super.setUpWithError()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDownWithError() throws {
        try group?.syncShutdownGracefully()
        try super.tearDownWithError()
    }

    /// A beacon on 127.0.0.1 with no peers of its own, syncing every 0.2 s; relays and punch
    /// requests from one IP limited to `relayBurst`, hardly refilled, when given.
    private func startBeacon(relayBurst: Double? = nil) async throws -> (BeaconServer, LoopbackEndpoint) {
        var configuration = BeaconServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.syncInterval = 0.2
        if let relayBurst {
            configuration.relayBurst = relayBurst
            configuration.relaysPerSecond = 0.01
        }
        let beacon = BeaconServer(configuration: configuration, logger: Logger(label: "test"))
        let group = try XCTUnwrap(group)
        let address = try await beacon.start(on: group)
        return (beacon, LoopbackEndpoint(ip: [127, 0, 0, 1], port: UInt16(address.port ?? 0)))
    }

    /// `beacon`'s roster: refreshed every 0.2 s, a row stale after 1.5 s.
    private func roster(_ beacon: BeaconServer, at address: LoopbackEndpoint, id: UInt32? = nil) throws -> BeaconRoster {
        var configuration = BeaconRoster.Configuration(address: "\(address)", beaconID: id)
        configuration.refreshInterval = 0.2
        configuration.lifetime = 1.5
        return BeaconRoster(location: try location(), configuration: configuration, beacon: beacon, logger: Logger(label: "test"))
    }

    private func ports(of beacon: BeaconServer) -> Set<Int> { Set(beacon.peers.compactMap(\.port)) }

    /// Waits (at most `timeout` s) until `condition` holds; returns whether it did.
    private func eventually(_ timeout: Double = 5, _ condition: () -> Bool) async throws -> Bool {
        let start = Date()
        while !condition() {
            guard Date().timeIntervalSince(start) < timeout else { return false }
            try await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    /// Two beacons given only the database find each other there: a relay from a node at X
    /// reaches a node at Y (and back), and a punch request is coordinated across them. Y holds
    /// 127.0.0.1 (everyone's IP here) to two relays, but not X, its peer.
    func testBeaconsSharingADatabaseRelayAndPunchBetweenTheirNodes() async throws {
        let began = Date()
        let (x, addressX) = try await startBeacon()
        let (y, addressY) = try await startBeacon(relayBurst: 2)
        defer { Task { try? await x.shutdown(); try? await y.shutdown() } }
        let rosterX = try roster(x, at: addressX)
        let rosterY = try roster(y, at: addressY)
        defer { rosterX.shutdown(); rosterY.shutdown() }
        let idX = try rosterX.start()
        let idY = try rosterY.start()
        XCTAssertNotEqual(idX, idY)
        XCTAssertEqual(x.beaconID, idX, "the syncs carry the id the database holds")
        let peered = try await eventually { ports(of: x) == [Int(addressY.port)] && ports(of: y) == [Int(addressX.port)] }
        XCTAssertTrue(peered, "X's peers \(x.peers), Y's \(y.peers)")
        print("peered through the database after \(String(format: "%.2f", Date().timeIntervalSince(began))) s")

        // Three relays from a: more than Y lets one IP send, but they come from its peer.
        let nodes = try await PeerBeaconNodes(x: x, at: addressX, y: y, at: addressY)
        try nodes.assertRelaysAndAPunch(relaysFromA: 3)
        XCTAssertEqual(y.counters.rateLimited, 0)
        let (a, b) = (nodes.a, nodes.b)
        let frame = Array("PILP".utf8)[...]

        // Y stops cleanly: its row is deleted, X drops it, and a relay to b goes nowhere.
        rosterY.shutdown()
        XCTAssertEqual(try server.psql("SELECT COUNT(*) FROM beacon WHERE id = \(idY)", database: database).trimmingCharacters(in: .whitespacesAndNewlines), "0")
        let dropped = try await eventually { x.peers.isEmpty }
        XCTAssertTrue(dropped, "X's peers \(x.peers)")
        try a.send(BeaconMessage.relay(source: 10, destination: 20, frame: frame).encoded(), to: addressX)
        XCTAssertNil(try b.receiveDatagram(timeout: 0.5))
        XCTAssertEqual(x.counters.relaysForwarded, 3, "not sent on to a beacon that left")
        print("relay, punch and leave done after \(String(format: "%.2f", Date().timeIntervalSince(began))) s")
    }

    /// A beacon whose row is no longer refreshed (its instance died) stops being a peer once
    /// the row is older than the lifetime; while it is one, it is sent a sync at once.
    func testABeaconNoLongerRefreshedDropsOutOfThePeers() async throws {
        let began = Date()
        let (x, addressX) = try await startBeacon()
        defer { Task { try? await x.shutdown() } }
        let rosterX = try roster(x, at: addressX)
        defer { rosterX.shutdown() }
        try rosterX.start()
        // A beacon that announced itself once and then died.
        let ghost = try LoopbackSocket.udp()
        try server.psql("INSERT INTO beacon (id, address) VALUES (7, '\(ghost.localEndpoint)')", database: database)
        let found = try await eventually { ports(of: x) == [Int(ghost.localEndpoint.port)] }
        XCTAssertTrue(found, "X's peers \(x.peers)")
        let sync = try XCTUnwrap(try ghost.receiveDatagram(timeout: 2), "a peer found is sent a sync")
        guard case .sync(let beacon, _) = try BeaconMessage(decoding: sync.bytes) else { return XCTFail("not a sync: \(sync.bytes)") }
        XCTAssertEqual(beacon, x.beaconID)
        let foundAt = Date()
        let gone = try await eventually { x.peers.isEmpty }
        let after = Date().timeIntervalSince(foundAt)
        XCTAssertTrue(gone, "X's peers \(x.peers)")
        XCTAssertGreaterThan(after, 0.5, "not before its row was stale")
        // No longer a peer: its syncs are not heeded.
        try ghost.send(BeaconMessage.sync(beacon: 7, nodes: [99]).encoded(), to: addressX)
        let refused = try await eventually { x.counters.notFromPeer == 1 }
        XCTAssertTrue(refused)
        print("stale beacon dropped \(String(format: "%.2f", after)) s after it was found (\(String(format: "%.2f", Date().timeIntervalSince(began))) s in all)")
    }

    /// While the database is down the beacons keep the peers they had, past the rows'
    /// lifetime, and still relay between their nodes; once it is back they go on refreshing.
    func testPeersAreKeptWhileTheDatabaseIsDown() async throws {
        let (x, addressX) = try await startBeacon()
        let (y, addressY) = try await startBeacon()
        defer { Task { try? await x.shutdown(); try? await y.shutdown() } }
        let rosterX = try roster(x, at: addressX)
        let rosterY = try roster(y, at: addressY)
        defer { rosterX.shutdown(); rosterY.shutdown() }
        try rosterX.start()
        try rosterY.start()
        let peered = try await eventually { ports(of: x) == [Int(addressY.port)] && ports(of: y) == [Int(addressX.port)] }
        XCTAssertTrue(peered, "X's peers \(x.peers), Y's \(y.peers)")

        let stopped = Date()
        try server.stop()
        // Twice the rows' lifetime, watched throughout.
        while Date().timeIntervalSince(stopped) < 3 {
            XCTAssertEqual(ports(of: x), [Int(addressY.port)], "after \(Date().timeIntervalSince(stopped)) s without the database")
            XCTAssertEqual(ports(of: y), [Int(addressX.port)])
            try await Task.sleep(for: .milliseconds(100))
        }
        let b = try LoopbackSocket.udp()
        try b.send(BeaconMessage.discover(node: 20).encoded(), to: addressY)
        _ = try XCTUnwrap(try b.receiveDatagram(timeout: 5))
        let a = try LoopbackSocket.udp()
        try a.send(BeaconMessage.discover(node: 10).encoded(), to: addressX)
        _ = try XCTUnwrap(try a.receiveDatagram(timeout: 5))
        let syncs = x.counters.syncsReceived
        let synced = try await eventually { x.counters.syncsReceived > syncs + 1 }
        XCTAssertTrue(synced, "X heeds Y's syncs without the database")
        let frame = Array("PILP".utf8)[...]
        try a.send(BeaconMessage.relay(source: 10, destination: 20, frame: frame).encoded(), to: addressX)
        let atB = try XCTUnwrap(try b.receiveDatagram(timeout: 5), "a relay from X's node reaches Y's without the database")
        XCTAssertEqual(try BeaconMessage(decoding: atB.bytes), .relayDeliver(source: 10, frame: frame))

        let restarted = Date()
        // Started from the main thread: the server dies with the thread that started it
        // (setpriv --pdeathsig), and a task's thread may end once idle.
        let postgres = try server
        try await MainActor.run { try postgres.start() }
        // Back: both rows refreshed again, and neither dropped the other meanwhile.
        while Date().timeIntervalSince(restarted) < 1.5 {
            XCTAssertEqual(ports(of: x), [Int(addressY.port)], "\(Date().timeIntervalSince(restarted)) s after the database returned")
            XCTAssertEqual(ports(of: y), [Int(addressX.port)])
            try await Task.sleep(for: .milliseconds(100))
        }
        let fresh = try server.psql(
            "SELECT COUNT(*) FROM beacon WHERE last_seen > now() - interval '1 second'", database: database)
        XCTAssertEqual(fresh.trimmingCharacters(in: .whitespacesAndNewlines), "2")
        print("outage of \(String(format: "%.2f", restarted.timeIntervalSince(stopped))) s kept the peers; refreshed again within 1.5 s")
    }

    /// An id a live beacon at another address holds is refused at start, naming that beacon;
    /// the same address may take its own id again (a restart).
    func testAnIdHeldByALiveBeaconIsRefused() async throws {
        let (x, addressX) = try await startBeacon()
        let (y, addressY) = try await startBeacon()
        defer { Task { try? await x.shutdown(); try? await y.shutdown() } }
        let rosterX = try roster(x, at: addressX, id: 42)
        defer { rosterX.shutdown() }
        XCTAssertEqual(try rosterX.start(), 42)
        let rosterY = try roster(y, at: addressY, id: 42)
        XCTAssertThrowsError(try rosterY.start()) { error in
            XCTAssertTrue("\(error)".contains("beacon id 42 is held by a live beacon at \(addressX)"), "\(error)")
        }
        XCTAssertTrue(y.peers.isEmpty)
        let again = try roster(x, at: addressX, id: 42)
        XCTAssertEqual(try again.start(), 42, "its own address takes it again")
        again.shutdown()
    }

    /// The executable: two pilot-rendezvous on one database announce their beacons (each row
    /// under the address it printed) and take each other as peers, one stopped with SIGTERM
    /// deletes its row; a wildcard
    /// --beacon-addr without --advertise-beacon is refused at start with --database (64).
    func testPilotRendezvousInstancesAnnounceTheirBeaconsInTheDatabase() throws {
        let state = try TemporaryDirectory(prefix: "pilot-rdv-bc")
        defer { state.remove() }
        let common = ["--registry-addr", "127.0.0.1:0", "--state-dir", state.path("state"), "--database", try server.url(database: database)]
        let wildcard = ChildProcess.run(OverlayHarness.rendezvousBinary.path, common + ["--beacon-addr", "0.0.0.0:0"], timeout: 30)
        XCTAssertEqual(wildcard.status, 64, wildcard.output)
        XCTAssertTrue(wildcard.output.contains("needs --advertise-beacon"), wildcard.output)

        var instances: [(ChildProcess, String)] = []
        defer { for (process, _) in instances { process.stop() } }
        for index in 1...2 {
            let process = try ChildProcess(
                name: "rendezvous-\(index)", executable: OverlayHarness.rendezvousBinary,
                arguments: common + ["--beacon-addr", "127.0.0.1:0"], logDirectory: state.url)
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { process.output.contains("beacon 127.0.0.1:") }, process.output)
            let line = process.output.split(separator: "\n").first { $0.hasPrefix("beacon 127.0.0.1:") } ?? ""
            instances.append((process, String(line.dropFirst("beacon ".count))))
        }
        let rows = { try self.server.psql("SELECT address FROM beacon ORDER BY address", database: self.database) }
        let both = instances.map(\.1).sorted()
        XCTAssertEqual(try rows().split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }, both)
        // Each took the other as its peer (it refreshes every 5 s; the second found the first at start).
        for ((process, _), (_, other)) in zip(instances, instances.reversed()) {
            XCTAssertTrue(
                ChildProcess.waitUntil(timeout: 8) { process.output.contains("peer beacons found") && process.output.contains(other) },
                process.output)
        }
        instances[0].0.stop()
        XCTAssertEqual(try rows().split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }, [instances[1].1])
    }
}
