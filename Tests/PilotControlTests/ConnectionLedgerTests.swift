@testable import PilotControl
import XCTest

final class ConnectionLedgerTests: XCTestCase {
    private func ledger(perUser: Int = 64) -> ConnectionLedger {
        ConnectionLedger(limits: ConnectionLimits(perUser: perUser))
    }

    /// What `admit` said: nil when admitted, else the refusal.
    private func refusal(_ ledger: inout ConnectionLedger, uid: UInt32, listener: UInt64, budget: Int) -> ConnectionLedger.Refusal? {
        do throws(ConnectionLedger.Refusal) {
            try ledger.admit(uid: uid, listener: listener, budget: budget)
            return nil
        } catch {
            return error
        }
    }

    func testOneUserHoldsNoMoreThanItsLimitAcrossEverySocket() {
        var ledger = ledger(perUser: 3)
        ledger.addListener(1, reserved: 1)
        ledger.addListener(2, reserved: 1)
        for listener: UInt64 in [1, 2, 2] { XCTAssertNil(refusal(&ledger, uid: 1000, listener: listener, budget: 100)) }
        XCTAssertEqual(refusal(&ledger, uid: 1000, listener: 1, budget: 100), .userAtLimit(held: 3))
        XCTAssertNil(refusal(&ledger, uid: 1001, listener: 1, budget: 100), "another user is not held to the first one's count")
        ledger.release(uid: 1000, listener: 2)
        XCTAssertNil(refusal(&ledger, uid: 1000, listener: 1, budget: 100), "a closed connection gives its place back")
    }

    func testAListenersReserveIsAdmittedWhenTheSharedBudgetIsSpent() {
        var ledger = ledger()
        ledger.addListener(1, reserved: 1)
        ledger.addListener(2, reserved: 2)
        XCTAssertEqual(ledger.committed, 3, "reserves are committed from the start")
        // A flood on listener 1 spends the budget of 6 beyond the reserves.
        var admitted = 0
        while admitted < 100, refusal(&ledger, uid: 1000, listener: 1, budget: 6) == nil { admitted += 1 }
        XCTAssertEqual(admitted, 4, "its reserve and the 3 descriptors not promised to anyone")
        XCTAssertEqual(refusal(&ledger, uid: 1001, listener: 1, budget: 6), .hostFull(committed: 6))
        // Listener 2's two connections are still there for its owner.
        XCTAssertNil(refusal(&ledger, uid: 1002, listener: 2, budget: 6))
        XCTAssertNil(refusal(&ledger, uid: 1002, listener: 2, budget: 6))
        XCTAssertEqual(refusal(&ledger, uid: 1002, listener: 2, budget: 6), .hostFull(committed: 6))
    }

    func testAClosedListenerGivesBackItsUnusedReserveAndItsConnectionsStillCount() {
        var ledger = ledger()
        ledger.addListener(1, reserved: 2)
        XCTAssertNil(refusal(&ledger, uid: 7, listener: 1, budget: 10))
        ledger.removeListener(1)
        XCTAssertEqual(ledger.committed, 1, "the open connection, not the unused reserve")
        ledger.release(uid: 7, listener: 1)
        XCTAssertEqual(ledger.committed, 0)
        XCTAssertEqual(ledger.open, 0)
    }
}
