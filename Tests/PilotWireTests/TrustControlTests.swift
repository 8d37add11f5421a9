import PilotWire
import XCTest

final class TrustControlTests: XCTestCase {
    func testTrustRequests() throws {
        try assertRequest(TrustControl.Handshake(peer: "bob", reason: ""), #"{"args":{"peer":"bob","reason":""},"command":"handshake"}"#)
        try assertRequest(TrustControl.Handshake(peer: "7"), #"{"args":{"peer":"7"},"command":"handshake"}"#)
        try assertRequest(TrustControl.Approve(peer: "7"), #"{"args":{"peer":"7"},"command":"approve"}"#)
        try assertRequest(TrustControl.Reject(peer: "7", reason: "no"), #"{"args":{"peer":"7","reason":"no"},"command":"reject"}"#)
        try assertRequest(TrustControl.Untrust(peer: "7"), #"{"args":{"peer":"7"},"command":"untrust"}"#)
        try assertRequest(TrustControl.Pending(), #"{"args":{},"command":"pending"}"#)
        try assertRequest(TrustControl.Trusted(), #"{"args":{},"command":"trust"}"#)
        try assertRequestFails(TrustControl.Approve.self, #"{"command":"approve","args":{}}"#, naming: "peer")
        try assertRequestFails(TrustControl.Reject.self, #"{"command":"reject","args":{"peer":"7","reason":false}}"#, naming: "reason")
    }

    func testTrustChangesAreWhatTheHostSends() throws {
        try assertReply(TrustControl.Approve.self, TrustChange(status: "approved", nodeID: 7), #"{"node_id":7,"status":"approved"}"#)
        try assertReply(
            TrustControl.Handshake.self, TrustChange(status: "sent", nodeID: 7, relayed: true), #"{"node_id":7,"relayed":true,"status":"sent"}"#)
    }

    func testListsAreWhatTheHostSends() throws {
        try assertReply(
            TrustControl.Pending.self,
            PendingTrust(pending: [.init(nodeID: 7, publicKey: "a2V5", justification: "hi", receivedAt: 1_700_000_000)]),
            #"{"pending":[{"justification":"hi","node_id":7,"public_key":"a2V5","received_at":1700000000}]}"#)
        try assertReply(TrustControl.Pending.self, PendingTrust(pending: []), #"{"pending":[]}"#)
        try assertReply(
            TrustControl.Trusted.self,
            TrustedPeers(trusted: [.init(nodeID: 7, publicKey: "", approvedAt: 1_700_000_000, mutual: true)]),
            #"{"total":1,"trusted":[{"approved_at":1700000000,"mutual":true,"network":0,"node_id":7,"public_key":""}]}"#)
    }
}
