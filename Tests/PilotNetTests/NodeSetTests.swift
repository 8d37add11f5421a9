@testable import PilotNet
import XCTest

/// Node ids as a resting identity's peers are kept: in order, without repeats, one inline.
final class NodeSetTests: XCTestCase {
    func testIdsAreKeptInOrderWithoutRepeats() {
        var set = NodeSet([9, 3, 9, 5, 3])
        XCTAssertEqual(Array(set), [3, 5, 9])
        XCTAssertFalse(set.insert(5))
        XCTAssertTrue(set.insert(4))
        XCTAssertEqual(Array(set), [3, 4, 5, 9])
        XCTAssertTrue(set.contains(9))
        XCTAssertFalse(set.contains(8))
        XCTAssertFalse(set.remove(8))
        XCTAssertTrue(set.remove(3))
        XCTAssertEqual(Array(set), [4, 5, 9])
    }

    func testOneIdGoingAndComingLeavesTheSameSet() {
        var set: NodeSet = [7]
        XCTAssertEqual(Array(set), [7])
        XCTAssertTrue(set.insert(2))
        XCTAssertEqual(Array(set), [2, 7])
        XCTAssertTrue(set.remove(2))
        XCTAssertEqual(set, [7])
        XCTAssertTrue(set.remove(7))
        XCTAssertTrue(set.isEmpty)
        XCTAssertEqual(set, NodeSet())
        XCTAssertEqual(Array(set), [])
        XCTAssertFalse(set.remove(7))
        XCTAssertTrue(set.insert(7))
        XCTAssertEqual(set, [7])
        XCTAssertFalse(set.isEmpty)
    }

    func testACopyIsNotChangedWithTheOriginal() {
        var set: NodeSet = [1, 2, 3]
        let copy = set
        set.insert(4)
        set.remove(1)
        XCTAssertEqual(Array(copy), [1, 2, 3])
        XCTAssertEqual(Array(set), [2, 3, 4])
    }
}
