import PilotWire
import XCTest

final class MessageRepliesTests: XCTestCase {
    func testSentFilesAndEventsAreWhatTheHostSends() throws {
        try assertReply(
            MessageControl.SendFile.self, FileSent(target: "bob", to: "0:0000.0000.0007", name: "a.txt", bytes: 3, ack: "ACK FILE a.txt"),
            #"{"ack":"ACK FILE a.txt","bytes":3,"name":"a.txt","target":"bob","to":"0:0000.0000.0007"}"#)
        try assertReply(
            MessageControl.Publish.self, EventPublished(target: "0:0000.0000.0007", topic: "t", bytes: 1),
            #"{"bytes":1,"target":"0:0000.0000.0007","topic":"t"}"#)
        try assertReply(
            MessageControl.Subscribe.self,
            EventsReceived(target: "0:0000.0000.0007", topic: "*", events: [.init(topic: "t", data: "x", bytes: 1)], timeout: false),
            #"{"events":[{"bytes":1,"data":"x","topic":"t"}],"target":"0:0000.0000.0007","timeout":false,"topic":"*"}"#)
    }

    func testTheInboxListsTextAndBinaryMessages() throws {
        let text = InboxListing.Message(
            id: "TEXT-1", type: "TEXT", from: "0:0000.0000.0007", bytes: 2, receivedAt: "2026-12-04T13:00:00.000Z", text: "hi",
            preview: "hi", messageID: "ab")
        let binary = InboxListing.Message(
            id: "BINARY-2", type: "BINARY", from: "0:0000.0000.0007", bytes: 1, receivedAt: "2026-12-04T13:00:01.000Z", base64: "AA==",
            replyTo: "ab")
        try assertReply(
            MessageControl.Inbox.self, InboxListing(messages: [text, binary]),
            #"{"dir":null,"messages":[{"bytes":2,"data":"hi","data_encoding":"utf8","from":"0:0000.0000.0007","id":"TEXT-1","message_id":"ab","preview":"hi","received_at":"2026-12-04T13:00:00.000Z","type":"TEXT"},{"bytes":1,"data_b64":"AA==","data_encoding":"base64","from":"0:0000.0000.0007","id":"BINARY-2","received_at":"2026-12-04T13:00:01.000Z","reply_to":"ab","type":"BINARY"}],"shown":2,"total":2}"#)
        try assertReply(MessageControl.Inbox.self, InboxListing(messages: []), #"{"dir":null,"messages":[],"shown":0,"total":0}"#)
    }

    func testReceivedFilesAndWherePilotctlSavedThem() throws {
        let file = ReceivedFiles.File(id: 4, name: "a.txt", from: "0:0000.0000.0007", bytes: 3, receivedAt: "2026-12-04T13:00:00.000Z")
        try assertReply(
            MessageControl.Received.self, ReceivedFiles(files: [file]),
            #"{"dir":null,"files":[{"bytes":3,"from":"0:0000.0000.0007","id":4,"modified":"2026-12-04T13:00:00.000Z","name":"a.txt","path":null,"#
                + #""received_at":"2026-12-04T13:00:00.000Z"}],"shown":1,"total":1}"#)
        var saved = file
        saved.savedTo = "/tmp/a.txt"
        try assertReply(
            MessageControl.Received.self, ReceivedFiles(files: [saved], directory: "/tmp"),
            #"{"dir":"/tmp","files":[{"bytes":3,"from":"0:0000.0000.0007","id":4,"modified":"2026-12-04T13:00:00.000Z","name":"a.txt","#
                + #""path":"/tmp/a.txt","received_at":"2026-12-04T13:00:00.000Z","saved_to":"/tmp/a.txt"}],"shown":1,"total":1}"#)
    }
}
