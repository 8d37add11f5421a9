import PilotNet
import XCTest

final class SmallListTests: XCTestCase {
    /// Lists of every length up to 5, built by appending one by one, by concatenation in every
    /// split, and from a sequence: the same elements in the same order as an array.
    func testListsHoldWhatArraysHold() {
        for length in 0...5 {
            let expected = Array(0..<length)
            var appended = SmallList<Int>()
            for element in expected { appended.append(element) }
            XCTAssertEqual(Array(appended), expected)
            XCTAssertEqual(appended.count, length)
            XCTAssertEqual(appended.isEmpty, length == 0)
            XCTAssertEqual(appended.first, expected.first)
            XCTAssertEqual(SmallList(contentsOf: expected), appended)
            for split in 0...length {
                let left = SmallList(contentsOf: expected[..<split]), right = SmallList(contentsOf: expected[split...])
                XCTAssertEqual(Array(left + right), expected, "split at \(split) of \(length)")
                var added = left
                added += right
                XCTAssertEqual(Array(added), expected)
                XCTAssertEqual(Array(SmallList() + left + right), expected)
            }
        }
        XCTAssertEqual(Array([7, 8] as SmallList<Int>), [7, 8])
        XCTAssertEqual(Array(SmallList(9)), [9])
        XCTAssertNotEqual(SmallList(contentsOf: [1, 2]), SmallList(contentsOf: [1, 3]))
        XCTAssertEqual(SmallList(contentsOf: [1, 2]).description, "[1, 2]")
    }
}
