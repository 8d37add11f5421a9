import PilotCrypto
import XCTest

final class ReplayWindowTests: XCTestCase {
    func testInOrderAndReorderedWithinTheWindowAreAccepted() {
        var window = ReplayWindow()
        for counter: UInt64 in [1, 2, 3, 10, 5, 4, 9] {
            XCTAssertEqual(window.accept(prefix: 1, counter: counter), .accepted, "\(counter)")
        }
        XCTAssertEqual(window.accept(prefix: 1, counter: 5), .duplicate)
        XCTAssertEqual(window.accept(prefix: 1, counter: 10), .duplicate)
    }

    func testCountersMoreThan256BehindAreTooOld() {
        var window = ReplayWindow()
        XCTAssertEqual(window.accept(prefix: 1, counter: 1000), .accepted)
        XCTAssertEqual(window.accept(prefix: 1, counter: 745), .accepted)  // 255 behind
        XCTAssertEqual(window.accept(prefix: 1, counter: 744), .tooOld)  // 256 behind
        XCTAssertEqual(window.check(prefix: 1, counter: 744), .tooOld)
    }

    func testSeenBitsSurviveSlidesAcrossWords() {
        var window = ReplayWindow()
        for counter: UInt64 in stride(from: 1, through: 200, by: 3) { _ = window.accept(prefix: 1, counter: counter) }
        XCTAssertEqual(window.accept(prefix: 1, counter: 250), .accepted)
        for counter: UInt64 in stride(from: 1, through: 200, by: 3) where 250 - counter < 256 {
            XCTAssertEqual(window.check(prefix: 1, counter: counter), .duplicate, "\(counter)")
            XCTAssertEqual(window.check(prefix: 1, counter: counter + 1), .accepted, "\(counter + 1)")
        }
    }

    func testCounterZeroIsNeverValid() {
        var window = ReplayWindow()
        XCTAssertEqual(window.accept(prefix: 1, counter: 0), .invalidCounter)
    }

    func testANewPrefixIsANewEpochAndTheOldOneIsStillJudged() {
        var window = ReplayWindow()
        XCTAssertEqual(window.accept(prefix: 0xAAAA, counter: 1), .accepted)
        XCTAssertEqual(window.accept(prefix: 0xAAAA, counter: 2), .accepted)
        // The sender re-derived: counter 1 again under a new prefix is fine.
        XCTAssertEqual(window.accept(prefix: 0xBBBB, counter: 1), .accepted)
        XCTAssertEqual(window.currentPrefix, 0xBBBB)
        // A late frame of the old epoch is judged in its own window.
        XCTAssertEqual(window.accept(prefix: 0xAAAA, counter: 3), .accepted)
        XCTAssertEqual(window.accept(prefix: 0xAAAA, counter: 2), .duplicate)
        XCTAssertEqual(window.accept(prefix: 0xBBBB, counter: 1), .duplicate)
    }

    func testFourOlderEpochsAreKeptAndTheLeastRecentlyUsedEvicted() {
        var window = ReplayWindow()
        for prefix: UInt32 in 1...5 { XCTAssertEqual(window.accept(prefix: prefix, counter: 1), .accepted) }
        // Epochs 1...4 are retained (older), 5 is newest: all remember counter 1.
        for prefix: UInt32 in 1...5 { XCTAssertEqual(window.check(prefix: prefix, counter: 1), .duplicate, "\(prefix)") }
        XCTAssertEqual(window.accept(prefix: 1, counter: 2), .accepted)  // touch epoch 1
        XCTAssertEqual(window.accept(prefix: 6, counter: 1), .accepted)  // evicts the LRU: epoch 2
        XCTAssertEqual(window.check(prefix: 2, counter: 1), .accepted, "epoch 2 should have been forgotten")
        XCTAssertEqual(window.check(prefix: 1, counter: 1), .duplicate)
        XCTAssertEqual(window.check(prefix: 5, counter: 1), .duplicate)
    }

    func testCheckDoesNotRecord() {
        var window = ReplayWindow()
        XCTAssertEqual(window.check(prefix: 1, counter: 5), .accepted)
        XCTAssertEqual(window.accept(prefix: 1, counter: 5), .accepted)
    }
}
