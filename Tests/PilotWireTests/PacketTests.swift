import PilotWire
import PilotTestSupport
import XCTest

final class PacketTests: XCTestCase {
    // docs/PROTOCOL.md §2.1, generated with the Go reference.
    let synVector = "11010000000000000001000000000002c00003e800000000000000000200145ed874"
    let helloVector = "12010005000000000001000000000002c00003e8000000010000000101f65ee872c868656c6c6f"

    func testSynVectorDecodesFieldByFieldAndReencodesByteForByte() throws {
        let bytes = [UInt8](hex: synVector)
        let packet = try Packet(decoding: bytes)
        XCTAssertEqual(packet.flags, .syn)
        XCTAssertEqual(packet.proto, .stream)
        XCTAssertEqual(packet.source, Address(network: 0, node: 1))
        XCTAssertEqual(packet.destination, Address(network: 0, node: 2))
        XCTAssertEqual(packet.sourcePort, 49152)
        XCTAssertEqual(packet.destinationPort, 1000)
        XCTAssertEqual(packet.sequence, 0)
        XCTAssertEqual(packet.acknowledgment, 0)
        XCTAssertEqual(packet.window, 512)
        XCTAssertEqual(packet.payload, [])
        XCTAssertEqual(try packet.encoded().hex, synVector)
    }

    func testHelloVectorCarriesPayloadAndChecksum() throws {
        let packet = Packet(
            flags: .ack, proto: .stream, source: Address(node: 1), destination: Address(node: 2),
            sourcePort: 49152, destinationPort: 1000, sequence: 1, acknowledgment: 1, window: 502,
            payload: Array("hello".utf8))
        XCTAssertEqual(try packet.encoded().hex, helloVector)
        XCTAssertEqual(try Packet(decoding: [UInt8](hex: helloVector)), packet)
    }

    func testChecksumMismatchIsRejected() {
        var bytes = [UInt8](hex: helloVector)
        bytes[bytes.count - 1] ^= 0x01  // flip a payload bit
        XCTAssertThrowsError(try Packet(decoding: bytes)) { error in
            guard case WireError.badChecksum(let expected, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(expected, 0x5EE8_72C8)
        }
    }

    func testVersionOtherThanOneIsRejected() {
        var bytes = [UInt8](hex: synVector)
        bytes[0] = 0x21
        XCTAssertThrowsError(try Packet(decoding: bytes)) { error in
            XCTAssertEqual(error as? WireError, .unsupportedVersion(2))
        }
    }

    func testEveryTruncationFails() {
        let bytes = [UInt8](hex: helloVector)
        XCTAssertEqual(assertEveryTruncationFails(bytes) { _ = try Packet(decoding: $0) }, bytes.count)
    }

    func testBytesAfterThePayloadAreIgnored() throws {
        let bytes = [UInt8](hex: helloVector) + [0xAA, 0xBB]
        XCTAssertEqual(try Packet(decoding: bytes).payload, Array("hello".utf8))
    }

    func testOversizedPayloadCannotBeEncoded() {
        let packet = Packet(
            proto: .datagram, source: .zero, destination: .zero, sourcePort: 1, destinationPort: 2,
            payload: [UInt8](repeating: 0, count: Packet.maxPayload + 1))
        XCTAssertThrowsError(try packet.encoded())
    }

    func testRandomPacketsRoundTrip() throws {
        var random = SplitMix64(seed: 0x5107)
        for _ in 0..<3000 {
            let packet = Packet(
                flags: PacketFlags(rawValue: .random(in: 0...15, using: &random)),
                proto: PacketProtocol(rawValue: .random(in: 0...255, using: &random)),
                source: random.address(), destination: random.address(),
                sourcePort: .random(in: 0...UInt16.max, using: &random),
                destinationPort: .random(in: 0...UInt16.max, using: &random),
                sequence: .random(in: 0...UInt32.max, using: &random),
                acknowledgment: .random(in: 0...UInt32.max, using: &random),
                window: .random(in: 0...UInt16.max, using: &random),
                payload: random.bytes(.random(in: 0...300, using: &random)))
            let bytes = try packet.encoded()
            XCTAssertEqual(bytes.count, Packet.headerSize + packet.payload.count)
            XCTAssertEqual(try Packet(decoding: bytes), packet)
        }
    }

    func testGarbageNeverTraps() {
        var random = SplitMix64(seed: 0xBAD)
        var decoded = 0
        for _ in 0..<5000 {
            var bytes = random.bytes(.random(in: 0...80, using: &random))
            if !bytes.isEmpty, Bool.random(using: &random) { bytes[0] = 0x10 | bytes[0] & 0x0F }
            if (try? Packet(decoding: bytes)) != nil { decoded += 1 }
        }
        // A random 32-bit checksum matches about once in four billion tries.
        XCTAssertEqual(decoded, 0)
    }

    func testFlagsDescribeThemselves() {
        XCTAssertEqual(PacketFlags([.syn, .ack]).description, "SYN|ACK")
        XCTAssertEqual(PacketFlags().description, "-")
    }
}
