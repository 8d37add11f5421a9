import Foundation
import PilotStore
import XCTest

final class HostStoreTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-host-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private var path: String { directory.appendingPathComponent("host.db").path }

    private func alice() -> IdentityRecord {
        IdentityRecord(
            name: "alice", nodeID: 7, sealedKey: [1, 2, 3], hostname: "alice-agent", tags: ["worker", "gpu"],
            isPublic: true, ownerUID: 1000, allowedGIDs: [100, 27, 100], createdAt: 1_790_000_000, isEphemeral: true, autoApprove: true)
    }

    /// Trust rows: replaced by peer, survive reopening, go with their identity, need one.
    func testTrustEntriesPersistAndGoWithTheirIdentity() throws {
        do {
            let store = try HostStore(path: path)
            try store.create(alice())
            try store.create(IdentityRecord(name: "bob", sealedKey: [9], ownerUID: 1001, createdAt: 1))
            try store.setTrust(TrustRecord(peerNode: 9, state: .pendingIn, reason: "hello", updatedAt: 10), identity: "alice")
            try store.setTrust(TrustRecord(peerNode: 9, peerKey: [7, 7], state: .trusted, updatedAt: 11, mutual: true), identity: "alice")
            try store.setTrust(TrustRecord(peerNode: 3, state: .pendingOut, updatedAt: 12), identity: "alice")
            try store.setTrust(TrustRecord(peerNode: 9, state: .rejected, reason: "no", updatedAt: 13), identity: "bob")
            XCTAssertThrowsError(try store.setTrust(TrustRecord(peerNode: 1, state: .trusted, updatedAt: 0), identity: "ghost"))
        }
        let store = try HostStore(path: path)
        let all = try store.allTrust()
        XCTAssertEqual(all["alice"], [
            TrustRecord(peerNode: 3, state: .pendingOut, updatedAt: 12),
            TrustRecord(peerNode: 9, peerKey: [7, 7], state: .trusted, updatedAt: 11, mutual: true),
        ])
        XCTAssertEqual(all["bob"], [TrustRecord(peerNode: 9, state: .rejected, reason: "no", updatedAt: 13)])
        XCTAssertTrue(try store.removeTrust(peer: 3, identity: "alice"))
        XCTAssertFalse(try store.removeTrust(peer: 3, identity: "alice"))
        try store.delete(name: "alice")
        XCTAssertNil(try store.allTrust()["alice"])
        XCTAssertEqual(try store.integrityCheck(), "ok")
    }

    func testIdentitiesPersistWithEveryField() throws {
        do {
            let store = try HostStore(path: path)
            try store.create(alice())
            try store.create(IdentityRecord(name: "bob", sealedKey: [9], ownerUID: 1001, createdAt: 1))
        }
        let store = try HostStore(path: path)
        let loaded = try XCTUnwrap(try store.identity(named: "alice"))
        var expected = alice()
        expected.allowedGIDs = [27, 100]
        XCTAssertEqual(loaded, expected)
        XCTAssertEqual(try store.all().map(\.name), ["alice", "bob"])
        XCTAssertEqual(try store.identity(named: "bob")?.allowedGIDs, [])
        XCTAssertNil(try store.identity(named: "carol"))
        XCTAssertEqual(try store.integrityCheck(), "ok")
    }

    func testNamesAreUniqueAndNonEmpty() throws {
        let store = try HostStore(path: path)
        try store.create(alice())
        XCTAssertThrowsError(try store.create(alice())) { XCTAssertTrue(($0 as? StoreError)?.isConstraintViolation == true) }
        XCTAssertThrowsError(try store.create(IdentityRecord(name: "", sealedKey: [], ownerUID: 0, createdAt: 0)))
        XCTAssertEqual(try store.all().count, 1, "a failed create leaves nothing behind")
    }

    func testUpdateAndDeleteCascade() throws {
        let store = try HostStore(path: path)
        try store.create(alice())
        var changed = alice()
        changed.ownerUID = 2000
        changed.allowedGIDs = [5]
        changed.hostname = nil
        try store.update(changed)
        XCTAssertEqual(try store.identity(named: "alice"), changed)
        XCTAssertThrowsError(try store.update(IdentityRecord(name: "ghost", sealedKey: [], ownerUID: 0, createdAt: 0)))

        XCTAssertTrue(try store.delete(name: "alice"))
        XCTAssertFalse(try store.delete(name: "alice"))
        XCTAssertEqual(try store.all(), [])
        // The group rows went with it.
        try store.create(alice())
        XCTAssertEqual(try store.identity(named: "alice")?.allowedGIDs, [27, 100])
    }

    /// A key being rotated in is kept beside the key, across reopening, until cleared.
    func testAPendingKeyIsStoredBesideTheKeyUntilCleared() throws {
        do {
            let store = try HostStore(path: path)
            try store.create(alice())
            var rotating = alice()
            rotating.pendingSealedKey = [4, 5, 6]
            try store.update(rotating)
        }
        let store = try HostStore(path: path)
        var loaded = try XCTUnwrap(try store.identity(named: "alice"))
        XCTAssertEqual(loaded.pendingSealedKey, [4, 5, 6])
        XCTAssertEqual(loaded.sealedKey, [1, 2, 3])
        loaded.sealedKey = [4, 5, 6]
        loaded.pendingSealedKey = nil
        try store.update(loaded)
        XCTAssertEqual(try store.identity(named: "alice"), loaded)
    }
}
