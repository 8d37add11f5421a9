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

/// Fabric+Receive.swift: a batch of reads, coalesced runs cut back into datagrams, and the
/// ACKs a batch makes.
final class FabricReceiveTests: FabricTestCase {
    /// Where the kernel coalesces received datagrams (UDP_GRO), a stream sent with segmentation
    /// offload arrives in runs, each cut back into its datagrams: every byte, in order.
    func testCoalescedRunsAreCutBackIntoTheirDatagrams() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (hostA, hostB, stream, peer) = try await acceptedStream(group)
        let message = (0..<4_000_000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 9) }
        let writer = Task { try await stream.write(message) }
        let received = await peer.readMessage(limit: message.count, timeout: .seconds(60)) { _ in false }
        try await writer.value
        XCTAssertTrue(received == message, "\(received.count) of \(message.count) bytes, in order")
        let (runs, datagrams) = try await hostB.coalescedReads()
        if System.supportsUDPReceiveOffload {
            XCTAssertGreaterThan(runs, 0, "the kernel coalesced nothing")
            XCTAssertGreaterThan(datagrams, 2 * runs, "runs of one datagram are not runs")
        } else {
            print("UDP_GRO is not supported here: nothing was coalesced (\(runs) runs); the bytes were still checked")
        }
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }

    /// A peer that reads a short message and closes at once still acknowledges it before its
    /// FIN (1.18's FIN carries no acknowledgment): the writer's flush succeeds. This is the
    /// trust handshake's pattern; before, the owed ACK waited 40 ms and went out after the FIN,
    /// and every handshake message was sent three times.
    func testAPeerThatReadsAndClosesAtOnceAcknowledgesBeforeItsFin() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (hostA, hostB, stream, peer) = try await acceptedStream(group)
        let message = Array("a short request".utf8)
        try await stream.write(message)
        let flusher = Task { try await stream.flush() }
        let received = await peer.readMessage(limit: message.count, timeout: .seconds(10)) { _ in false }
        XCTAssertEqual(received, message)
        try await peer.close()
        for await event in stream.events where event == .finished { break }
        do {
            try await flusher.value
            try await stream.flush()
        } catch {
            XCTFail("the flush failed: \(error)")
        }
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }
}
