import PilotWire
import XCTest

/// `command`'s request is exactly `json` on the wire (`{"args":...,"command":...}`, sorted
/// keys), and the request read back from its frame is `command` again.
func assertRequest<Command: ControlCommand>(
    _ command: Command, _ json: String, file: StaticString = #filePath, line: UInt = #line
) throws {
    let frame = try command.request.encoded()
    XCTAssertEqual(String(decoding: frame.dropFirst(4), as: UTF8.self), json, file: file, line: line)
    let request = try ControlRequest(decoding: frame.dropFirst(4))
    XCTAssertEqual(try Command(request), command, file: file, line: line)
}

/// `reply` encodes as exactly `json`, the data the host sends, and `json` decodes as `reply`.
func assertReply<Command: ControlCommand>(
    _ command: Command.Type, _ reply: Command.Reply, _ json: String, file: StaticString = #filePath, line: UInt = #line
) throws {
    XCTAssertEqual(reply.json.encodedString(), json, file: file, line: line)
    XCTAssertEqual(try Command.data(of: .ok(try JSON(parsing: json))), reply, file: file, line: line)
}

/// Decoding `json` as `Command`'s request fails with an `invalid_argument` naming the command
/// and `field`.
func assertRequestFails<Command: ControlCommand>(
    _ command: Command.Type, _ json: String, naming field: String, file: StaticString = #filePath, line: UInt = #line
) throws {
    let request = try ControlRequest(decoding: Array(json.utf8))
    XCTAssertThrowsError(try Command(request), file: file, line: line) { error in
        guard let failure = error as? ControlFailure else { return XCTFail("\(error)", file: file, line: line) }
        XCTAssertEqual(failure.code, .invalidArgument, file: file, line: line)
        XCTAssertTrue(failure.message.hasPrefix("\(Command.name): \(field) must be"), failure.message, file: file, line: line)
    }
}

final class ControlCommandTests: XCTestCase {
    func testArgumentlessCommandsSendAnEmptyObjectAndIgnoreArguments() throws {
        try assertRequest(IdentityControl.Info(), #"{"args":{},"command":"info"}"#)
        let request = try ControlRequest(decoding: Array(#"{"command":"info","args":{"x":1}}"#.utf8))
        XCTAssertEqual(try IdentityControl.Info(request), IdentityControl.Info())
    }

    func testARequestForAnotherCommandIsRefused() throws {
        XCTAssertThrowsError(try IdentityControl.Info(ControlRequest("peers"))) { error in
            XCTAssertEqual((error as? ControlFailure)?.message, "expected info, got peers")
        }
    }

    func testAnErrorReplyIsThrownAsItsFailure() {
        let failure = ControlFailure(.notFound, "no identity named x")
        XCTAssertThrowsError(try AdminControl.ShowIdentity.data(of: .error(failure))) { error in
            XCTAssertEqual(error as? ControlFailure, failure)
        }
    }

    func testAReplyWhoseDataIsNotAnObjectNamesTheCommand() {
        XCTAssertThrowsError(try IdentityControl.Info.data(of: .ok(.array([])))) { error in
            XCTAssertEqual(error as? ControlFailure, ControlFailure(.internalError, "info reply: data must be an object"))
        }
    }

    func testAMistypedReplyFieldNamesTheCommandAndTheField() {
        XCTAssertThrowsError(try TrustControl.Approve.data(of: .ok(["status": "approved", "node_id": "seven"]))) { error in
            XCTAssertEqual(error as? ControlFailure, ControlFailure(.internalError, "approve reply: node_id must be an integer"))
        }
        XCTAssertThrowsError(try TrustControl.Trusted.data(of: .ok(["trusted": [["node_id": 1]]]))) { error in
            XCTAssertEqual(
                error as? ControlFailure, ControlFailure(.internalError, "trust reply trusted[0]: public_key must be a string"))
        }
    }

    func testIntegersOutOfRangeAreRefusedNotTruncated() throws {
        try assertRequestFails(NetworkControl.Leave.self, #"{"command":"network-leave","args":{"network_id":65536}}"#, naming: "network_id")
        try assertRequestFails(DataControl.Send.self, #"{"command":"send","args":{"target":"a","port":0,"data":""}}"#, naming: "port")
        try assertRequestFails(DataControl.Send.self, #"{"command":"send","args":{"target":"a","port":1.5,"data":""}}"#, naming: "port")
    }

    func testNullIsAnAbsentOptionalField() throws {
        let request = try ControlRequest(decoding: Array(#"{"command":"ping","args":{"target":"x","count":null}}"#.utf8))
        XCTAssertEqual(try DataControl.Ping(request), DataControl.Ping(target: "x"))
    }

    func testPortsAndNetworksFromACommandLineAreCheckedAsTheHostChecksThem() {
        XCTAssertEqual(try ControlFields.port(7, of: "send"), 7)
        XCTAssertThrowsError(try ControlFields.port(70_000, of: "send")) { error in
            XCTAssertEqual((error as? ControlFailure)?.message, "send: port must be 1 to 65535")
        }
        XCTAssertThrowsError(try ControlFields.networkID(-1, of: "network-join")) { error in
            XCTAssertEqual((error as? ControlFailure)?.message, "network-join: network_id must be 0 to 65535")
        }
    }

    func testControlDataPassesItsFieldsThrough() throws {
        let json = #"{"hostname":"alice","node_id":7}"#
        let data = try IdentityControl.Find.data(of: .ok(try JSON(parsing: json)))
        XCTAssertEqual(data["node_id"], 7)
        XCTAssertEqual(data.json.encodedString(), json)
    }
}
