import PilotWire
import XCTest

final class DataControlTests: XCTestCase {
    func testProbeRequests() throws {
        try assertRequest(
            DataControl.Ping(target: "bob", count: 4, timeout: 10), #"{"args":{"count":4,"target":"bob","timeout":10},"command":"ping"}"#)
        try assertRequest(DataControl.Ping(target: "bob"), #"{"args":{"target":"bob"},"command":"ping"}"#)
        try assertRequest(DataControl.Bench(target: "bob", megabytes: 2), #"{"args":{"megabytes":2,"target":"bob"},"command":"bench"}"#)
        try assertRequestFails(DataControl.Ping.self, #"{"command":"ping","args":{"target":"bob","count":"4"}}"#, naming: "count")
    }

    func testStreamAndDatagramRequests() throws {
        try assertRequest(
            DataControl.Send(target: "bob", port: 1000, data: "hi", timeout: 5),
            #"{"args":{"data":"hi","port":1000,"target":"bob","timeout":5},"command":"send"}"#)
        try assertRequest(
            DataControl.Receive(port: 80, count: 1, timeout: 30), #"{"args":{"count":1,"port":80,"timeout":30},"command":"recv"}"#)
        try assertRequest(
            DataControl.Listen(port: 80, count: 2, timeout: 30), #"{"args":{"count":2,"port":80,"timeout":30},"command":"listen"}"#)
        try assertRequest(
            DataControl.SendDatagram(target: "bob", port: 80, data: "x"), #"{"args":{"data":"x","port":80,"target":"bob"},"command":"send-datagram"}"#)
        try assertRequest(DataControl.Connections(), #"{"args":{},"command":"connections"}"#)
        try assertRequest(DataControl.Peers(), #"{"args":{},"command":"peers"}"#)
        try assertRequestFails(DataControl.Listen.self, #"{"command":"listen","args":{}}"#, naming: "port")
        try assertRequestFails(DataControl.SendDatagram.self, #"{"command":"send-datagram","args":{"port":80,"data":"x"}}"#, naming: "target")
    }
}
