import Foundation
@testable import PilotWire
import XCTest

final class CRC32Tests: XCTestCase {
    /// The catalogue's check value of CRC-32/ISO-HDLC (zlib's CRC), and the empty input.
    func testKnownAnswers() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32.Accumulator().value, 0)
    }

    /// Contiguous bytes go folded or forty at a time, braided; a lazy sequence goes byte by byte: the same CRC for
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

    /// Runs of 64 bytes or more are folded by carry-less multiplication where the processor has
    /// it: the same CRC as the tables alone, for every length to 1400, at every alignment, from
    /// a register already under way, and of the same bytes fed in pieces.
    func testFoldedEqualsTablesAlone() throws {
        let flags = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        #if arch(x86_64)
        XCTAssertEqual(CRC32.folds, flags.contains(" pclmulqdq"), "folding is used exactly where the processor multiplies without carries")
        #endif
        try XCTSkipUnless(CRC32.folds, "this processor has no carry-less multiplication: the tables do all (checked above)")
        var random = SplitMix64(seed: 0xF01D)
        let bytes = random.bytes(1400 + 16)
        func tables(_ bytes: ArraySlice<UInt8>, from start: CRC32.Accumulator = .init()) -> UInt32 {
            var state = start
            bytes.withUnsafeBytes { state.updateBraided($0) }
            return state.value
        }
        var underWay = CRC32.Accumulator()
        underWay.update(Array("pilot".utf8))
        for length in 0...1400 {
            for offset in [0, 1, 7, 8, 15] where length % 97 == 0 || length < 260 || offset == 0 {
                let slice = bytes[offset..<offset + length]
                XCTAssertEqual(CRC32.checksum(slice), tables(slice), "length \(length) at offset \(offset)")
                var continued = underWay
                continued.update(slice)
                XCTAssertEqual(continued.value, tables(slice, from: underWay), "length \(length) after 5 bytes")
            }
        }
        var pieces = CRC32.Accumulator()
        for range in [0..<100, 100..<164, 164..<1000, 1000..<1400] { pieces.update(bytes[range]) }
        XCTAssertEqual(pieces.value, tables(bytes[0..<1400]))
    }

    func testZerosFedWithoutBytesEqualZeroBytes() {
        var fed = CRC32.Accumulator()
        fed.update(Array("12345".utf8))
        fed.updateZeros(4)
        fed.update(Array("6789".utf8))
        XCTAssertEqual(fed.value, CRC32.checksum(Array("12345".utf8) + [0, 0, 0, 0] + Array("6789".utf8)))
    }
}
