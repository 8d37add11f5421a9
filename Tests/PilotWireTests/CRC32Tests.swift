import PilotWire
import XCTest

final class CRC32Tests: XCTestCase {
    /// The catalogue's check value of CRC-32/ISO-HDLC (zlib's CRC), and the empty input.
    func testKnownAnswers() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32.Accumulator().value, 0)
    }

    /// Contiguous bytes go forty at a time, braided; a lazy sequence goes byte by byte: the same CRC for
    /// every length and split.
    func testBraidedEqualsByteByByte() {
        var random = SplitMix64(seed: 0xC2C)
        for length in Array(0..<200) + [1222, 1303, 4096] {
            let bytes = random.bytes(length)
            let bytewise = CRC32.checksum(bytes.lazy.map { $0 })
            XCTAssertEqual(CRC32.checksum(bytes), bytewise, "length \(length)")
            var split = CRC32.Accumulator()
            split.update(bytes.prefix(length / 3))
            split.update(bytes.dropFirst(length / 3))
            XCTAssertEqual(split.value, bytewise, "length \(length) split")
        }
    }

    func testZerosFedWithoutBytesEqualZeroBytes() {
        var fed = CRC32.Accumulator()
        fed.update(Array("12345".utf8))
        fed.updateZeros(4)
        fed.update(Array("6789".utf8))
        XCTAssertEqual(fed.value, CRC32.checksum(Array("12345".utf8) + [0, 0, 0, 0] + Array("6789".utf8)))
    }
}
