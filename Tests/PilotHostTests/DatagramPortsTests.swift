import PilotNet
import PilotWire
import XCTest

@testable import PilotHost

/// `listen`'s datagram ports: a datagram reaches the listener of its identity and port only, a
/// port is listened on once, and a stopped port drops what comes.
final class DatagramPortsTests: XCTestCase {
    private func datagram(to port: UInt16, _ text: String) -> Packet {
        Packet(
            proto: .datagram, source: Address(node: 9), destination: Address(node: 1), sourcePort: 50_000, destinationPort: port,
            payload: Array(text.utf8))
    }

    func testADatagramReachesOnlyTheListenerOfItsIdentityAndPort() async throws {
        let ports = DatagramPorts()
        let alice = try XCTUnwrap(ports.listen("alice", port: 5000))
        let bob = try XCTUnwrap(ports.listen("bob", port: 5000))
        XCTAssertNil(ports.listen("alice", port: 5000), "a port was listened on twice")
        ports.deliver(datagram(to: 5000, "for alice"), to: "alice")
        ports.deliver(datagram(to: 5001, "nobody listens"), to: "alice")
        ports.deliver(datagram(to: 5000, "for bob"), to: "bob")
        ports.stop("alice", port: 5000)
        ports.stop("bob", port: 5000)
        var aliceGot: [String] = []
        for await packet in alice { aliceGot.append(String(decoding: packet.payload, as: UTF8.self)) }
        var bobGot: [String] = []
        for await packet in bob { bobGot.append(String(decoding: packet.payload, as: UTF8.self)) }
        XCTAssertEqual(aliceGot, ["for alice"])
        XCTAssertEqual(bobGot, ["for bob"])
        // Stopped: the port is free again, and what came meanwhile was dropped.
        ports.deliver(datagram(to: 5000, "late"), to: "alice")
        let again = try XCTUnwrap(ports.listen("alice", port: 5000))
        ports.stop("alice", port: 5000)
        var late: [String] = []
        for await packet in again { late.append(String(decoding: packet.payload, as: UTF8.self)) }
        XCTAssertEqual(late, [])
    }

    func testAReaderThatIsBehindKeepsTheNewestDatagrams() async throws {
        let ports = DatagramPorts()
        let packets = try XCTUnwrap(ports.listen("alice", port: 7))
        for index in 0..<(DatagramPorts.backlog + 10) { ports.deliver(datagram(to: 7, "\(index)"), to: "alice") }
        ports.stop("alice", port: 7)
        var got: [String] = []
        for await packet in packets { got.append(String(decoding: packet.payload, as: UTF8.self)) }
        XCTAssertEqual(got.count, DatagramPorts.backlog)
        XCTAssertEqual(got.first, "10")
        XCTAssertEqual(got.last, "\(DatagramPorts.backlog + 9)")
    }
}
