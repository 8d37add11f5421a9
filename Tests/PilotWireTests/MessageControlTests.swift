import PilotWire
import XCTest

final class MessageControlTests: XCTestCase {
    func testMessageRequests() throws {
        try assertRequest(
            MessageControl.SendMessage(target: "bob", data: "hi", type: .text),
            #"{"args":{"data":"hi","target":"bob","type":"text"},"command":"send-message"}"#)
        try assertRequest(MessageControl.SendMessage(target: "bob", data: "{}"), #"{"args":{"data":"{}","target":"bob"},"command":"send-message"}"#)
        try assertRequest(MessageControl.Inbox(clear: false), #"{"args":{"clear":false},"command":"inbox"}"#)
        try assertRequestFails(MessageControl.Inbox.self, #"{"command":"inbox","args":{"clear":1}}"#, naming: "clear")
    }

    func testAnUnknownMessageTypeIsRefusedByName() throws {
        let request = try ControlRequest(decoding: Array(#"{"command":"send-message","args":{"target":"b","data":"x","type":"xml"}}"#.utf8))
        XCTAssertThrowsError(try MessageControl.SendMessage(request)) {
            XCTAssertEqual($0 as? ControlFailure, ControlFailure(.invalidArgument, "send-message: type must be text, json or binary, not xml"))
        }
    }

    func testSendMessageAnswersAsTheHostDoes() throws {
        try assertReply(
            MessageControl.SendMessage.self,
            MessageSent(target: "bob", to: "0:0000.0000.0007", type: "text", bytes: 2, ack: "ACK TEXT 2 bytes", messageID: "ab"),
            #"{"ack":"ACK TEXT 2 bytes","bytes":2,"message_id":"ab","reused":false,"seq":0,"tagged":true,"target":"bob","to":"0:0000.0000.0007","type":"text"}"#)
    }

    func testFileRequestsAndTheirReplies() throws {
        try assertRequest(
            MessageControl.Upload(upload: "u1", size: 3, offset: 0, data: "YWJj"),
            #"{"args":{"data":"YWJj","offset":0,"size":3,"upload":"u1"},"command":"upload"}"#)
        try assertReply(MessageControl.Upload.self, UploadReceived(received: 3), #"{"received":3}"#)
        try assertRequest(
            MessageControl.SendFile(target: "bob", file: "a.txt", upload: "u1"),
            #"{"args":{"name":"a.txt","target":"bob","upload":"u1"},"command":"send-file"}"#)
        try assertRequest(MessageControl.Received(clear: true), #"{"args":{"clear":true},"command":"received"}"#)
        try assertRequest(MessageControl.ReceivedChunk(id: 4, offset: 524_288), #"{"args":{"id":4,"offset":524288},"command":"received-chunk"}"#)
        try assertReply(MessageControl.ReceivedChunk.self, FileChunk(offset: 0, data: "YWJj"), #"{"data":"YWJj","offset":0}"#)
        try assertRequestFails(MessageControl.Upload.self, #"{"command":"upload","args":{"upload":"u1","size":3,"data":""}}"#, naming: "offset")
    }

    func testEventRequests() throws {
        try assertRequest(
            MessageControl.Subscribe(target: "bob", topic: "*", count: 1, timeout: 30),
            #"{"args":{"count":1,"target":"bob","timeout":30,"topic":"*"},"command":"subscribe"}"#)
        try assertRequest(
            MessageControl.Publish(target: "bob", topic: "t", data: "x"), #"{"args":{"data":"x","target":"bob","topic":"t"},"command":"publish"}"#)
        try assertRequestFails(MessageControl.Publish.self, #"{"command":"publish","args":{"target":"bob","data":"x"}}"#, naming: "topic")
    }
}
