import PilotControl
import XCTest

final class AccessPolicyTests: XCTestCase {
    private let owner: UInt32 = 1001
    private let stranger: UInt32 = 1002
    private let teamGroup: UInt32 = 2001
    private let adminGroup: UInt32 = 2002

    private var identity: AccessPolicy {
        AccessPolicy(.identity(name: "alice", owner: owner, allowedGroups: [teamGroup]))
    }

    private var admin: AccessPolicy { AccessPolicy(.admin(adminGroup: adminGroup)) }

    private func peer(uid: UInt32, gid: UInt32? = nil, groups: [UInt32] = []) -> PeerCredentials {
        PeerCredentials(pid: 4242, uid: uid, gid: gid ?? uid, groups: groups)
    }

    func testOwnerUsesItsIdentity() {
        XCTAssertEqual(try identity.decide(peer(uid: owner)).get(), .owner)
    }

    func testAnotherUserIsRefusedWithAMessageNamingUidAndIdentity() {
        let result = identity.decide(peer(uid: stranger))
        XCTAssertThrowsError(try result.get()) { error in
            XCTAssertEqual(
                String(describing: error), "permission denied: uid 1002 (pid 4242) may not use identity alice")
        }
    }

    func testAllowedGroupCountsAsPrimaryOrSupplementary() {
        XCTAssertEqual(try identity.decide(peer(uid: stranger, gid: teamGroup)).get(), .group(teamGroup))
        XCTAssertEqual(try identity.decide(peer(uid: stranger, groups: [7, teamGroup])).get(), .group(teamGroup))
    }

    func testRootMayUseEverySocket() {
        XCTAssertEqual(try identity.decide(peer(uid: 0)).get(), .root)
        XCTAssertEqual(try admin.decide(peer(uid: 0)).get(), .root)
    }

    func testAdminGroupDoesNotOpenIdentitySockets() {
        let administrator = peer(uid: stranger, groups: [adminGroup])
        XCTAssertEqual(try admin.decide(administrator).get(), .group(adminGroup))
        XCTAssertThrowsError(try identity.decide(administrator).get())
    }

    func testOwnerOfAnIdentityIsNotAnAdmin() {
        XCTAssertThrowsError(try admin.decide(peer(uid: owner)).get())
    }

    func testAdminSocketWithoutAdminGroupAdmitsOnlyRoot() {
        let rootOnly = AccessPolicy(.admin(adminGroup: nil))
        XCTAssertThrowsError(try rootOnly.decide(peer(uid: stranger, groups: [adminGroup])).get())
        XCTAssertEqual(try rootOnly.decide(peer(uid: 0)).get(), .root)
    }
}
