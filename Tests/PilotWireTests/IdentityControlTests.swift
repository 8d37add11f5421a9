import PilotWire
import XCTest

final class IdentityControlTests: XCTestCase {
    func testRecordRequests() throws {
        try assertRequest(IdentityControl.Info(), #"{"args":{},"command":"info"}"#)
        try assertRequest(IdentityControl.SetHostname(hostname: "alice"), #"{"args":{"hostname":"alice"},"command":"set-hostname"}"#)
        try assertRequest(IdentityControl.ClearHostname(), #"{"args":{},"command":"clear-hostname"}"#)
        try assertRequest(IdentityControl.SetTags(tags: ["a", "b"]), #"{"args":{"tags":["a","b"]},"command":"set-tags"}"#)
        try assertRequest(IdentityControl.ClearTags(), #"{"args":{},"command":"clear-tags"}"#)
        try assertRequest(IdentityControl.SetPublic(), #"{"args":{},"command":"set-public"}"#)
        try assertRequest(IdentityControl.SetPrivate(), #"{"args":{},"command":"set-private"}"#)
        try assertRequestFails(IdentityControl.SetHostname.self, #"{"command":"set-hostname","args":{}}"#, naming: "hostname")
        try assertRequestFails(IdentityControl.SetTags.self, #"{"command":"set-tags","args":{"tags":"a"}}"#, naming: "tags")
    }

    func testRecordCommandsAnswerWithTheIdentity() throws {
        try assertReply(IdentityControl.Info.self, AdminControlTests.alice, AdminControlTests.aliceJSON)
        try assertReply(IdentityControl.SetTags.self, AdminControlTests.alice, AdminControlTests.aliceJSON)
    }

    func testRegistryRequestsAndTheirAnswers() throws {
        try assertRequest(IdentityControl.Lookup(target: "0:0000.0000.0007"), #"{"args":{"target":"0:0000.0000.0007"},"command":"lookup"}"#)
        try assertRequest(IdentityControl.Find(hostname: "alice"), #"{"args":{"hostname":"alice"},"command":"find"}"#)
        try assertRequestFails(IdentityControl.Lookup.self, #"{"command":"lookup","args":{"target":7}}"#, naming: "target")
        try assertReply(
            IdentityControl.Find.self, ControlData(["hostname": "alice", "node_id": 7]), #"{"hostname":"alice","node_id":7}"#)
    }

    func testStandingRequestsAndTheirAnswers() throws {
        try assertRequest(IdentityControl.Deregister(), #"{"args":{},"command":"deregister"}"#)
        try assertRequest(IdentityControl.RotateKey(), #"{"args":{},"command":"rotate-key"}"#)
        try assertRequest(IdentityControl.PreferDirect(peer: "bob"), #"{"args":{"peer":"bob"},"command":"prefer-direct"}"#)
        try assertRequestFails(IdentityControl.PreferDirect.self, #"{"command":"prefer-direct","args":{}}"#, naming: "peer")
        // 1.18's keys, and ours.
        try assertReply(
            IdentityControl.PreferDirect.self,
            DirectPreferenceReport(nodeID: 5, hadTunnel: true, wasRelayActive: true, resolveError: "", directAttempt: true),
            #"{"direct_attempt":true,"had_tunnel":true,"node_id":5,"pila_pushed":false,"resolve_error":"","was_relay_active":true,"was_relay_pinned":false}"#)
        // Deregistered shows in the identity's description, only when it is.
        var gone = AdminControlTests.alice
        gone.isDeregistered = true
        try assertReply(
            IdentityControl.Info.self, gone, AdminControlTests.aliceJSON.replacingOccurrences(of: #""ephemeral""#, with: #""deregistered":true,"ephemeral""#))
    }

    func testATargetIsAnAddressANodeIdOrAHostname() {
        XCTAssertEqual(NodeTarget("1:0001.0000.0007"), .address(Address(network: 1, node: 7)))
        XCTAssertEqual(NodeTarget("7"), .address(Address(node: 7)))
        XCTAssertEqual(NodeTarget("alice"), .hostname("alice"))
        XCTAssertEqual(NodeTarget("4294967296"), .hostname("4294967296"))
    }
}
