import PilotAppStore
import PilotWire
import XCTest

final class AppEnvelopeTests: XCTestCase {
    func testARequestFrameCarriesTheOfficialMembers() throws {
        let request = AppEnvelope.request(method: "tides.next", payload: ["port": "brest"])
        XCTAssertEqual(request.requestID.count, 16)
        let frame = try request.frame()
        let length = try AppEnvelope.bodyLength(prefix: frame.prefix(4))
        XCTAssertEqual(length, frame.count - 4)
        let json = try JSON(parsing: frame.dropFirst(4))
        XCTAssertEqual(json["type"], "req")
        XCTAssertEqual(json["method"], "tides.next")
        XCTAssertEqual(json["payload"], ["port": "brest"])
        XCTAssertNil(json["app_id"])
        XCTAssertNil(json["error"])
        XCTAssertEqual(try AppEnvelope(decoding: frame.dropFirst(4)), request)
    }

    func testAnAppsReplyAndErrorDecode() throws {
        let reply = try AppEnvelope(decoding: Array(#"{"type":"reply","req_id":"0011223344556677","payload":{"ok":true}}"#.utf8))
        XCTAssertEqual(reply.kind, .reply)
        XCTAssertEqual(reply.payload, ["ok": true])
        let error = try AppEnvelope(decoding: Array(#"{"type":"err","req_id":"0011223344556677","error":"method not found: x"}"#.utf8))
        XCTAssertEqual(error.kind, .error)
        XCTAssertEqual(error.error, "method not found: x")
    }

    func testBadFramesAreRefused() {
        XCTAssertThrowsError(try AppEnvelope.bodyLength(prefix: [0, 0, 0, 0]))
        XCTAssertThrowsError(try AppEnvelope.bodyLength(prefix: [0, 0x10, 0, 1]))
        XCTAssertThrowsError(try AppEnvelope.bodyLength(prefix: [0, 0]))
        XCTAssertEqual(try AppEnvelope.bodyLength(prefix: [0, 0x10, 0, 0]), 1 << 20)
        XCTAssertThrowsError(try AppEnvelope(decoding: Array(#"{"type":"maybe","req_id":"1"}"#.utf8)))
        XCTAssertThrowsError(try AppEnvelope(decoding: Array("nope".utf8)))
        let huge = AppEnvelope.request(method: "a.b", payload: .string(String(repeating: "x", count: 1 << 20)))
        XCTAssertThrowsError(try huge.frame())
    }
}
