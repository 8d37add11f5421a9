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

    func testRegistryAnswersPassThroughWholeWithTypedViews() throws {
        let joined = #"{"network_id":3,"type":"join_network_ok"}"#
        let change = try NetworkControl.Join.data(of: .ok(try JSON(parsing: joined)))
        XCTAssertEqual(change.networkID, 3)
        XCTAssertEqual(change.json.encodedString(), joined)
        let listed = #"{"networks":[{"id":0,"join_rule":"open","members":2,"name":"backbone"}],"type":"list_networks_ok"}"#
        let listing = try NetworkControl.List.data(of: .ok(try JSON(parsing: listed)))
        XCTAssertEqual(listing.networks.first?.name, "backbone")
        XCTAssertEqual(listing.networks.first?.members, 2)
        XCTAssertEqual(listing.json.encodedString(), listed)
        let members = #"{"network_id":3,"nodes":[{"hostname":"alice","node_id":7,"public":false,"version":"pilot-host"}],"total":1,"truncated":false,"type":"list_nodes_ok"}"#
        let nodes = try NetworkControl.Members.data(of: .ok(try JSON(parsing: members)))
        XCTAssertEqual(nodes.nodes.first?.nodeID, 7)
        XCTAssertEqual(nodes.nodes.first?.isPublic, false)
        XCTAssertEqual(nodes.json.encodedString(), members)
    }

    func testAMistypedRegistryFieldIsNamed() {
        XCTAssertThrowsError(try NetworkControl.List.data(of: .ok(["networks": [["id": "zero"]]]))) {
            XCTAssertEqual(($0 as? ControlFailure)?.message, "network-list reply networks[0]: id must be an integer")
        }
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
