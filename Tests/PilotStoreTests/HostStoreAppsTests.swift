import Foundation
import PilotStore
import XCTest

final class HostStoreAppsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-host-apps-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private var path: String { directory.appendingPathComponent("host.db").path }

    private func tides(version: String = "1.0.0", bundle: Character = "a", grants: [AppInstallRecord.Grant]) -> AppInstallRecord {
        AppInstallRecord(
            appID: "io.example.tides", version: version, manifestVersion: 1, bundleSHA256: String(repeating: bundle, count: 64),
            publisher: "ed25519:key", source: "catalogue", exposes: ["tides.next", "tides.help"], stateDirectory: "/var/lib/x/alice/tides",
            installedAt: 100, approvedBy: 1000, approvedAt: 101, grants: grants)
    }

    /// Installs, their grants in order, a reinstall replacing both, removal, and the cascade
    /// when the identity goes; all read back after reopening the file.
    func testInstallsAndGrantsPersistAndGoWithTheirIdentity() throws {
        let grants = [
            AppInstallRecord.Grant(cap: "net.dial", target: "api.example.com", condition: #"{"kind":"rate","params":{"n":60}}"#),
            AppInstallRecord.Grant(cap: "audit.log", target: "*"),
        ]
        do {
            let store = try HostStore(path: path)
            try store.create(IdentityRecord(name: "alice", sealedKey: [1], ownerUID: 1000, createdAt: 1))
            try store.create(IdentityRecord(name: "bob", sealedKey: [2], ownerUID: 1001, createdAt: 1))
            try store.installApp(tides(grants: grants), identity: "alice")
            XCTAssertThrowsError(try store.installApp(tides(grants: grants), identity: "ghost"))
        }
        let store = try HostStore(path: path)
        XCTAssertEqual(try store.apps(identity: "alice"), [tides(grants: grants)])
        XCTAssertEqual(try store.apps(identity: "bob"), [])
        XCTAssertNil(try store.app("io.example.tides", identity: "bob"))

        try store.installApp(tides(version: "1.1.0", bundle: "b", grants: [grants[1]]), identity: "alice")
        XCTAssertEqual(try store.app("io.example.tides", identity: "alice"), tides(version: "1.1.0", bundle: "b", grants: [grants[1]]))
        XCTAssertEqual(try store.installedBundles(), [String(repeating: "b", count: 64)])

        try store.installApp(tides(grants: grants), identity: "bob")
        XCTAssertTrue(try store.removeApp("io.example.tides", identity: "bob"))
        XCTAssertFalse(try store.removeApp("io.example.tides", identity: "bob"))
        try store.delete(name: "alice")
        XCTAssertEqual(try store.installedBundles(), [])
        // No grant row outlives its install.
        XCTAssertEqual(try Database(path: path).rows("SELECT count(*) FROM app_grant").first?.first?.integer, 0)
        XCTAssertEqual(try store.integrityCheck(), "ok")
    }
}
