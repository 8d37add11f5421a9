import PilotTestSupport
import PilotWire
import XCTest

final class JSONTests: XCTestCase {
    func testParsesEveryKindOfValue() throws {
        let json = try JSON(parsing: #" {"a": [1, -2.5, true, false, null], "b": {"c": "d\n\u00e9\ud83d\ude00"}, "n": 1e3 } "#)
        XCTAssertEqual(json["a"], [1, .double(-2.5), true, false, nil])
        XCTAssertEqual(json["b"]?["c"]?.stringValue, "d\né😀")
        XCTAssertEqual(json["n"]?.integerValue, 1000)
    }

    func testLargeIntegersStayExact() throws {
        XCTAssertEqual(try JSON(parsing: "4294967295").integerValue, 4_294_967_295)
        XCTAssertEqual(try JSON(parsing: "-9223372036854775808"), .integer(.min))
    }

    func testEncodingIsCompactWithSortedKeys() {
        let json: JSON = ["type": "register", "node_id": 7, "public": false, "tags": ["a", "b"]]
        XCTAssertEqual(json.encodedString(), #"{"node_id":7,"public":false,"tags":["a","b"],"type":"register"}"#)
    }

    func testGoStyleHTMLEscaping() {
        let json: JSON = ["t": "<a&b>\u{2028}"]
        XCTAssertEqual(json.encodedString(escapeHTML: true), #"{"t":"\u003ca\u0026b\u003e\u2028"}"#)
        XCTAssertEqual(json.encodedString(), "{\"t\":\"<a&b>\u{2028}\"}")
        // Byte by byte: other three-byte characters starting E2 80 (…) stay as they are, and
        // so do longer ones; control characters are escaped; each string reads back whole.
        let mixed: JSON = ["t": "\u{2029}…é€😀\u{01}\u{1F}q\"\\/\n"]
        XCTAssertEqual(mixed.encodedString(escapeHTML: true), #"{"t":"\u2029…é€😀\u0001\u001fq\"\\/\n"}"#)
        XCTAssertEqual(try JSON(parsing: mixed.encoded(escapeHTML: true)), mixed)
        XCTAssertEqual(try JSON(parsing: mixed.encoded()), mixed)
    }

    func testControlCharactersAreEscaped() {
        XCTAssertEqual(JSON.string("\u{01}\t").encodedString(), #""\u0001\t""#)
    }

    /// Found by fuzzing the registry framing: `11018.0` re-encodes as `11018`, which parses back as
    /// an integer; the value must still equal itself.
    func testWholeDoublesEqualTheirIntegerAfterARoundTrip() throws {
        let value = try JSON(parsing: Array(#"{"type":"register","version":11018.0,"f":2.5,"big":1e300}"#.utf8))
        let again = try JSON(parsing: value.encoded())
        XCTAssertEqual(again, value)
        XCTAssertEqual(Set([JSON.integer(7), JSON.double(7.0)]).count, 1)
        XCTAssertNotEqual(JSON.integer(9_007_199_254_740_993), JSON.double(9_007_199_254_740_992))
        XCTAssertNotEqual(JSON.integer(2), JSON.double(2.5))
        XCTAssertNotEqual(JSON.integer(1), JSON.bool(true))
    }

    func testMalformedInputIsATypedError() {
        for bad in [
            "", "{", "[1,]", "{\"a\" 1}", "tru", "01x", "\"abc", "\"\\x\"", "{\"a\":1}}", "1.", "-", "\"\u{01}\"",
            "1e322", "-1e400",
            "[" + String(repeating: "[", count: 100) + String(repeating: "]", count: 101),
        ] {
            XCTAssertThrowsError(try JSON(parsing: bad), "accepted \(bad)")
        }
        XCTAssertThrowsError(try JSON(parsing: [0x22, 0xFF, 0x22]))  // not UTF-8
    }

    func testRandomValuesRoundTrip() throws {
        var random = SplitMix64(seed: 5)
        func value(_ depth: Int) -> JSON {
            switch Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &random) {
            case 0: return nil
            case 1: return .bool(.random(using: &random))
            case 2: return .integer(.random(in: .min ... .max, using: &random))
            case 3: return .double(Double(Int32.random(in: .min ... .max, using: &random)) + 0.5)
            case 4: return .string(String(decoding: random.bytes(.random(in: 0...12, using: &random)).map { $0 % 0x7F }, as: UTF8.self))
            case 5: return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in value(depth + 1) })
            default:
                return .object(Dictionary((0..<Int.random(in: 0...4, using: &random)).map { ("k\($0)", value(depth + 1)) }, uniquingKeysWith: { $1 }))
            }
        }
        for _ in 0..<2000 {
            let original = value(0)
            XCTAssertEqual(try JSON(parsing: original.encoded()), original)
        }
    }
}
