import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// A connection is bound to the identity it was opened for, and the caller's rights are judged at
/// every request: an open connection survives neither the identity's deletion nor a change of its
/// owner (issue 12, findings 1 and 2).
final class StaleConnectionTests: AbuseTestCase {
    func testAConnectionToADeletedIdentityIsNeverServedAsOneCreatedUnderItsName() throws {
        try startHost()
        let userA = try tenant("ptabusea", owning: "alice")
        let userB = try accounts.user("ptabuseb")
        let session = try ControlSession(path: socket("alice"), user: userA)
        XCTAssertTrue(session.request(command: "info").isOK, "A uses her identity")

        XCTAssertEqual(pilotctl(as: nil, ["identity", "delete", "alice"])?["status"], "ok")
        XCTAssertEqual(pilotctl(as: nil, ["identity", "create", "alice", "--owner", userB])?["status"], "ok")
        XCTAssertEqual(pilotctl(as: userB, ["set-tags", "b-only"])?["status"], "ok")

        // A's old connection: closed by the delete, or refused if it raced it; never B's alice.
        let info = session.request(command: "info")
        XCTAssertFalse(info.isOK, "A's stale connection acted as B's new identity: \(info)")
        if case .reply(let body) = info { XCTAssertTrue(body.contains("permission_denied"), body) }
        XCTAssertEqual(session.request(#"{"command":"clear-tags","args":{}}"#), .closed, "the stale connection is closed")
        // The host logs it as it closes them; the log may reach us a moment after the reply.
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 5) { host.output.contains("connections-closed") }, "the delete closed A's connection")
        // B's alice is B's: her tags are as she set them, and A cannot use her.
        XCTAssertEqual(pilotctl(as: userB, ["info"])?["data"]?["tags"], ["b-only"])
        XCTAssertNotEqual(pilotctl(as: userA, ["--identity", "alice", "info"])?["status"], "ok")
    }

    func testGivingAnIdentityToAnotherOwnerEndsTheOldOwnersOpenConnections() throws {
        try startHost()
        let userA = try tenant("ptabusea", owning: "alice")
        let userB = try accounts.user("ptabuseb")
        let session = try ControlSession(path: socket("alice"), user: userA)
        XCTAssertTrue(session.request(command: "info").isOK)

        XCTAssertEqual(pilotctl(as: nil, ["identity", "set-owner", "alice", userB])?["status"], "ok")
        let after = session.request(command: "info")
        XCTAssertFalse(after.isOK, "the old owner's open connection still acts as alice: \(after)")
        XCTAssertEqual(session.request(#"{"command":"set-tags","args":{"tags":["stolen"]}}"#), .closed)
        let info = pilotctl(as: userB, ["info"])
        XCTAssertEqual(info?["status"], "ok")
        XCTAssertEqual(info?["data"]?["tags"], .array([]), "nothing A sent after the change took effect")
    }
}
