import Glibc
import NIOCore
import XCTest

@testable import PilotNet

/// Busy polling looks only while looking pays: windows that end with nothing to read make the
/// loop rest (one burst in `probeEvery` still looks), and a look that finds a datagram ends the
/// rest.
final class BusyPollTests: XCTestCase {
    func testLookingRestsWhileItFindsNothingAndResumesWhenItFindsADatagram() throws {
        let poll = try XCTUnwrap(BusyPoll(window: .microseconds(20)))
        defer { poll.close() }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(socket, 0)
        defer { Glibc.close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
        }
        XCTAssertTrue(bound)
        poll.watch(socket)

        /// A burst of traffic: true if the loop looked, each look run until the poll says stop.
        func burst() -> Bool {
            guard poll.extend() else { return false }
            let deadline = NIODeadline.now() + .seconds(1)
            while poll.look() && NIODeadline.now() < deadline {}
            return true
        }

        for _ in 0..<BusyPoll.missesBeforeResting {
            XCTAssertFalse(poll.isResting)
            XCTAssertTrue(burst(), "the loop looks after every burst until looking stops paying")
        }
        XCTAssertTrue(poll.isResting)
        let looked = (0..<2 * BusyPoll.probeEvery).filter { _ in burst() }.count
        XCTAssertEqual(looked, 2, "resting, one burst in \(BusyPoll.probeEvery) is followed by a look")

        // A datagram waits: the next look finds it, and looking pays again.
        let datagram: [UInt8] = [1, 2, 3]
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket, datagram, datagram.count, 0, $0, length) }
        }
        XCTAssertEqual(sent, datagram.count)
        // Loopback may hand it over later than a 20 µs window on a loaded machine: wait for it.
        var ready = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(Glibc.poll(&ready, 1, 5000), 1, "the datagram arrived")
        var bursts = 0
        while !burst() && bursts < BusyPoll.probeEvery { bursts += 1 }
        XCTAssertFalse(poll.isResting)
        XCTAssertEqual(poll.misses, 0)
        XCTAssertTrue(poll.extend(), "no longer resting, the next burst is looked after at once")
    }
}
