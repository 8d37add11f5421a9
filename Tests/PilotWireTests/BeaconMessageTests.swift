import PilotWire
import PilotTestSupport
import XCTest

final class BeaconMessageTests: XCTestCase {
    func testLayoutsMatchTheSpec() throws {
        // docs/PROTOCOL.md §9: sizes seen from the 1.18 daemon.
        XCTAssertEqual(try BeaconMessage.discover(node: 7).encoded().hex, "0100000007")
        XCTAssertEqual(try BeaconMessage.discoverReply(ip: [127, 0, 0, 1], port: 54249).encoded().hex, "02047f000001d3e9")
        XCTAssertEqual(try BeaconMessage.punchRequest(requester: 1, target: 2).encoded().hex, "030000000100000002")
        XCTAssertEqual(try BeaconMessage.relayDeliver(source: 5, frame: Array("PILP".utf8)[...]).encoded().hex, "060000000550494c50")
        XCTAssertEqual(try BeaconMessage.notify(kind: 1).encoded().hex, "0a01")
        XCTAssertEqual(try BeaconMessage.sync(beacon: 9, nodes: [1, 2]).encoded().hex, "07000000090002" + "0000000100000002")
        // pilot-rendezvous's own, between peer beacons.
        XCTAssertEqual(
            try BeaconMessage.punchForward(requester: 1, target: 2, ip: [127, 0, 0, 1], port: 54249).encoded().hex,
            "0b" + "00000001" + "00000002" + "047f000001d3e9")
        XCTAssertEqual(try BeaconMessage.punchAnswer(requester: 1, ip: [127, 0, 0, 1], port: 54249).encoded().hex, "0c" + "00000001" + "047f000001d3e9")
    }

    func testNotifyIgnoresTrailingBytes() throws {
        XCTAssertEqual(try BeaconMessage(decoding: [0x0A, 0x01, 0xFF, 0xFF]), .notify(kind: 1))
    }

    func testEndpointMustBeIPv4OrIPv6() {
        XCTAssertThrowsError(try BeaconMessage(decoding: [0x02, 5, 1, 2, 3, 4, 5, 0, 80]))
        XCTAssertThrowsError(try BeaconMessage.discoverReply(ip: [1, 2, 3], port: 1).encoded())
        let v6 = try? BeaconMessage(decoding: [0x04, 16] + [UInt8](repeating: 0, count: 15) + [1, 0x1F, 0x90])
        XCTAssertEqual(v6, .punchCommand(ip: [UInt8](repeating: 0, count: 15) + [1], port: 8080))
    }

    func testSyncCountMustMatchItsBytes() {
        XCTAssertThrowsError(try BeaconMessage(decoding: [0x07, 0, 0, 0, 1, 0, 2, 0, 0, 0, 1]))
    }

    func testUnknownTypeIsTyped() {
        XCTAssertThrowsError(try BeaconMessage(decoding: [0x0D])) { error in
            XCTAssertEqual(error as? WireError, .unknownType(field: "beacon type", value: 0x0D))
        }
    }

    func testRandomMessagesRoundTripAndTruncationsFail() throws {
        var random = SplitMix64(seed: 3)
        for _ in 0..<3000 {
            let node = UInt32.random(in: 0...UInt32.max, using: &random)
            let other = UInt32.random(in: 0...UInt32.max, using: &random)
            let ip = random.bytes(Bool.random(using: &random) ? 4 : 16)
            let port = UInt16.random(in: 0...UInt16.max, using: &random)
            let frame = random.bytes(.random(in: 0...64, using: &random))[...]
            let message: BeaconMessage = [
                .discover(node: node), .discoverExtended(node: node), .discoverReply(ip: ip, port: port),
                .punchCommand(ip: ip, port: port), .punchRequest(requester: node, target: other),
                .relay(source: node, destination: other, frame: frame), .relayDeliver(source: node, frame: frame),
                .relayDeliverTo(source: node, destination: other, frame: frame),
                .sync(beacon: node, nodes: (0..<Int.random(in: 0...5, using: &random)).map { UInt32($0) }),
                .notify(kind: UInt8(truncatingIfNeeded: node)),
                .punchForward(requester: node, target: other, ip: ip, port: port), .punchAnswer(requester: node, ip: ip, port: port),
            ].randomElement(using: &random) ?? .notify(kind: 1)
            let bytes = try message.encoded()
            XCTAssertEqual(try BeaconMessage(decoding: bytes), message)
            if case .relay = message { continue }  // a frame of any length, even empty, is valid
            if case .relayDeliver = message { continue }
            if case .relayDeliverTo = message { continue }
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try BeaconMessage(decoding: Array(bytes.prefix(length))), "\(message) cut at \(length)")
            }
        }
    }

    /// Random bytes behind a known type byte: each input is refused with a `WireError` or is the
    /// exact encoding of the message it decodes to (nothing skipped but a notify's tail).
    func testGarbageIsRefusedWithAWireErrorOrDecodesExactly() throws {
        var random = SplitMix64(seed: 11)
        var refused = 0
        for _ in 0..<5000 {
            var bytes = random.bytes(.random(in: 0...40, using: &random))
            if !bytes.isEmpty { bytes[0] %= 0x0C }
            do {
                let message = try BeaconMessage(decoding: bytes)
                // A notify's trailing bytes are ignored (later kinds may carry more).
                let expected = if case .notify = message { Array(bytes.prefix(2)) } else { bytes }
                XCTAssertEqual(try message.encoded(), expected, "\(message)")
            } catch {
                refused += 1  // a WireError: the decoder throws nothing else
            }
        }
        XCTAssertGreaterThan(refused, 0)
    }
}
