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

/// Fabric+Send.swift: the send queue and what the kernel refuses.
final class FabricSendTests: FabricTestCase {
    /// A datagram the kernel refuses (here an IPv6 endpoint for an IPv4 socket; in the field
    /// an endpoint with no route, a firewall rule) is counted and skipped: the shared socket,
    /// which NIO would have closed, goes on carrying everyone else's traffic.
    func testADatagramTheKernelRefusesLeavesTheSocketServing() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (hostA, hostB, b, socketB) = try await trustingPair(group)
        let nowhere = try SocketAddress(ipAddress: "::1", port: 9)
        let stranger = Packet(proto: .datagram, source: Address(node: 1), destination: Address(node: 77), sourcePort: 1, destinationPort: 1)
        try await hostA.send(stranger, to: 77, endpoint: nowhere)
        let failures = try await hostA.sendFailures()
        XCTAssertEqual(failures.refused.values.reduce(0, +), 1, "\(failures)")
        let stream = try await hostA.dial(from: 1, to: b.address, port: 7, endpoint: socketB.address)
        let message = Array("still serving".utf8)
        let echoed = try await Self.roundTrip(stream, message)
        XCTAssertEqual(echoed, message)
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }
}
