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
}
