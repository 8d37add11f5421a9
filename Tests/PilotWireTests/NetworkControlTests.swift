import PilotWire
import XCTest

final class NetworkControlTests: XCTestCase {
    func testNetworkRequests() throws {
        try assertRequest(NetworkControl.List(), #"{"args":{},"command":"network-list"}"#)
        try assertRequest(NetworkControl.Members(networkID: 3), #"{"args":{"network_id":3},"command":"network-members"}"#)
        try assertRequest(
            NetworkControl.Members(networkID: 3, adminToken: "t"), #"{"args":{"admin_token":"t","network_id":3},"command":"network-members"}"#)
        try assertRequest(NetworkControl.Join(networkID: 3), #"{"args":{"network_id":3},"command":"network-join"}"#)
        try assertRequest(NetworkControl.Join(networkID: 3, token: "j"), #"{"args":{"network_id":3,"token":"j"},"command":"network-join"}"#)
        try assertRequest(NetworkControl.Leave(networkID: 3), #"{"args":{"network_id":3},"command":"network-leave"}"#)
        try assertRequest(
            NetworkControl.Create(network: "lab", joinRule: "open", adminToken: "t"),
            #"{"args":{"admin_token":"t","join_rule":"open","name":"lab"},"command":"network-create"}"#)
        try assertRequest(
            NetworkControl.Create(network: "lab", joinRule: "token", adminToken: "t", token: "j"),
            #"{"args":{"admin_token":"t","join_rule":"token","name":"lab","token":"j"},"command":"network-create"}"#)
        try assertRequestFails(NetworkControl.Create.self, #"{"command":"network-create","args":{"name":"lab"}}"#, naming: "admin_token")
        try assertRequestFails(NetworkControl.Join.self, #"{"command":"network-join","args":{}}"#, naming: "network_id")
    }

    func testRegistryAnswersPassThroughWhole() throws {
        let json = #"{"network_id":3,"type":"join_network_ok"}"#
        try assertReply(NetworkControl.Join.self, ControlData(["network_id": 3, "type": "join_network_ok"]), json)
    }

    func testBroadcast() throws {
        try assertRequest(
            NetworkControl.Broadcast(networkID: 3, port: 1000, data: "hi", adminToken: "t"),
            #"{"args":{"admin_token":"t","data":"hi","network_id":3,"port":1000},"command":"broadcast"}"#)
        try assertRequestFails(NetworkControl.Broadcast.self, #"{"command":"broadcast","args":{"network_id":3,"port":1000}}"#, naming: "data")
        try assertReply(
            NetworkControl.Broadcast.self, BroadcastSent(bytes: 2, networkID: 3, port: 1000), #"{"bytes":2,"network_id":3,"port":1000}"#)
    }
}
