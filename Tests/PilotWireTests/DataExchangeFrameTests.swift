import PilotTestSupport
import PilotWire
import XCTest

final class DataExchangeFrameTests: XCTestCase {
    /// The tagged text frame 1.18's send-message wrote (docs/PROTOCOL.md §11.2): type 10, a
    /// 49-byte meta, inner type 1.
    func testTheTaggedLayoutOf118() throws {
        let id = String(repeating: "ab", count: 16)
        let frame = DataExchangeFrame.tagged(DataExchangeFrame(kind: .text, payload: Array("hello".utf8)), messageID: id)
        let bytes = frame.encoded()
        XCTAssertEqual(Array(bytes.prefix(4)), [0, 0, 0, 10])
        XCTAssertEqual(Array(bytes[8..<10]), [0, 49], "meta {\"message_id\":\"<32 hex>\"} is 49 bytes")
        XCTAssertEqual(Array(bytes[59..<63]), [0, 0, 0, 1])
        let (inner, messageID, replyTo) = try frame.untagged()
        XCTAssertEqual(inner, DataExchangeFrame(kind: .text, payload: Array("hello".utf8)))
        XCTAssertEqual(messageID, id)
        XCTAssertNil(replyTo)
        XCTAssertEqual(DataExchangeFrame.Kind(rawValue: 77).description, "UNKNOWN(77)")
    }

    func testTheDecoderReassemblesFramesSplitAnywhereAndRefusesOversized() throws {
        var random = SplitMix64(seed: 1001)
        let frames = (0..<20).map { DataExchangeFrame(kind: .binary, payload: random.bytes($0 * 37)) }
        let stream = frames.flatMap { $0.encoded() }
        for chunk in [1, 3, 64, stream.count] {
            var decoder = DataExchangeFrame.Decoder()
            var received: [DataExchangeFrame] = []
            for start in stride(from: 0, to: stream.count, by: chunk) {
                decoder.append(stream[start..<min(start + chunk, stream.count)])
                while let frame = try decoder.next() { received.append(frame) }
            }
            XCTAssertEqual(received, frames, "chunk \(chunk)")
        }
        var decoder = DataExchangeFrame.Decoder(maxPayload: 100)
        decoder.append([0, 0, 0, 1, 0, 0, 0, 101])
        XCTAssertThrowsError(try decoder.next())
    }

    func testMalformedTaggedFramesAreTypedErrors() {
        for payload: [UInt8] in [[], [0], [0, 5, 0x7B], [0, 2, 0x5B, 0x5D, 0, 0, 0, 1], [0, 2, 0x7B, 0x7D, 0, 0], [0, 2, 0x7B, 0x7D, 0, 0, 0, 10]] {
            XCTAssertThrowsError(try DataExchangeFrame(kind: .tagged, payload: payload).untagged(), "\(payload)") {
                XCTAssertTrue($0 is WireError)
            }
        }
    }
}
