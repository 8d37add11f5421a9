import Foundation
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// Node 10 at beacon X and node 20 at beacon Y, where X and Y are each other's peers (named
/// with `--beacon-peers` or found in the database): the traffic the peer beacon tests send
/// between them.
struct PeerBeaconNodes {
    /// Node 10, at X.
    let a: LoopbackSocket
    /// Node 20, at Y; it asked for 0x09 deliveries.
    let b: LoopbackSocket
    let x: BeaconServer
    let y: BeaconServer
    let addressX: LoopbackEndpoint
    let addressY: LoopbackEndpoint

    /// Discovers both nodes at their beacons and waits (at most 5 s) until each beacon has
    /// heeded two more syncs of the other, so each knows the other's node.
    init(x: BeaconServer, at addressX: LoopbackEndpoint, y: BeaconServer, at addressY: LoopbackEndpoint) async throws {
        (self.x, self.y, self.addressX, self.addressY) = (x, y, addressX, addressY)
        a = try LoopbackSocket.udp()
        b = try LoopbackSocket.udp()
        let (syncsX, syncsY) = (x.counters.syncsReceived, y.counters.syncsReceived)
        try a.send(BeaconMessage.discover(node: 10).encoded(), to: addressX)
        _ = try XCTUnwrap(try a.receiveDatagram(timeout: 5))
        try b.send(BeaconMessage.discoverExtended(node: 20).encoded(), to: addressY)
        _ = try XCTUnwrap(try b.receiveDatagram(timeout: 5))
        let began = Date()
        while x.counters.syncsReceived < syncsX + 2 || y.counters.syncsReceived < syncsY + 2 {
            guard Date().timeIntervalSince(began) < 5 else {
                throw SocketError(description: "the beacons heeded no syncs of each other: \(x.counters), \(y.counters)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// `count` relays from a to b and one back, each sent on by the sender's beacon and
    /// delivered by the destination's own; then a punch from a toward b, each side told the
    /// other's endpoint by its own beacon. The beacons' counters start at zero.
    func assertRelaysAndAPunch(relaysFromA count: Int = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        for index in 1...count {
            let frame = Array("PILP \(index)".utf8)[...]
            try a.send(BeaconMessage.relay(source: 10, destination: 20, frame: frame).encoded(), to: addressX)
            let atB = try XCTUnwrap(try b.receiveDatagram(timeout: 5), "relay \(index)", file: file, line: line)
            XCTAssertEqual(try BeaconMessage(decoding: atB.bytes), .relayDeliverTo(source: 10, destination: 20, frame: frame), file: file, line: line)
            XCTAssertEqual(atB.from.port, addressY.port, "from b's own beacon, the only one it heeds", file: file, line: line)
        }
        let frame = Array("PILP".utf8)[...]
        try b.send(BeaconMessage.relay(source: 20, destination: 10, frame: frame).encoded(), to: addressY)
        let atA = try XCTUnwrap(try a.receiveDatagram(timeout: 5), file: file, line: line)
        XCTAssertEqual(try BeaconMessage(decoding: atA.bytes), .relayDeliver(source: 20, frame: frame), file: file, line: line)
        XCTAssertEqual(atA.from.port, addressX.port, file: file, line: line)
        XCTAssertEqual(x.counters.relaysForwarded, count, file: file, line: line)
        XCTAssertEqual(y.counters.relaysForwarded, 1, file: file, line: line)

        try a.send(BeaconMessage.punchRequest(requester: 10, target: 20).encoded(), to: addressX)
        let toB = try XCTUnwrap(try b.receiveDatagram(timeout: 5), file: file, line: line)
        XCTAssertEqual(try BeaconMessage(decoding: toB.bytes), .punchCommand(ip: [127, 0, 0, 1], port: a.localEndpoint.port), file: file, line: line)
        XCTAssertEqual(toB.from.port, addressY.port, file: file, line: line)
        let toA = try XCTUnwrap(try a.receiveDatagram(timeout: 5), file: file, line: line)
        XCTAssertEqual(try BeaconMessage(decoding: toA.bytes), .punchCommand(ip: [127, 0, 0, 1], port: b.localEndpoint.port), file: file, line: line)
        XCTAssertEqual(toA.from.port, addressX.port, file: file, line: line)
        XCTAssertEqual(x.counters.punchesForwarded, 1, file: file, line: line)
        XCTAssertEqual(y.counters.punchesAnsweredForPeers, 1, file: file, line: line)
    }
}
