import NIOCore
import PilotTestSupport
import PilotWire
import XCTest

@testable import PilotNet

#if canImport(Glibc)
    import Glibc
#endif

/// The fabric's own sendmmsg: runs of equal datagrams go segmented (UDP_SEGMENT) yet arrive as
/// the same datagrams, in order; a refused datagram is skipped and counted, the rest sent.
final class DatagramSenderTests: XCTestCase {
    private func endpoint(_ socket: LoopbackSocket) throws -> SocketAddress {
        try SocketAddress(ipAddress: "127.0.0.1", port: Int(socket.localEndpoint.port))
    }

    func testRunsArriveAsTheSameDatagramsInOrderAndRefusalsAreSkipped() throws {
        let sending = try LoopbackSocket.udp()
        let first = try LoopbackSocket.udp(), second = try LoopbackSocket.udp()
        var size: Int32 = 4 << 20
        for socket in [first, second] { setsockopt(socket.fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
        let sender = DatagramSender()
        let (a, b) = (try endpoint(first), try endpoint(second))
        let nowhere = try SocketAddress(ipAddress: "::1", port: 9)
        // 70 segments of 1222 bytes to a (more than one run holds), a short last one, then a
        // datagram of another family (refused), 3 to b, and 2 of another size to a.
        var random = SplitMix64(seed: 9)
        func datagram(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) } }
        var batch: [(bytes: [UInt8], endpoint: SocketAddress)] = (0..<70).map { _ in (datagram(1222), a) }
        batch.append((datagram(300), a))
        batch.append((datagram(100), nowhere))
        batch += (0..<3).map { _ in (datagram(1222), b) }
        batch += (0..<2).map { _ in (datagram(50), a) }
        let outcome = sender.send(batch, on: sending.fd)
        XCTAssertEqual(outcome.sent, batch.count - 1)
        XCTAssertEqual(outcome.failed.count, 1)
        XCTAssertEqual(outcome.failed.first?.endpoint, nowhere)
        XCTAssertNil(outcome.blockedFrom)

        func drain(_ socket: LoopbackSocket) throws -> [[UInt8]] {
            var got: [[UInt8]] = []
            while let datagram = try socket.receiveDatagram(timeout: 0.5) { got.append(datagram.bytes) }
            return got
        }
        XCTAssertEqual(try drain(first), batch.filter { $0.endpoint == a }.map(\.bytes))
        XCTAssertEqual(try drain(second), batch.filter { $0.endpoint == b }.map(\.bytes))
        print("segmentation offload in use: \(String(describing: sender.segments))")
    }
}
