@testable import PilotClient
import PilotWire
import XCTest

/// The rule that gives each reply of the driver protocol, which has no request id, to its
/// request: by command code, an error reply to the oldest request sent, and a dial alone.
final class PendingRequestsTests: XCTestCase {
    private func request(_ id: UInt64, _ request: DriverRequest, _ reply: DriverCommand, _ order: PendingRequests.Order = .inOrder)
        -> PendingRequests.Request
    {
        PendingRequests.Request(id: id, frame: request.frame(), reply: reply, order: order, waiter: nil)
    }

    func testAReplyGoesToTheOldestRequestOfItsCodeAndAnErrorToTheOldestOfAll() {
        var table = PendingRequests()
        XCTAssertEqual(table.add(request(1, .info, .infoOK)).count, 1)
        XCTAssertEqual(table.add(request(2, .bind(port: 5000), .bindOK)).count, 1)
        XCTAssertEqual(table.add(request(3, .info, .infoOK)).count, 1)

        XCTAssertEqual(table.answer(DriverReply.port(.bindOK, 5000))?.request.id, 2)
        XCTAssertEqual(table.answer(DriverReply.error("info: no such identity"))?.request.id, 1)
        XCTAssertEqual(table.answer(DriverReply.json(.infoOK, [:]))?.request.id, 3)
        XCTAssertNil(table.answer(DriverReply.json(.infoOK, [:])), "a reply nobody waits for")
        XCTAssertNil(table.answer(DriverReply.error("late")), "an error nobody waits for")
    }

    func testADialGoesOutAloneAndHoldsBackWhatComesAfterItUntilAnswered() {
        var table = PendingRequests()
        XCTAssertEqual(table.add(request(1, .info, .infoOK)).count, 1)
        let dial = request(2, .dial(Address(node: 5), port: 7), .dialOK, .outOfOrder)
        XCTAssertEqual(table.add(dial), [], "the dial waits for the info's reply")
        XCTAssertEqual(table.add(request(3, .bind(port: 5000), .bindOK)), [], "and the bind behind the dial")

        let afterInfo = table.answer(DriverReply.json(.infoOK, [:]))
        XCTAssertEqual(afterInfo?.admitted, [dial.frame], "the dial goes out alone")
        // Its refusal is the dial's, not the bind's: the bind is not out yet.
        let afterDial = table.answer(DriverReply.error("dial: cannot reach 0:0000.0000.0005"))
        XCTAssertEqual(afterDial?.request.id, 2)
        XCTAssertEqual(afterDial?.admitted, [DriverRequest.bind(port: 5000).frame()])
    }

    func testAnAbandonedRequestStillTakesItsReply() {
        var table = PendingRequests()
        XCTAssertEqual(table.add(request(1, .info, .infoOK)).count, 1)
        XCTAssertEqual(table.add(request(2, .info, .infoOK)).count, 1)
        _ = table.abandon(1)
        // The first reply is the abandoned request's; the second caller gets the second.
        XCTAssertEqual(table.answer(DriverReply.json(.infoOK, ["first": true]))?.request.id, 1)
        XCTAssertEqual(table.answer(DriverReply.json(.infoOK, ["second": true]))?.request.id, 2)
    }

    func testAnAbandonedRequestThatHadNotGoneOutIsDropped() {
        var table = PendingRequests()
        XCTAssertEqual(table.add(request(1, .dial(Address(node: 5), port: 7), .dialOK, .outOfOrder)).count, 1)
        XCTAssertEqual(table.add(request(2, .info, .infoOK)), [])
        _ = table.abandon(2)
        XCTAssertEqual(table.answer(DriverReply.connection(.dialOK, 1))?.admitted, [], "nothing is left to send")
    }
}
