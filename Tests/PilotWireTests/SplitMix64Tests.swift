import PilotWire
import XCTest

final class SplitMix64Tests: XCTestCase {
    /// The reference implementation's first outputs for seed 0.
    func testFirstOutputsForSeedZero() {
        var random = SplitMix64(seed: 0)
        XCTAssertEqual(random.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(random.next(), 0x6E78_9E6A_A1B9_65F4)
        XCTAssertEqual(random.next(), 0x06C4_5D18_8009_454F)
    }

    func testTheSameSeedReplaysTheSameSequence() {
        var first = SplitMix64(seed: 42)
        var second = SplitMix64(seed: 42)
        var other = SplitMix64(seed: 43)
        let drawn = (0..<100).map { _ in first.next() }
        XCTAssertEqual(drawn, (0..<100).map { _ in second.next() })
        XCTAssertNotEqual(drawn, (0..<100).map { _ in other.next() })
        var a = SplitMix64(seed: 7)
        var b = SplitMix64(seed: 7)
        XCTAssertEqual(a.bytes(33), b.bytes(33))
        XCTAssertEqual(a.bytes(64).count, 64)
    }
}
