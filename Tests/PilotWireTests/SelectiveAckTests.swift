import PilotWire
import XCTest

final class SelectiveAckTests: XCTestCase {
    /// "SACK", 2 blocks, then (1153, 2305) and (3457, 4609), big-endian.
    static let vector: [UInt8] = Array("SACK".utf8) + [2, 0, 0, 4, 0x81, 0, 0, 9, 1, 0, 0, 0x0D, 0x81, 0, 0, 0x12, 1]

    func testDecodesTheVector() throws {
        let selective = try SelectiveAck(decoding: Self.vector)
        XCTAssertEqual(selective.blocks, [.init(left: 1153, right: 2305), .init(left: 3457, right: 4609)])
    }

    func testEncodesTheVector() throws {
        let selective = try XCTUnwrap(SelectiveAck(blocks: [.init(left: 1153, right: 2305), .init(left: 3457, right: 4609)]))
        XCTAssertEqual(selective.encoded(), Self.vector)
    }

    func testKeepsAtMostFourBlocks() throws {
        let blocks = (0..<6).map { SelectiveAck.Block(left: UInt32($0) * 10, right: UInt32($0) * 10 + 5) }
        let selective = try XCTUnwrap(SelectiveAck(blocks: blocks))
        XCTAssertEqual(selective.blocks, Array(blocks.prefix(4)))
        XCTAssertEqual(try SelectiveAck(decoding: selective.encoded()), selective)
        XCTAssertNil(SelectiveAck(blocks: []))
    }

    func testIgnoresBytesAfterTheBlocks() throws {
        XCTAssertEqual(try SelectiveAck(decoding: Self.vector + [9, 9, 9]), try SelectiveAck(decoding: Self.vector))
    }

    func testRejectsOtherPayloadsWithoutTrapping() {
        var countZero = Self.vector
        countZero[4] = 0
        var countFive = Self.vector
        countFive[4] = 5
        for bytes in [[], Array("SAC".utf8), Array("SACK".utf8), Array("DATA and more".utf8), countZero, countFive, Array(Self.vector.dropLast())] {
            XCTAssertThrowsError(try SelectiveAck(decoding: bytes), "\(bytes)")
        }
    }
}
