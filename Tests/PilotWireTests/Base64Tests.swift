import PilotWire
import XCTest

final class Base64Tests: XCTestCase {
    /// RFC 4648 §10's test vectors, both ways.
    func testRFC4648Vectors() throws {
        let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(Array(plain.utf8)), encoded)
            XCTAssertEqual(try Base64.decode(encoded), Array(plain.utf8))
        }
    }

    func testTheStandardAlphabetRoundTripsEveryByte() throws {
        XCTAssertEqual(Base64.encode([0xFF, 0x00]), "/wA=")
        XCTAssertEqual(Base64.encode([0xFB, 0xFF]), "+/8=")
        var random = SplitMix64(seed: 64)
        for length in 0..<100 {
            let bytes = random.bytes(length)
            let text = Base64.encode(bytes)
            XCTAssertEqual(text.utf8.count, (length + 2) / 3 * 4)
            XCTAssertEqual(try Base64.decode(text), bytes)
        }
        let every = (0...255).map { UInt8($0) }
        XCTAssertEqual(try Base64.decode(Base64.encode(every)), every)
    }

    /// Only the one canonical form of some bytes decodes: no missing padding, no URL-safe
    /// alphabet, no whitespace, no padding inside, no stray bits.
    func testEverythingButTheCanonicalFormIsRejected() {
        for bad in [
            "/wA", "Zg", "Zg=", "Zm9vYg", "_wA=", "-wA=", "Zm9v\n", " Zm9v", "Zm9v ", "Zg==Zg==", "Z===", "====", "=Zg=",
            "Zm=v", "Zh==", "Zm9=", "Zm8 ", "Zg==\0", "Zé==", "A",
        ] {
            XCTAssertThrowsError(try Base64.decode(bad), bad) { error in
                guard case .invalidValue(field: "base64", _)? = error as? WireError else { return XCTFail("\(bad): \(error)") }
            }
        }
    }
}
