import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotCrypto
import PilotNet
import PilotTestSupport
import PilotWire
import XCTest

/// TrustGate.swift: what strangers reach.
final class TrustGateTests: FabricTestCase {
    /// A node the identity does not trust reaches port 444 and its public ports, nothing else:
    /// its SYNs and datagrams elsewhere vanish (and are counted) until trust is set.
    func testTheTrustGateLetsStrangersReachOnlyTheHandshakeAndPublicPorts() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = Directory()
        let (hostA, hostB, socketB) = try await twoHosts(group, directory)
        let stranger = try identity(1, directory), target = try identity(2, directory)
        try await hostA.add(stranger) { _ in }
        let inbox = Inbox()
        try await hostB.add(target, ownSocket: socketB.socket) { inbox.append($0) }
        try await hostB.setPublicPorts(local: 2, [])  // private: no echo for strangers
        try await hostB.listen(node: 2, port: 444) { handle in Task { try? await handle.close() } }

        // 444 answers a stranger.
        let handshake = try await hostA.dial(from: 1, to: target.address, port: 444, endpoint: socketB.address)
        try await handshake.close()
        // Echo does not: the dial gets no answer at all.
        let echo = Task { try await hostA.dial(from: 1, to: target.address, port: 7) }
        let datagram = Packet(proto: .datagram, source: stranger.address, destination: target.address, sourcePort: 9, destinationPort: 9, payload: [1])
        try await hostA.send(datagram, to: 2)
        var counters = try await hostB.streamCounters()
        let dropDeadline = ContinuousClock.now + .seconds(5)
        while counters.untrustedDropped < 2 && ContinuousClock.now < dropDeadline {
            try await Task.sleep(for: .milliseconds(20))
            counters = try await hostB.streamCounters()
        }
        XCTAssertGreaterThanOrEqual(counters.untrustedDropped, 2, "\(counters)")
        XCTAssertEqual(inbox.all, [])
        echo.cancel()

        // Trusted: the same node gets through.
        try await hostB.setTrusted(local: 2, remote: 1, true)
        let trusted = try await hostA.dial(from: 1, to: target.address, port: 7)
        let echoed = try await Self.roundTrip(trusted, [1, 2, 3])
        XCTAssertEqual(echoed, [1, 2, 3])
        try await hostA.send(datagram, to: 2)
        let deadline = ContinuousClock.now + .seconds(5)
        while inbox.all.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(inbox.all.map(\.payload), [[1]])
        // A public port is open without trust.
        try await hostB.setTrusted(local: 2, remote: 1, false)
        try await hostB.setPublicPorts(local: 2, [7])
        let open = try await hostA.dial(from: 1, to: target.address, port: 7)
        try await open.close()
        counters = try await hostB.streamCounters()
        XCTAssertEqual(counters.synsRateLimited, 0)
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }

    /// 1.18's reply window: after identity 1 dials node 2, node 2 may open streams to 1's
    /// data-exchange port, which a stranger may not, and to nothing else of 1's.
    func testADialOpensTheReplyWindowToTheDataExchangePortOnly() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = Directory()
        let hostA = Fabric(group: group, directory: directory, logger: Logger(label: "a"))
        let hostB = Fabric(group: group, directory: directory, logger: Logger(label: "b"))
        for host in [hostA, hostB] { try await Self.serveEchoAndHandshake(on: host) }
        _ = try await hostA.bind(host: "127.0.0.1", port: 0)
        let socketA = try await hostA.bind(host: "127.0.0.1", port: 0)
        let askerEndpoint = socketA.address
        let socketB = try await hostB.bind(host: "127.0.0.1", port: 0)
        let asker = try identity(1, directory), service = try identity(2, directory), stranger = try identity(3, directory)
        // Its own socket, so a stranger's key exchange reaches it and its SYN meets the gate.
        try await hostA.add(asker, ownSocket: socketA.socket) { _ in }
        try await hostB.add(service, ownSocket: socketB.socket) { _ in }
        try await hostB.add(stranger) { _ in }
        try await hostB.setPublicPorts(local: 2, [7])
        try await hostA.setPublicPorts(local: 1, [])
        let arrived = Inbox()
        try await hostA.listen(node: 1, port: 1001) { handle in
            arrived.append(Packet(proto: .stream, source: handle.key.remote, destination: handle.key.local, sourcePort: 0, destinationPort: 1001, payload: []))
            Task { try? await handle.close() }
        }
        try await hostA.listen(node: 1, port: 1002) { handle in Task { try? await handle.close() } }

        // Before 1 dials anyone, node 2's SYN to 1001 is dropped.
        let early = Task { try await hostB.dial(from: 2, to: asker.address, port: 1001, endpoint: askerEndpoint) }
        try await waitForDrops(hostA, atLeast: 1)
        early.cancel()
        // 1 asks node 2 (its public echo port): the window opens for node 2 only.
        let question = try await hostA.dial(from: 1, to: service.address, port: 7, endpoint: socketB.address)
        try await question.close()
        let answer = try await hostB.dial(from: 2, to: asker.address, port: 1001)
        try await answer.close()
        let deadline = ContinuousClock.now + .seconds(5)
        while arrived.all.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(arrived.all.isEmpty, false, "the node 1 dialled answers on 1001")
        // (The SYN sent before the window opened may pass too, resent once it is open.)
        let answered = arrived.all.count
        // Not another port of 1's, and not another node.
        let otherPort = Task { try await hostB.dial(from: 2, to: asker.address, port: 1002) }
        let otherNode = Task { try await hostB.dial(from: 3, to: asker.address, port: 1001, endpoint: askerEndpoint) }
        try await waitForDrops(hostA, atLeast: 3)
        otherPort.cancel()
        otherNode.cancel()
        XCTAssertEqual(Set(arrived.all.map(\.source.node)), [2], "only the node 1 dialled")
        XCTAssertLessThanOrEqual(arrived.all.count, answered + 1)
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }

    private func waitForDrops(_ host: Fabric, atLeast count: Int) async throws {
        var counters = try await host.streamCounters()
        let deadline = ContinuousClock.now + .seconds(5)
        while counters.untrustedDropped < count && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            counters = try await host.streamCounters()
        }
        XCTAssertGreaterThanOrEqual(counters.untrustedDropped, count, "\(counters)")
    }
}
