import PilotWire
import XCTest

final class AdminControlTests: XCTestCase {
    static let alice = IdentityInfo(
        name: "alice", nodeID: 7, address: "0:0000.0000.0007", ownerUID: 1000, owner: "agent", groups: [100], tags: ["web"],
        isPublic: true, isEphemeral: false, autoApprove: false, createdAt: 1_700_000_000, hostname: nil)
    static let aliceJSON =
        #"{"address":"0:0000.0000.0007","auto_approve":false,"created_at":1700000000,"ephemeral":false,"groups":[100],"hostname":null,"name":"alice","node_id":7,"owner":"agent","owner_uid":1000,"public":true,"tags":["web"]}"#

    func testCreateSendsWhatPilotctlSent() throws {
        try assertRequest(
            AdminControl.CreateIdentity(identity: "alice", owner: "1000"),
            #"{"args":{"auto_approve":false,"ephemeral":false,"groups":[],"name":"alice","owner":"1000","public":false},"command":"identity.create"}"#)
        try assertRequest(
            AdminControl.CreateIdentity(
                identity: "bob", owner: "agent", groups: ["staff"], hostname: "bob", tags: ["a", "b"], isPublic: true, isEphemeral: true,
                autoApprove: true),
            #"{"args":{"auto_approve":true,"ephemeral":true,"groups":["staff"],"hostname":"bob","name":"bob","owner":"agent","public":true,"tags":["a","b"]},"command":"identity.create"}"#)
    }

    func testCreateNeedsANameAndAnOwner() throws {
        try assertRequestFails(AdminControl.CreateIdentity.self, #"{"command":"identity.create","args":{"owner":"0"}}"#, naming: "name")
        try assertRequestFails(
            AdminControl.CreateIdentity.self, #"{"command":"identity.create","args":{"name":"a","owner":"0","tags":[1]}}"#, naming: "tags")
        try assertRequestFails(
            AdminControl.CreateIdentity.self, #"{"command":"identity.create","args":{"name":"a","owner":"0","public":"yes"}}"#,
            naming: "public")
    }

    func testTheOtherAdminRequests() throws {
        try assertRequest(AdminControl.ListIdentities(), #"{"args":{},"command":"identity.list"}"#)
        try assertRequest(AdminControl.ShowIdentity(identity: "alice"), #"{"args":{"name":"alice"},"command":"identity.show"}"#)
        try assertRequest(AdminControl.DeleteIdentity(identity: "alice"), #"{"args":{"name":"alice"},"command":"identity.delete"}"#)
        try assertRequest(
            AdminControl.SetOwner(identity: "alice", owner: "bob"), #"{"args":{"name":"alice","owner":"bob"},"command":"identity.set-owner"}"#)
        try assertRequestFails(AdminControl.DeleteIdentity.self, #"{"command":"identity.delete","args":{"name":3}}"#, naming: "name")
    }

    func testIdentityRepliesAreWhatTheHostSends() throws {
        try assertReply(AdminControl.ShowIdentity.self, Self.alice, Self.aliceJSON)
        var named = Self.alice
        named.hostname = "alice.example"
        try assertReply(AdminControl.SetOwner.self, named, Self.aliceJSON.replacingOccurrences(of: #""hostname":null"#, with: #""hostname":"alice.example""#))
        try assertReply(
            AdminControl.ListIdentities.self, IdentityList(identities: [Self.alice], total: 3, next: "alice"),
            #"{"identities":[\#(Self.aliceJSON)],"next":"alice","total":3}"#)
        try assertReply(AdminControl.ListIdentities.self, IdentityList(identities: []), #"{"identities":[],"next":null,"total":0}"#)
        try assertReply(AdminControl.DeleteIdentity.self, IdentityDeleted(deleted: "alice"), #"{"deleted":"alice"}"#)
    }

    func testAGidOutOfRangeIsRefused() {
        XCTAssertThrowsError(try AdminControl.ShowIdentity.data(of: .ok(try JSON(parsing: Self.aliceJSON.replacingOccurrences(of: "[100]", with: "[-1]"))))) {
            XCTAssertEqual(($0 as? ControlFailure)?.message, "identity.show reply: groups must be a list of integers from 0 to 4294967295")
        }
    }

    func testTheAdminSocketReadsEveryCommandAndRefusesOthers() throws {
        XCTAssertEqual(try AdminControl.Command(AdminControl.ListIdentities().request), .list(AdminControl.ListIdentities()))
        XCTAssertEqual(
            try AdminControl.Command(AdminControl.ListIdentities(limit: 10, after: "m").request), .list(AdminControl.ListIdentities(limit: 10, after: "m")))
        XCTAssertThrowsError(try AdminControl.Command(ControlRequest("identity.list", ["limit": 0]))) {
            XCTAssertEqual(($0 as? ControlFailure)?.message, "identity.list: limit must be 1 to 5000")
        }
        XCTAssertEqual(
            try AdminControl.Command(AdminControl.SetOwner(identity: "a", owner: "b").request), .setOwner(AdminControl.SetOwner(identity: "a", owner: "b")))
        XCTAssertThrowsError(try AdminControl.Command(IdentityControl.Info().request)) {
            XCTAssertEqual(($0 as? ControlFailure)?.message, "unknown admin command: info")
        }
    }
}
