import Foundation
import PilotApps
import PilotCrypto
import PilotTestSupport
import PilotWire
import XCTest

final class BundleStoreTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var store: BundleStore!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-bundles")
        store = BundleStore(root: directory.path("store"))
    }

    override func tearDown() { directory.remove() }

    private typealias Member = AppCatalogueFixture.Member

    private func bundle(_ members: [Member]) throws -> (path: String, hash: String) {
        let path = directory.path("b-\(UInt32.random(in: 0...UInt32.max)).tar.gz")
        try AppCatalogueFixture.writeTarball(members, to: path)
        return (path, Hex.lowercase(Sodium.sha256(Array(try Data(contentsOf: URL(fileURLWithPath: path))))))
    }

    /// What the store root holds, every name at every depth.
    private func storeContents() -> [String] {
        (FileManager.default.enumerator(atPath: directory.path("store"))?.allObjects as? [String] ?? []).sorted()
    }

    func testAGoodBundleUnpacksWithItsBytesAndModesAndIsShared() throws {
        let binary = Array("#!/bin/sh\necho hi\n".utf8)
        let (path, hash) = try bundle([
            Member("manifest.json", data: Array("{}".utf8)), Member("bin", .directory, mode: 0o755),
            Member("bin/app", data: binary, mode: 0o4755), Member("./share/doc/readme.txt", data: Array("read me".utf8), mode: 0o600),
        ])
        let unpacked = try store.unpack(bundleAt: path, expectedSHA256: hash.uppercased())
        XCTAssertEqual(unpacked, directory.path("store") + "/" + hash)
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: unpacked + "/bin/app"))), binary)
        XCTAssertEqual(try String(contentsOfFile: unpacked + "/share/doc/readme.txt", encoding: .utf8), "read me")
        let appMode = try FileManager.default.attributesOfItem(atPath: unpacked + "/bin/app")[.posixPermissions] as? Int
        XCTAssertEqual(appMode, 0o755, "executable, and never setuid")
        let docMode = try FileManager.default.attributesOfItem(atPath: unpacked + "/share/doc/readme.txt")[.posixPermissions] as? Int
        XCTAssertEqual(docMode, 0o644)
        // A second install of the same bundle finds it.
        XCTAssertEqual(try store.unpack(bundleAt: path, expectedSHA256: hash), unpacked)
        XCTAssertEqual(store.listed(), [hash])
        XCTAssertEqual(store.directory(for: hash), unpacked)
        try store.remove(sha256: hash)
        XCTAssertEqual(storeContents(), [])
    }

    func testAHashThatIsNotTheCataloguesUnpacksNothing() throws {
        let (path, hash) = try bundle([Member("a", data: [1])])
        let wrong = String(repeating: "0", count: 64)
        XCTAssertThrowsError(try store.unpack(bundleAt: path, expectedSHA256: wrong)) { error in
            XCTAssertEqual(error as? BundleError, .hashMismatch(expected: wrong, actual: hash))
        }
        XCTAssertEqual(storeContents(), [])
    }

    func testHostileEntriesRefuseTheWholeBundleAndLeaveNothing() throws {
        let cases: [(String, [Member])] = [
            ("..", [Member("ok", data: [1]), Member("../evil", data: [2])]),
            ("..", [Member("a/../../b", data: [2])]),
            ("absolute", [Member("/etc/evil", data: [2])]),
            ("symbolic links", [Member("bin", .directory), Member("bin/app", .symlink, link: "/etc/shadow")]),
            ("hard links", [Member("a", data: [1]), Member("b", .hardlink, link: "a")]),
            ("only regular files and directories", [Member("pipe", .fifo)]),
            ("twice", [Member("a", data: [1]), Member("a", data: [2])]),
            ("control characters", [Member("a\u{1}b", data: [1])]),
            ("not a directory", [Member("bin", data: [1]), Member("bin/app", data: [2])]),
        ]
        for (expected, members) in cases {
            let (path, hash) = try bundle(members)
            XCTAssertThrowsError(try store.unpack(bundleAt: path, expectedSHA256: hash), expected) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(members.map(\.name)): \(error)")
            }
            XCTAssertEqual(storeContents(), [], "\(members.map(\.name)) left something")
        }
    }

    func testLimitsAreEnforcedWhileUnpacking() throws {
        var limits = BundleLimits()
        limits.perFile = 1000
        limits.total = 1500
        limits.entries = 3
        let small = BundleStore(root: directory.path("store"), limits: limits)
        for members in [
            [Member("big", data: [UInt8](repeating: 7, count: 1001))],
            [Member("a", data: [UInt8](repeating: 7, count: 900)), Member("b", data: [UInt8](repeating: 7, count: 900))],
            [Member("a"), Member("b"), Member("c"), Member("d")],
        ] {
            let (path, hash) = try bundle(members)
            XCTAssertThrowsError(try small.unpack(bundleAt: path, expectedSHA256: hash)) { error in
                guard case .tooLarge = error as? BundleError else { return XCTFail("\(error)") }
            }
            XCTAssertEqual(storeContents(), [])
        }
        limits.compressed = 10
        let (path, hash) = try bundle([Member("a", data: [1])])
        XCTAssertThrowsError(try BundleStore(root: directory.path("store"), limits: limits).unpack(bundleAt: path, expectedSHA256: hash))
    }

    func testBytesThatAreNotAGzipTarAreRefused() throws {
        for bytes in [[UInt8](repeating: 0x41, count: 5000), Array(try Data(contentsOf: URL(fileURLWithPath: try bundle([Member("a", data: [UInt8](repeating: 1, count: 9000))]).path)).prefix(60))] {
            let path = directory.path("junk-\(bytes.count)")
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try store.unpack(bundleAt: path, expectedSHA256: Hex.lowercase(Sodium.sha256(bytes)))) { error in
                guard case .malformed = error as? BundleError else { return XCTFail("\(error)") }
            }
            XCTAssertEqual(storeContents(), [])
        }
    }

    func testALinkGivenAsTheBundleIsRefused() throws {
        let (path, hash) = try bundle([Member("a", data: [1])])
        symlink(path, directory.path("link.tar.gz"))
        XCTAssertThrowsError(try store.unpack(bundleAt: directory.path("link.tar.gz"), expectedSHA256: hash))
    }
}
