import PilotWire
import XCTest

final class TokenBucketTests: XCTestCase {
    func testAFullBucketAdmitsABurstOfItsCapacityThenRefuses() {
        var bucket = TokenBucket(capacity: 3, ratePerSecond: 1, now: 100)
        XCTAssertTrue(bucket.isFull(now: 100))
        for _ in 0..<3 { XCTAssertTrue(bucket.take(now: 100)) }
        XCTAssertFalse(bucket.canTake(now: 100))
        XCTAssertFalse(bucket.take(now: 100))
        XCTAssertFalse(bucket.isFull(now: 100))
    }

    func testTokensComeBackAtTheRate() {
        var bucket = TokenBucket(capacity: 2, ratePerSecond: 4, now: 0)
        XCTAssertTrue(bucket.take(now: 0))
        XCTAssertTrue(bucket.take(now: 0))
        // A quarter of a second makes one token; an eighth makes half of one.
        XCTAssertFalse(bucket.take(now: 0.125))
        XCTAssertEqual(bucket.available(now: 0.25), 1, accuracy: 1e-9)
        XCTAssertTrue(bucket.canTake(now: 0.25))
        XCTAssertTrue(bucket.take(now: 0.25))
        XCTAssertFalse(bucket.take(now: 0.25))
        XCTAssertTrue(bucket.isFull(now: 0.75))
    }

    func testRefillStopsAtCapacity() {
        var bucket = TokenBucket(capacity: 2, ratePerSecond: 10, now: 0)
        XCTAssertEqual(bucket.available(now: 3600), 2)
        XCTAssertTrue(bucket.take(now: 3600))
        XCTAssertTrue(bucket.take(now: 3600))
        XCTAssertFalse(bucket.take(now: 3600))
    }

    func testCanTakeTakesNothing() {
        var bucket = TokenBucket(capacity: 1, ratePerSecond: 1, now: 0)
        XCTAssertTrue(bucket.canTake(now: 0))
        XCTAssertTrue(bucket.canTake(now: 0))
        XCTAssertTrue(bucket.take(now: 0))
        XCTAssertFalse(bucket.canTake(now: 0))
    }

    func testTimeGoingBackwardsAddsNoTokensLater() {
        var bucket = TokenBucket(capacity: 1, ratePerSecond: 1, now: 10)
        XCTAssertTrue(bucket.take(now: 10))
        XCTAssertFalse(bucket.take(now: 5))
        // Counted from 10, not from 5: half a token by 10.5.
        XCTAssertFalse(bucket.take(now: 10.5))
        XCTAssertTrue(bucket.take(now: 11))
    }

    func testAFractionalRateAdmitsAfterItsInterval() {
        var bucket = TokenBucket(capacity: 3, ratePerSecond: 3.0 / 5.0, now: 0)
        for _ in 0..<3 { XCTAssertTrue(bucket.take(now: 0)) }
        XCTAssertFalse(bucket.take(now: 1.6))
        XCTAssertTrue(bucket.take(now: 1.7))
    }
}
