import PilotWire
import XCTest

final class IdentitySocketCommandTests: XCTestCase {
    func testEveryCommandIsReadFromItsRequest() throws {
        let commands: [(any ControlCommand, IdentitySocketCommand)] = [
            (IdentityControl.Info(), .info(.init())),
            (IdentityControl.SetHostname(hostname: "a"), .setHostname(.init(hostname: "a"))),
            (IdentityControl.ClearHostname(), .clearHostname(.init())),
            (IdentityControl.SetTags(tags: ["a"]), .setTags(.init(tags: ["a"]))),
            (IdentityControl.ClearTags(), .clearTags(.init())),
            (IdentityControl.SetPublic(), .setPublic(.init())),
            (IdentityControl.SetPrivate(), .setPrivate(.init())),
            (IdentityControl.Lookup(target: "7"), .lookup(.init(target: "7"))),
            (IdentityControl.Find(hostname: "a"), .find(.init(hostname: "a"))),
            (TrustControl.Handshake(peer: "7", reason: "r"), .handshake(.init(peer: "7", reason: "r"))),
            (TrustControl.Approve(peer: "7"), .approve(.init(peer: "7"))),
            (TrustControl.Reject(peer: "7"), .reject(.init(peer: "7"))),
            (TrustControl.Untrust(peer: "7"), .untrust(.init(peer: "7"))),
            (TrustControl.Pending(), .pending(.init())),
            (TrustControl.Trusted(), .trusted(.init())),
            (NetworkControl.List(), .networkList(.init())),
            (NetworkControl.Members(networkID: 1), .networkMembers(.init(networkID: 1))),
            (NetworkControl.Join(networkID: 1), .networkJoin(.init(networkID: 1))),
            (NetworkControl.Leave(networkID: 1), .networkLeave(.init(networkID: 1))),
            (NetworkControl.Create(network: "n", adminToken: "t"), .networkCreate(.init(network: "n", adminToken: "t"))),
            (NetworkControl.Broadcast(networkID: 1, port: 2, data: "d"), .broadcast(.init(networkID: 1, port: 2, data: "d"))),
            (DataControl.Ping(target: "7"), .ping(.init(target: "7"))),
            (DataControl.Bench(target: "7"), .bench(.init(target: "7"))),
            (DataControl.Send(target: "7", port: 1, data: "d"), .send(.init(target: "7", port: 1, data: "d"))),
            (DataControl.Receive(port: 1), .receive(.init(port: 1))),
            (DataControl.Listen(port: 1), .listen(.init(port: 1))),
            (DataControl.SendDatagram(target: "7", port: 1, data: "d"), .sendDatagram(.init(target: "7", port: 1, data: "d"))),
            (DataControl.Connections(), .connections(.init())),
            (DataControl.Peers(), .peers(.init())),
            (MessageControl.SendMessage(target: "7", data: "d"), .sendMessage(.init(target: "7", data: "d"))),
            (MessageControl.Inbox(), .inbox(.init())),
            (MessageControl.Upload(upload: "u", size: 1, offset: 0, data: "YQ=="), .upload(.init(upload: "u", size: 1, offset: 0, data: "YQ=="))),
            (MessageControl.SendFile(target: "7", file: "f", upload: "u"), .sendFile(.init(target: "7", file: "f", upload: "u"))),
            (MessageControl.Received(), .received(.init())),
            (MessageControl.ReceivedChunk(id: 1, offset: 0), .receivedChunk(.init(id: 1, offset: 0))),
            (MessageControl.Subscribe(target: "7", topic: "t"), .subscribe(.init(target: "7", topic: "t"))),
            (MessageControl.Publish(target: "7", topic: "t", data: "d"), .publish(.init(target: "7", topic: "t", data: "d"))),
        ]
        for (command, expected) in commands {
            XCTAssertEqual(try IdentitySocketCommand(command.request), expected, "\(type(of: command).name)")
        }
        XCTAssertEqual(Set(commands.map { type(of: $0.0).name }).count, commands.count)
    }

    func testAnUnknownCommandIsRefusedByName() {
        XCTAssertThrowsError(try IdentitySocketCommand(ControlRequest("identity.list"))) {
            XCTAssertEqual($0 as? ControlFailure, ControlFailure(.invalidArgument, "unknown command: identity.list"))
        }
    }
}
