import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotCrypto
import PilotHost
import PilotNet
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// PilotNet against the official 1.18 daemon from PyPI, both registered with our
/// pilot-rendezvous: key exchange and encrypted packets in both directions, on a shared socket
/// and on an identity's own socket.
final class OfficialTunnelTests: XCTestCase {
    /// Datagrams and control packets one identity received, for the test to wait on.
    final class Inbox: Sendable {
        private let packets = NIOLockedValueBox<[Packet]>([])
        func append(_ packet: Packet) { packets.withLockedValue { $0.append(packet) } }
        func first(where match: (Packet) -> Bool) -> Packet? { packets.withLockedValue { $0.first(where: match) } }
    }

    func testControlPingAndADialBothWaysWithTheOfficialDaemon() async throws {
        let (overlay, daemon): (OverlayHarness, UInt32)
        do { (overlay, daemon) = try OverlayHarness.started(daemon: "alpha", extra: ["-public"]) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let registry = RegistryClient(host: "127.0.0.1", port: Int(overlay.registryPort), group: group)
        let fabric = Fabric(group: group, directory: RegistryDirectory(registry: registry), logger: Logger(label: "fabric"))
        try await FabricTestCase.serveEchoAndHandshake(on: fabric)
        let shared = try await fabric.bind(host: "127.0.0.1", port: 0)
        let own = try await fabric.bind(host: "127.0.0.1", port: 0)

        // "asker" lives on the shared socket; "listener" is public and has a socket of its own.
        let (master, _) = try MasterKey.load(stateDirectory: overlay.directory.url.path, environment: [:])
        func pool(_ name: String, _ socket: SocketAddress) throws -> IdentityPool {
            IdentityPool(
                store: try HostStore(path: overlay.directory.path("\(name).db")), keys: try IdentityKeys(masterKey: master),
                registry: registry, listenAddress: "127.0.0.1:\(socket.port ?? 0)")
        }
        let askerPool = try pool("asker", shared.address)
        let listenerPool = try pool("listener", own.address)
        let askerRecord = try await askerPool.create(name: "asker", IdentityPool.Request(owner: 0))
        var publicRequest = IdentityPool.Request(owner: 0)
        publicRequest.isPublic = true
        let listenerRecord = try await listenerPool.create(name: "listener", publicRequest)
        let asker = try TunnelIdentity(
            address: Address(network: askerRecord.network, node: askerRecord.nodeID), signingKey: try await askerPool.signingKey(of: "asker"))
        let listener = try TunnelIdentity(
            address: Address(network: listenerRecord.network, node: listenerRecord.nodeID),
            signingKey: try await listenerPool.signingKey(of: "listener"))
        let askerInbox = Inbox()
        try await fabric.add(asker) { askerInbox.append($0) }
        try await fabric.add(listener, ownSocket: own.socket) { _ in }
        try await fabric.setPublicPorts(local: listener.node, [7])  // public: strangers may ping it

        // 1. We start: a control ping from "asker" to the daemon, sealed once the keys are
        //    exchanged; the daemon's pong comes back through the shared socket.
        let resolved = try await askerPool.resolve(node: daemon, as: "asker")
        let endpoint = try XCTUnwrap(resolved)
        let (host, port) = try XCTUnwrap(endpoint.split(separator: ":").map(String.init).pairOrNil)
        let ping = Packet(
            proto: .control, source: asker.address, destination: Address(node: daemon), sourcePort: 41000, destinationPort: 0,
            sequence: 7, payload: Array("ping-from-swift".utf8))
        try await fabric.send(ping, to: daemon, endpoint: try SocketAddress(ipAddress: host, port: Int(port) ?? 0))
        let pong = await eventually(timeout: 20) { askerInbox.first { $0.proto == .control && $0.flags.contains(.ack) } }
        XCTAssertEqual(pong?.source.node, daemon)
        XCTAssertEqual(pong?.destination, asker.address)
        XCTAssertEqual(pong?.destinationPort, 41000)
        XCTAssertEqual(pong?.sequence, 7)
        XCTAssertEqual(pong?.acknowledgment, 8)
        XCTAssertEqual(pong.map { String(decoding: $0.payload, as: UTF8.self) }, "ping-from-swift")

        // 2. The daemon starts: its `pilotctl ping` dials the public "listener" (a stream to echo
        //    port 7, one per probe): the key exchange arrives on the listener's own socket, and
        //    the listener's echo service answers each probe.
        let target = listener.address.description
        let pinged = try overlay.ctl("alpha", ["ping", target, "--count", "2"], timeout: 30)
        print("official pilotctl ping:", pinged)
        XCTAssertEqual(pinged["results"]?.arrayValue?.count, 2, "\(pinged)")
        XCTAssertTrue(pinged["results"]?.arrayValue?.allSatisfy { $0["error"] == nil } == true, "\(pinged)")
        let established = try await fabric.hasSession(local: listener.node, remote: daemon)
        XCTAssertTrue(established)

        // 3. A stream from us: our dial to the daemon's echo port gets every byte back.
        let stream = try await fabric.dial(from: asker.node, to: Address(node: daemon), port: 7)
        let message = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try await stream.write(message)
        var echoed: [UInt8] = []
        for await event in stream.events {
            if case .data(let bytes) = event { echoed += bytes }
            if echoed.count >= message.count { break }
        }
        XCTAssertEqual(echoed, message)
        try await stream.close()

        // 4. The window follows our reader, and 1.18 heeds it: 6 MB to the daemon's echo, read
        //    only after 2 s. The echo stops at our shut window (0: full), probes, and resumes
        //    when we read; every byte comes back.
        let big = try await fabric.dial(from: asker.node, to: Address(node: daemon), port: 7)
        let bulk = (0..<6_000_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 9) }
        let writer = Task { try await big.write(bulk) }
        try await Task.sleep(for: .seconds(2))
        XCTAssertGreaterThan(big.unread, StreamConnection.receiveBufferLimit / 2, "the echo came back slower than expected")
        XCTAssertLessThanOrEqual(big.unread, StreamConnection.receiveBufferLimit + 64 * StreamConnection.segmentSize)
        let bulkEchoed = await big.readMessage(limit: bulk.count, timeout: .seconds(90)) { _ in false }
        try await writer.value
        XCTAssertEqual(bulkEchoed.count, bulk.count)
        XCTAssertTrue(bulkEchoed == bulk, "the echo differs")
        try await big.close()

        let counters = try await fabric.counters()
        XCTAssertEqual(counters.keyExchangesRejected, 0, "\(counters)")
        XCTAssertEqual(counters.authenticationFailed, 0, "\(counters)")
        XCTAssertEqual(counters.spoofed + counters.misrouted + counters.malformed, 0, "\(counters)")
        if pong == nil || echoed != message { print(overlay.logs()) }

        await fabric.shutdown()
        await registry.disconnect()
        try await group.shutdownGracefully()
    }

    /// Polls `find` every 50 ms until it returns a value or `timeout` seconds pass.
    private func eventually<T>(timeout: Double, _ find: () -> T?) async -> T? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let value = find() { return value }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return find()
    }
}

extension Array {
    fileprivate var pairOrNil: (Element, Element)? { count == 2 ? (self[0], self[1]) : nil }
}
