import PilotWire
import XCTest

final class RegistryFrameTests: XCTestCase {
    func testFrameIsLengthThenJSON() throws {
        let bytes = try RegistryFrame.encode(RegistryMessage(type: "heartbeat", ["node_id": 7, "signature": "c2ln"]))
        let body = #"{"node_id":7,"signature":"c2ln","type":"heartbeat"}"#
        XCTAssertEqual(Array(bytes.prefix(4)), [0, 0, 0, UInt8(body.utf8.count)])
        XCTAssertEqual(String(decoding: bytes.dropFirst(4), as: UTF8.self), body)
    }

    func testDecoderReassemblesMessagesSplitAnywhere() throws {
        let messages = (1...5).map { RegistryMessage(type: "lookup", ["node_id": .integer(Int64($0))]) }
        let stream = try messages.flatMap { try RegistryFrame.encode($0) }
        for chunk in [1, 2, 3, 7, stream.count] {
            var decoder = RegistryFrameDecoder()
            var received: [RegistryMessage] = []
            for start in stride(from: 0, to: stream.count, by: chunk) {
                decoder.append(stream[start..<min(start + chunk, stream.count)])
                while case .message(let message)? = try decoder.next() { received.append(message) }
            }
            XCTAssertEqual(received, messages, "chunk \(chunk)")
            XCTAssertEqual(decoder.bufferedCount, 0)
        }
    }

    /// Frames are taken from the front without moving the rest each time; what is left over is
    /// exact whether frames are taken between appends or after many of them.
    func testManySmallFramesAndAPartialOneLeaveExactlyThePartialPending() throws {
        var decoder = LengthPrefixedFrames.Decoder(maxSize: 16, field: "test")
        var stream: [UInt8] = []
        for index in 0..<100_000 { stream += [0, 0, 0, 1, UInt8(truncatingIfNeeded: index)] }
        decoder.append(stream.prefix(250_003))
        var bodies: [[UInt8]] = []
        while let body = try decoder.next() { bodies.append(body) }
        XCTAssertEqual(bodies.count, 50_000)
        XCTAssertEqual(Array(decoder.pending), [0, 0, 0])
        decoder.append(stream.dropFirst(250_003))
        decoder.append([0, 0, 0, 2, 0xAA])
        while let body = try decoder.next() { bodies.append(body) }
        XCTAssertEqual(bodies.count, 100_000)
        XCTAssertEqual(bodies.map { $0.first! }, (0..<100_000).map { UInt8(truncatingIfNeeded: $0) })
        XCTAssertEqual(Array(decoder.pending), [0, 0, 0, 2, 0xAA])
        decoder.discard(3)
        XCTAssertEqual(decoder.bufferedCount, 2)
        decoder.append([0, 0])
        XCTAssertEqual(Array(decoder.pending), [2, 0xAA, 0, 0])
    }

    func testOversizedLengthIsRejectedBeforeBuffering() {
        var decoder = RegistryFrameDecoder()
        decoder.append([0x7F, 0xFF, 0xFF, 0xFF, 0x7B])
        XCTAssertThrowsError(try decoder.next()) { error in
            XCTAssertEqual(error as? WireError, .oversized(field: "registry frame", limit: 1 << 20, actual: 0x7FFF_FFFF))
        }
    }

    func testBinaryModePreambleIsReported() throws {
        var decoder = RegistryFrameDecoder()
        decoder.append(Array("PIL".utf8))
        XCTAssertNil(try decoder.next())
        decoder.append([UInt8(ascii: "T"), 0x01])
        XCTAssertEqual(try decoder.next(), .binaryModeRequested)
    }

    func testMessagesWithoutTypeOrNotObjectsAreReportedAndTheStreamGoesOn() throws {
        var decoder = RegistryFrameDecoder()
        for body in [#"{"node_id":1}"#, "[1]", #"{"type":5}"#, "not json"] {
            decoder.append([0, 0, 0, UInt8(body.utf8.count)] + Array(body.utf8))
        }
        decoder.append(try RegistryFrame.encode(RegistryMessage(type: "beacon_list")))
        for body in [#"{"node_id":1}"#, "[1]", #"{"type":5}"#, "not json"] {
            guard case .malformed? = try decoder.next() else { return XCTFail("\(body) should be malformed") }
        }
        XCTAssertEqual(try decoder.next(), .message(RegistryMessage(type: "beacon_list")))
        XCTAssertNil(try decoder.next())
    }

    func testTypedFieldAccessNamesTheField() throws {
        let message = try RegistryMessage(decoding: Array(#"{"type":"resolve","node_id":-1,"requester_id":"x"}"#.utf8))
        XCTAssertThrowsError(try message.nodeID("node_id")) { error in
            XCTAssertEqual(
                error as? WireError, .invalidValue(field: "resolve.node_id", reason: "must be a node id (0...4294967295)"))
        }
        XCTAssertThrowsError(try message.nodeID("requester_id"))
        XCTAssertThrowsError(try message.bool("public"))
    }
}
