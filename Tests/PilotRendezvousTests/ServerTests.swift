import Foundation
import Logging
import NIOCore
import NIOPosix
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// The registry and beacon servers over real sockets on 127.0.0.1.
final class ServerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        directory = try TemporaryDirectory(prefix: "pilot-servers")
    }

    override func tearDownWithError() throws {
        try group.syncShutdownGracefully()
        directory.remove()
    }

    private func endpoint(_ address: SocketAddress) -> LoopbackEndpoint {
        LoopbackEndpoint(ip: [127, 0, 0, 1], port: UInt16(address.port ?? 0))
    }

    private func read(_ socket: LoopbackSocket) throws -> RegistryMessage? {
        guard let frame = try socket.readFrame(timeout: 5) else { return nil }
        return try RegistryMessage(decoding: frame.dropFirst(4))
    }

    func testBadClientsGetAnErrorAndOnlyTheirConnectionCloses() async throws {
        let registry = try Registry(stateDirectory: directory.path("state"))
        let server = RegistryServer(registry: registry, configuration: .init(host: "127.0.0.1", port: 0), logger: Logger(label: "test"))
        let address = endpoint(try await server.start(on: group))
        defer { Task { try? await server.shutdown() } }

        // A client that sends half a frame and stalls.
        let staller = try LoopbackSocket.connect(to: address)
        try staller.write([0, 0, 0, 100, 0x7B])

        // Bad JSON and an unknown type: errors, and the connection stays usable.
        let polite = try LoopbackSocket.connect(to: address)
        try polite.write([0, 0, 0, 3] + Array("{x}".utf8))
        XCTAssertEqual(try read(polite)?.type, "error")
        try polite.write(RegistryFrame.encode(RegistryMessage(type: "what")))
        XCTAssertEqual(try read(polite)?["error"]?.stringValue?.hasPrefix("unknown type: what ("), true)
        try polite.write(RegistryFrame.encode(RegistryMessage(type: "list_networks")))
        XCTAssertEqual(try read(polite)?.type, "list_networks_ok")

        // An oversized length: one error, then that connection is closed.
        let greedy = try LoopbackSocket.connect(to: address)
        try greedy.write([0x7F, 0xFF, 0xFF, 0xFF])
        XCTAssertEqual(try read(greedy)?.type, "error")
        XCTAssertNil(try greedy.read(exactly: 1, timeout: 5), "the server should close the connection")

        // Pipelined requests are answered in order.
        let pipelined = try LoopbackSocket.connect(to: address)
        let requests = try (1...20).flatMap { index in
            try RegistryFrame.encode(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(index))]))
        }
        try pipelined.write(requests)
        for index in 1...20 {
            XCTAssertEqual(try read(pipelined)?["error"], .string("node \(index) is not registered"))
        }
        XCTAssertFalse(polite.waitReadable(timeout: 0.3), "nothing arrives that was not asked for")
    }

    /// The per-connection request budget holds strangers back, not the operator's host: one
    /// connection carries all of its identities, and a batch with the host credential passes.
    func testBatchesWithTheHostCredentialAreNotHeldToTheConnectionsRequestBudget() async throws {
        var registryConfiguration = Registry.Configuration()
        registryConfiguration.hostCredential = "operator-host"
        let registry = try Registry(stateDirectory: directory.path("state"), configuration: registryConfiguration)
        var configuration = RegistryServer.Configuration(host: "127.0.0.1", port: 0)
        configuration.requestsPerSecond = 0.001
        configuration.requestBurst = 3
        let server = RegistryServer(registry: registry, configuration: configuration, logger: Logger(label: "test"))
        let address = endpoint(try await server.start(on: group))
        defer { Task { try? await server.shutdown() } }

        func answers(_ credential: String?) throws -> [String] {
            let socket = try LoopbackSocket.connect(to: address)
            var fields: [String: JSON] = ["requests": [["type": "lookup", "node_id": 1]]]
            if let credential { fields["credential"] = .string(credential) }
            try socket.write((0..<6).flatMap { _ in try RegistryFrame.encode(RegistryMessage(type: "batch", fields)) })
            return try (0..<6).map { _ in try read(socket)?.type ?? "none" }
        }
        XCTAssertEqual(try answers(nil), ["batch_ok", "batch_ok", "batch_ok", "error", "error", "error"])
        XCTAssertEqual(try answers("operator-host"), Array(repeating: "batch_ok", count: 6))
    }

    func testBeaconDiscoverRelayPunchAndNotify() async throws {
        let beacon = BeaconServer(configuration: .init(host: "127.0.0.1", port: 0), logger: Logger(label: "test"))
        let address = endpoint(try await beacon.start(on: group))
        defer { Task { try? await beacon.shutdown() } }
        let a = try LoopbackSocket.udp()
        let b = try LoopbackSocket.udp()

        try a.send(BeaconMessage.discover(node: 10).encoded(), to: address)
        let replyA = try XCTUnwrap(try a.receiveDatagram(timeout: 5))
        XCTAssertEqual(try BeaconMessage(decoding: replyA.bytes), .discoverReply(ip: [127, 0, 0, 1], port: a.localEndpoint.port))
        // b asks for deliveries that name their destination.
        try b.send(BeaconMessage.discoverExtended(node: 20).encoded(), to: address)
        _ = try XCTUnwrap(try b.receiveDatagram(timeout: 5))

        // Relay a → b arrives as 0x09 (b opted in); b → a as 0x06.
        let frame = Array("PILP".utf8)[...]
        try a.send(BeaconMessage.relay(source: 10, destination: 20, frame: frame).encoded(), to: address)
        XCTAssertEqual(
            try BeaconMessage(decoding: try XCTUnwrap(try b.receiveDatagram(timeout: 5)).bytes),
            .relayDeliverTo(source: 10, destination: 20, frame: frame))
        try b.send(BeaconMessage.relay(source: 20, destination: 10, frame: frame).encoded(), to: address)
        XCTAssertEqual(
            try BeaconMessage(decoding: try XCTUnwrap(try a.receiveDatagram(timeout: 5)).bytes),
            .relayDeliver(source: 20, frame: frame))

        // Punch: both sides learn the other's endpoint.
        try a.send(BeaconMessage.punchRequest(requester: 10, target: 20).encoded(), to: address)
        XCTAssertEqual(
            try BeaconMessage(decoding: try XCTUnwrap(try a.receiveDatagram(timeout: 5)).bytes),
            .punchCommand(ip: [127, 0, 0, 1], port: b.localEndpoint.port))
        XCTAssertEqual(
            try BeaconMessage(decoding: try XCTUnwrap(try b.receiveDatagram(timeout: 5)).bytes),
            .punchCommand(ip: [127, 0, 0, 1], port: a.localEndpoint.port))

        // A node that hides its endpoint (relay-only) is never punched to, nor from.
        beacon.hideEndpoints { $0 == 20 }
        try a.send(BeaconMessage.punchRequest(requester: 10, target: 20).encoded(), to: address)
        try b.send(BeaconMessage.punchRequest(requester: 20, target: 10).encoded(), to: address)
        XCTAssertNil(try a.receiveDatagram(timeout: 0.3))
        XCTAssertNil(try b.receiveDatagram(timeout: 0.3))
        XCTAssertEqual(beacon.counters.punchesRefused, 2)

        // Notify, at most 3 in a burst.
        for _ in 0..<5 { beacon.notify(node: 10) }
        var notifies = 0
        while let datagram = try a.receiveDatagram(timeout: 0.5) {
            XCTAssertEqual(try BeaconMessage(decoding: datagram.bytes), .notify(kind: 1))
            notifies += 1
        }
        XCTAssertEqual(notifies, 3)

        // Garbage and frames for unknown nodes are counted and dropped.
        try a.send([0xEE, 1, 2], to: address)
        try a.send(BeaconMessage.relay(source: 10, destination: 99, frame: frame).encoded(), to: address)
        try a.send(BeaconMessage.discover(node: 10).encoded(), to: address)
        _ = try XCTUnwrap(try a.receiveDatagram(timeout: 5))  // the beacon still answers
        let counters = beacon.counters
        XCTAssertEqual(counters.malformed, 1)
        XCTAssertEqual(counters.relayDropped, 1)
        XCTAssertEqual(counters.relayed, 2)
        XCTAssertEqual(counters.notifies, 3)
    }

    /// Two beacons that are each other's peers: a node at one reaches a node at the other by
    /// relay (each way) and by a punch, through both; a sync from anyone else is not heeded, and
    /// a relay for a node neither knows is dropped, not passed around.
    func testPeerBeaconsRelayAndPunchBetweenTheirNodes() async throws {
        let (portX, portY) = (Int(try LoopbackSocket.freePort()), Int(try LoopbackSocket.freePort()))
        func beacon(_ port: Int, peer: Int) throws -> BeaconServer {
            var configuration = BeaconServer.Configuration(host: "127.0.0.1", port: port)
            configuration.peers = [try SocketAddress(ipAddress: "127.0.0.1", port: peer)]
            configuration.syncInterval = 0.2
            return BeaconServer(configuration: configuration, logger: Logger(label: "test"))
        }
        let x = try beacon(portX, peer: portY)
        let y = try beacon(portY, peer: portX)
        let addressX = endpoint(try await x.start(on: group))
        let addressY = endpoint(try await y.start(on: group))
        defer { Task { try? await x.shutdown(); try? await y.shutdown() } }
        // a (at X) → b (at Y): X sends it on, Y delivers it, as 0x09 (b asked for that); and a punch.
        let nodes = try await PeerBeaconNodes(x: x, at: addressX, y: y, at: addressY)
        try nodes.assertRelaysAndAPunch()
        let (a, b) = (nodes.a, nodes.b)
        let frame = Array("PILP".utf8)[...]

        // Not a peer: its sync names node 99 to X, which is not heeded; a relay to 99 is dropped.
        try a.send(BeaconMessage.sync(beacon: 7, nodes: [99]).encoded(), to: addressX)
        try a.send(BeaconMessage.relay(source: 10, destination: 99, frame: frame).encoded(), to: addressX)
        try a.send(BeaconMessage.discover(node: 10).encoded(), to: addressX)
        _ = try XCTUnwrap(try a.receiveDatagram(timeout: 5))
        XCTAssertEqual(x.counters.notFromPeer, 1)
        XCTAssertEqual(x.counters.relayDropped, 1)
        XCTAssertEqual(x.counters.relaysForwarded, 1, "nothing more sent on")
        XCTAssertNil(try b.receiveDatagram(timeout: 0.3))
    }
}
