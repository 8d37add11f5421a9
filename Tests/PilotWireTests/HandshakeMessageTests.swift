import PilotTestSupport
import PilotWire
import XCTest

final class HandshakeMessageTests: XCTestCase {
    /// The accept a 1.18 daemon sent (docs/PROTOCOL.md §10.1).
    func testTheReferenceAcceptDecodes() throws {
        let text = #"{"type":"handshake_accept","node_id":1,"public_key":"+QP7u7M=","justification":"","signature":"a8ncBg==","reason":"","timestamp":1795541558}"#
        let message = try HandshakeMessage(decoding: Array(text.utf8))
        XCTAssertEqual(message.kind, .accept)
        XCTAssertEqual(message.node, 1)
        XCTAssertEqual(message.publicKey, "+QP7u7M=")
        XCTAssertEqual(message.timestamp, 1_795_541_558)
        XCTAssertEqual(message.signedText(receiver: 7), "handshake:1:7")
    }

    func testEveryKeyIsWrittenAndReadBack() throws {
        let message = HandshakeMessage(
            kind: .request, node: 42, publicKey: "a2V5", justification: "need \"data\"", signature: "c2ln", reason: "", timestamp: 1)
        let json = try JSON(parsing: message.encoded())
        XCTAssertEqual(Set(json.objectValue?.keys.map { $0 } ?? []), ["type", "node_id", "public_key", "justification", "signature", "reason", "timestamp"])
        XCTAssertEqual(try HandshakeMessage(decoding: message.encoded()), message)
    }

    func testMalformedMessagesAreTypedErrors() {
        let cases = [
            #"{"type":"handshake_hello","node_id":1,"timestamp":1}"#, #"{"type":"handshake_request","node_id":-1,"timestamp":1}"#,
            #"{"type":"handshake_request","node_id":1}"#, #"{"type":"handshake_request","node_id":1,"timestamp":1,"reason":5}"#,
            "[]", "", "{",
        ]
        for text in cases {
            XCTAssertThrowsError(try HandshakeMessage(decoding: Array(text.utf8)), text) { XCTAssertTrue($0 is WireError, text) }
        }
        XCTAssertThrowsError(try HandshakeMessage(decoding: [UInt8](repeating: 0x20, count: 5000)))
    }
}
