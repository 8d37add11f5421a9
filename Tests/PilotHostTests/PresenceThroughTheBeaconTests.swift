import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Hosts that cannot reach each other, only the rendezvous: each in a network namespace of its
/// own with a route to the rendezvous and none to the other (as behind two firewalls). What they
/// say to each other goes through the beacon. Needs root; skipped with the reason otherwise.
final class PresenceThroughTheBeaconTests: HostProcessTestCase {
    private var namespaces: IsolatedNamespaces?

    override func tearDown() {
        super.tearDown()  // the processes first: they live in the namespaces
        namespaces?.remove()
    }

    /// The second beacon's port, with `isolatedOverlay(peerBeacon: true)`.
    private var secondBeacon: UInt16?

    /// The namespaces and pilot-rendezvous on every address of this one (or a skip); with
    /// `peerBeacon`, a second pilot-rendezvous whose beacon is the first's peer (its registry
    /// unused), its port in `secondBeacon`.
    private func isolatedOverlay(peerBeacon: Bool = false) throws -> (IsolatedNamespaces, registry: UInt16, beacon: UInt16) {
        let namespaces: IsolatedNamespaces
        do { namespaces = try IsolatedNamespaces(count: 2) } catch let error as IsolatedNamespaces.Unavailable {
            throw XCTSkip("cannot isolate hosts: \(error)")
        }
        self.namespaces = namespaces
        let registry = try LoopbackSocket.freePort(), beacon = try LoopbackSocket.freePort()
        let second = try LoopbackSocket.freePort()
        // The official daemon asks beacon_list for its beacon: the address its side reaches.
        _ = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "0.0.0.0:\(registry)", "--beacon-addr", "0.0.0.0:\(beacon)",
             "--advertise-beacon", "\(namespaces.sides[1].gateway):\(beacon)", "--state-dir", directory.path("rendezvous")]
                + (peerBeacon ? ["--beacon-peers", "127.0.0.1:\(second)"] : []),
            ready: "beacon 0.0.0.0:")
        if peerBeacon {
            _ = try start(
                "rendezvous-2", "pilot-rendezvous",
                ["--registry-addr", "127.0.0.1:\(try LoopbackSocket.freePort())", "--beacon-addr", "0.0.0.0:\(second)",
                 "--beacon-peers", "127.0.0.1:\(beacon)", "--state-dir", directory.path("rendezvous-2")],
                ready: "beacon 0.0.0.0:")
            secondBeacon = second
        }
        return (namespaces, registry, beacon)
    }

    /// pilot-host inside `side`, with the rendezvous at that side's gateway.
    private func startHost(_ name: String, in side: IsolatedNamespaces.Side, registry: UInt16, beacon: UInt16) throws -> String {
        let runtime = directory.path("run-\(name)")
        let (executable, arguments) = namespaces!.command(
            in: side, bin.appendingPathComponent("pilot-host").path,
            ["--state-dir", directory.path("state-\(name)"), "--runtime-dir", runtime, "--registry", "\(side.gateway):\(registry)",
             "--beacon", "\(side.gateway):\(beacon)", "--listen", "\(side.address):\(try LoopbackSocket.freePort())",
             "--handshake-poll", "1", "--log-level", "info"])
        let process = try ChildProcess(name: name, executable: executable, arguments: arguments, logDirectory: directory.url)
        processes.append(process)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains("pilot-host serving") }) else {
            throw HostTestError("\(name) did not start: \(process.output)")
        }
        return runtime
    }

    /// Whether `identity` (of the host at `runtime`) comes to trust `peer` mutually in time.
    private func trustsMutually(_ runtime: String, _ identity: String, _ peer: Int64, within seconds: TimeInterval) -> Bool {
        ChildProcess.waitUntil(timeout: seconds, every: 0.2) {
            self.ctl(runtime, ["trust", "--identity", identity])?["data"]?["trusted"]?.arrayValue?.contains {
                $0["node_id"]?.integerValue == peer && $0["mutual"] == true
            } == true
        }
    }

    /// An identity on each of two pilot-hosts that cannot reach each other: the handshake goes
    /// through the registry (with the beacon's poke), the key exchange through the beacon, then
    /// messages and 3 MB both ways.
    func testIdentitiesOnHostsThatCannotReachEachOtherTalkThroughTheBeacon() throws {
        let (namespaces, registry, beacon) = try isolatedOverlay()
        let east = try startHost("east", in: namespaces.sides[0], registry: registry, beacon: beacon)
        let west = try startHost("west", in: namespaces.sides[1], registry: registry, beacon: beacon)
        let alice = try XCTUnwrap(ctl(east, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(west, ["identity", "create", "bob", "--auto-approve"])?["data"]?["node_id"]?.integerValue)

        XCTAssertNotNil(ctl(east, ["handshake", "\(bob)", "across", "--identity", "alice"])?["data"])
        XCTAssertTrue(trustsMutually(east, "alice", bob, within: 30), "alice never came to trust bob")
        let sent = ctl(east, ["send-message", "\(bob)", "--data", "over the wall", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK TEXT 13 bytes", "\(String(describing: sent))")
        XCTAssertEqual(ctl(west, ["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue?.first?["data"], "over the wall")
        let back = ctl(west, ["send-message", "\(alice)", "--data", "and back", "--identity", "bob"])
        XCTAssertEqual(back?["data"]?["ack"], "ACK TEXT 8 bytes", "\(String(describing: back))")
        for (runtime, identity, peer) in [(east, "alice", bob), (west, "bob", alice)] {
            let entry = ctl(runtime, ["peers", "--identity", identity])?["data"]?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == peer }
            XCTAssertEqual(entry?["relay"], true, "\(identity): \(String(describing: entry))")
            XCTAssertEqual(entry?["path"], "relay", "\(identity): \(String(describing: entry))")
            XCTAssertNotNil(entry?["path_seconds"]?.doubleValue, "\(identity): \(String(describing: entry))")
        }

        // 3 MB from alice to bob's port 1001, byte for byte.
        var random = SplitMix64(seed: 303)
        let file = (0..<3_000_000).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let path = directory.path("wall.bin")
        try Data(file).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o644)
        let sentFile = ctl(east, ["send-file", "\(bob)", path, "--identity", "alice"])
        XCTAssertEqual(sentFile?["data"]?["ack"], "ACK FILE 3000000 bytes", "\(String(describing: sentFile))")
        let saved = directory.path("saved")
        try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: true)
        _ = ctl(west, ["received", "--identity", "bob", "--save", saved])
        XCTAssertEqual(try? Data(contentsOf: URL(fileURLWithPath: saved + "/wall.bin")), Data(file))
    }

    /// As above, but each host uses a beacon of its own (two pilot-rendezvous beacons that are
    /// each other's peers, one registry): the key exchange and the messages cross both beacons.
    func testIdentitiesBehindDifferentPeerBeaconsTalkThroughBoth() throws {
        let (namespaces, registry, beacon) = try isolatedOverlay(peerBeacon: true)
        let second = try XCTUnwrap(secondBeacon)
        let east = try startHost("east", in: namespaces.sides[0], registry: registry, beacon: beacon)
        let west = try startHost("west", in: namespaces.sides[1], registry: registry, beacon: second)
        let alice = try XCTUnwrap(ctl(east, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(west, ["identity", "create", "bob", "--auto-approve"])?["data"]?["node_id"]?.integerValue)
        // Each beacon hears of the other's nodes at its next sync (every 10 s).
        Thread.sleep(forTimeInterval: 11)

        XCTAssertNotNil(ctl(east, ["handshake", "\(bob)", "across", "--identity", "alice"])?["data"])
        XCTAssertTrue(trustsMutually(east, "alice", bob, within: 30), "alice never came to trust bob")
        let sent = ctl(east, ["send-message", "\(bob)", "--data", "two beacons", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK TEXT 11 bytes", "\(String(describing: sent))")
        let back = ctl(west, ["send-message", "\(alice)", "--data", "and back", "--identity", "bob"])
        XCTAssertEqual(back?["data"]?["ack"], "ACK TEXT 8 bytes", "\(String(describing: back))")
        for (runtime, identity, peer) in [(east, "alice", bob), (west, "bob", alice)] {
            let entry = ctl(runtime, ["peers", "--identity", identity])?["data"]?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == peer }
            XCTAssertEqual(entry?["path"], "relay", "\(identity): \(String(describing: entry))")
        }
    }

    /// Two hosts that reach each other directly until the path between them goes silent mid-
    /// session (a NAT that forgot its mapping): 1.18's blackhole rule moves the tunnel to the
    /// beacon and messages keep arriving; when the path heals, the direct probe brings it back.
    func testADirectPathThatDiesMidSessionMovesToTheBeaconAndBack() throws {
        let (namespaces, registry, beacon) = try isolatedOverlay()
        try namespaces.connect()
        let east = try startHost("east", in: namespaces.sides[0], registry: registry, beacon: beacon)
        let west = try startHost("west", in: namespaces.sides[1], registry: registry, beacon: beacon)
        _ = try XCTUnwrap(ctl(east, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(west, ["identity", "create", "bob", "--auto-approve", "--public"])?["data"]?["node_id"]?.integerValue)
        XCTAssertNotNil(ctl(east, ["handshake", "\(bob)", "direct", "--identity", "alice"])?["data"])
        XCTAssertTrue(trustsMutually(east, "alice", bob, within: 30), "alice never came to trust bob")
        func relayed() -> Bool? {
            ctl(east, ["peers", "--identity", "alice"])?["data"]?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == bob }?["relay"]?.boolValue
        }
        func send(_ text: String) -> Bool {
            ctl(east, ["send-message", "\(bob)", "--data", text, "--identity", "alice"])?["data"]?["ack"]?.stringValue == "ACK TEXT \(text.utf8.count) bytes"
        }
        XCTAssertTrue(send("direct"))
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20, every: 0.5) { relayed() == false }, "the path never became direct")

        // The path dies, silently. Messages keep going; within the blackhole rule's 8 s and a
        // stream's retransmissions they arrive through the beacon.
        try namespaces.blackhole(true)
        let started = Date()
        var delivered = 0
        for n in 0..<3 where ChildProcess.waitUntil(timeout: 60, every: 0.5, { send("through the wall \(n)") }) { delivered += 1 }
        XCTAssertEqual(delivered, 3, "messages stopped when the direct path died")
        XCTAssertEqual(relayed(), true, "the tunnel did not move to the beacon")
        print("blackhole: three messages through the beacon within \(Int(Date().timeIntervalSince(started))) s")
        let inbox = ctl(west, ["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue?.compactMap { $0["data"]?.stringValue } ?? []
        XCTAssertTrue(Set(inbox).isSuperset(of: ["direct", "through the wall 0", "through the wall 1", "through the wall 2"]), "\(inbox)")

        // The path heals: within the 15 s direct probe (and a keepalive), direct again.
        try namespaces.blackhole(false)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 60, every: 1) { _ = send("probe"); return relayed() == false }, "the path never came back to direct")
    }

    /// A pilot-host identity and an official 1.18 daemon that cannot reach each other: 1.18's
    /// relay copies and fallbacks meet ours, both ways.
    func testAnIdentityAndAnOfficialDaemonThatCannotReachEachOtherTalkThroughTheBeacon() throws {
        let official: OfficialPilot
        do { official = try OfficialPilot.binaries() } catch { throw XCTSkip("official pilot-daemon unavailable: \(error)") }
        let (namespaces, registry, beacon) = try isolatedOverlay()
        let east = try startHost("east", in: namespaces.sides[0], registry: registry, beacon: beacon)
        let side = namespaces.sides[1]
        let home = directory.url.appendingPathComponent("alpha")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let socket = directory.path("alpha.sock")
        let (executable, arguments) = namespaces.command(
            in: side, official.daemon.path,
            ["-registry", "\(side.gateway):\(registry)", "-beacon", "\(side.gateway):\(beacon)", "-listen", "\(side.address):0",
             "-socket", socket, "-identity", home.appendingPathComponent("identity.json").path, "-hostname", "alpha",
             "-telemetry-url", "", "-motd-feed-url", "", "-trust-auto-approve"])
        processes.append(try ChildProcess(name: "alpha", executable: executable, arguments: arguments, environment: ["HOME": home.path], logDirectory: directory.url))
        func daemonCtl(_ arguments: [String]) -> JSON? {
            let result = ChildProcess.run(
                official.pilotctl.path, ["--json"] + arguments,
                environment: ["HOME": home.path, "PILOT_SOCKET": socket, "PILOT_REGISTRY": "127.0.0.1:\(registry)"], timeout: 30)
            return (try? JSON(parsing: Array(result.output.utf8)))?["data"]
        }
        var daemonNode: Int64?
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 30, every: 0.2) {
            daemonNode = daemonCtl(["info"])?["node_id"]?.integerValue
            return daemonNode != nil
        })
        let daemon = try XCTUnwrap(daemonNode)
        let alice = try XCTUnwrap(ctl(east, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)

        XCTAssertNotNil(ctl(east, ["handshake", "\(daemon)", "across", "--identity", "alice"])?["data"])
        XCTAssertTrue(trustsMutually(east, "alice", daemon, within: 45), "alice never came to trust the daemon")
        let pinged = ctl(east, ["ping", "\(daemon)", "--identity", "alice", "--count", "2"])?["data"]?["results"]?.arrayValue ?? []
        XCTAssertEqual(pinged.count, 2)
        XCTAssertTrue(pinged.allSatisfy { $0["error"] == nil }, "\(pinged)")
        let sent = ctl(east, ["send-message", "\(daemon)", "--data", "over the wall", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK TEXT 13 bytes", "\(String(describing: sent))")
        XCTAssertEqual(daemonCtl(["inbox"])?["messages"]?.arrayValue?.first?["preview"], "over the wall")
        let back = daemonCtl(["send-message", "\(alice)", "--data", "and back"])
        XCTAssertEqual(back?["ack"], "ACK TEXT 8 bytes", "\(String(describing: back))")
        XCTAssertEqual(ctl(east, ["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue?.first?["data"], "and back")
        let entry = ctl(east, ["peers", "--identity", "alice"])?["data"]?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == daemon }
        XCTAssertEqual(entry?["relay"], true, "\(String(describing: entry))")
    }
}
