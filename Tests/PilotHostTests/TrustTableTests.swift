@testable import PilotHost
import PilotStore
import XCTest

/// An identity's trust table: one entry per peer, in order of peer node, however they came.
final class TrustTableTests: XCTestCase {
    func testEntriesStayInPeerOrderWithOnePerPeer() {
        var table = TrustTable()
        table[9] = TrustRecord(peerNode: 9, state: .pendingIn, updatedAt: 1)
        table[3] = TrustRecord(peerNode: 3, state: .pendingOut, updatedAt: 2)
        table[5] = TrustRecord(peerNode: 5, state: .rejected, updatedAt: 3)
        table[3] = TrustRecord(peerNode: 3, state: .trusted, updatedAt: 4)
        XCTAssertEqual(table.entries.map(\.peerNode), [3, 5, 9])
        XCTAssertEqual(table[3]?.state, .trusted)
        XCTAssertNil(table[4])

        table[5] = nil
        table[4] = nil
        XCTAssertEqual(table.entries.map(\.peerNode), [3, 9])
        table[3] = nil
        table[9] = nil
        XCTAssertTrue(table.entries.isEmpty)
        XCTAssertNil(table[9])
    }

    func testATableFromEntriesInAnyOrderKeepsTheLaterOfTwoForOnePeer() {
        let table = TrustTable([
            TrustRecord(peerNode: 7, state: .pendingIn, updatedAt: 1), TrustRecord(peerNode: 2, state: .trusted, updatedAt: 2),
            TrustRecord(peerNode: 7, state: .trusted, updatedAt: 3),
        ])
        XCTAssertEqual(table.entries.map(\.peerNode), [2, 7])
        XCTAssertEqual(table[7]?.updatedAt, 3)

        var ordered = TrustTable([TrustRecord(peerNode: 2, state: .trusted, updatedAt: 1), TrustRecord(peerNode: 5, state: .pendingIn, updatedAt: 2)])
        XCTAssertEqual(ordered.entries.map(\.peerNode), [2, 5])
        ordered[3] = TrustRecord(peerNode: 3, state: .pendingOut, updatedAt: 3)
        XCTAssertEqual(ordered.entries.map(\.peerNode), [2, 3, 5])
    }
}
