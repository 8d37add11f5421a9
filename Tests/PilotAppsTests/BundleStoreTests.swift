import Foundation
import PilotApps
import PilotCrypto
import PilotTestSupport
import PilotWire
import Synchronization
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

    /// A file of `bytes` next to the store, and their hash.
    private func file(_ bytes: [UInt8]) throws -> (path: String, hash: String) {
        let path = directory.path("f-\(UInt32.random(in: 0...UInt32.max))")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return (path, Hex.lowercase(Sodium.sha256(bytes)))
    }

    /// Every name under the store root at every depth, hidden ones too, with its mode.
    private func storeContents(_ path: String? = nil, prefix: String = "") -> [String] {
        let path = path ?? directory.path("store")
        var listed: [String] = []
        for name in (AppStoreLayout.names(in: path) ?? []).sorted() {
            listed.append(prefix + name + " " + String(mode(path + "/" + name), radix: 8))
            listed += storeContents(path + "/" + name, prefix: prefix + name + "/")
        }
        return listed
    }

    /// The permission bits of `path` (setuid, setgid and sticky included), without following links.
    private func mode(_ path: String) -> mode_t {
        var status = stat()
        return lstat(path, &status) == 0 ? status.st_mode & 0o7777 : 0
    }

    private var goodMembers: [Member] {
        [
            Member("manifest.json", data: Array("{}".utf8)), Member("bin", .directory, mode: 0o700),
            Member("bin/app", data: Array("#!/bin/sh\necho hi\n".utf8), mode: 0o4755),
            Member("./share/doc/readme.txt", data: Array("read me".utf8), mode: 0o600),
        ]
    }

    /// Installs the good bundle, so refusals can be checked against a store that holds one.
    private func storeHoldingABundle() throws -> [String] {
        let (path, hash) = try bundle(goodMembers)
        _ = try store.unpack(bundleAt: path, expectedSHA256: hash)
        let contents = storeContents()
        XCTAssertEqual(contents.count, 7, "\(contents)")
        return contents
    }

    private func assertRefused(
        _ path: String, _ hash: String, leaving before: [String], file: StaticString = #filePath, line: UInt = #line,
        _ check: (BundleError) -> Bool
    ) {
        do {
            let unpacked = try store.unpack(bundleAt: path, expectedSHA256: hash)
            XCTFail("unpacked into \(unpacked)", file: file, line: line)
        } catch {
            XCTAssertTrue(check(error), "\(error)", file: file, line: line)
        }
        XCTAssertEqual(storeContents(), before, "the store changed", file: file, line: line)
    }

    func testAGoodBundleUnpacksWithItsBytesAndModesAndIsShared() throws {
        let (path, hash) = try bundle(goodMembers)
        let unpacked = try store.unpack(bundleAt: path, expectedSHA256: hash.uppercased())
        XCTAssertEqual(unpacked, directory.path("store") + "/" + hash)
        XCTAssertEqual(try String(contentsOfFile: unpacked + "/bin/app", encoding: .utf8), "#!/bin/sh\necho hi\n")
        XCTAssertEqual(try String(contentsOfFile: unpacked + "/share/doc/readme.txt", encoding: .utf8), "read me")
        XCTAssertEqual(try String(contentsOfFile: unpacked + "/manifest.json", encoding: .utf8), "{}")
        XCTAssertEqual(
            storeContents(),
            [
                "\(hash) 755", "\(hash)/bin 755", "\(hash)/bin/app 755", "\(hash)/manifest.json 644", "\(hash)/share 755",
                "\(hash)/share/doc 755", "\(hash)/share/doc/readme.txt 644",
            ], "executable files 0755 and never setuid, others 0644, directories (made implicitly or not) 0755")
        // A second install of the same bundle finds it.
        XCTAssertEqual(try store.unpack(bundleAt: path, expectedSHA256: hash), unpacked)
        XCTAssertEqual(store.listed(), [hash])
        XCTAssertEqual(store.directory(for: hash.uppercased()), unpacked)
        try store.remove(sha256: hash)
        XCTAssertEqual(storeContents(), [])
        XCTAssertNil(store.directory(for: hash))
    }

    func testModesDoNotDependOnTheUmask() throws {
        let (path, hash) = try bundle(goodMembers)
        let previous = umask(0o077)
        defer { umask(previous) }
        let nested = BundleStore(root: directory.path("fresh/store"))
        let unpacked = try nested.unpack(bundleAt: path, expectedSHA256: hash)
        XCTAssertEqual(mode(directory.path("fresh/store")), 0o755)
        XCTAssertEqual(storeContents(directory.path("fresh/store")).filter { !$0.hasSuffix(" 755") && !$0.hasSuffix(" 644") }, [])
        XCTAssertEqual(mode(unpacked + "/share/doc"), 0o755)
        XCTAssertEqual(mode(unpacked + "/bin/app"), 0o755)
    }

    func testTheBundlesOwnDirectoryEntryIsAccepted() throws {
        let (path, hash) = try bundle([
            Member("./", .directory), Member("./manifest.json", data: [1]), Member("./bin/", .directory), Member("./bin/app", data: [2], mode: 0o755),
        ])
        let unpacked = try store.unpack(bundleAt: path, expectedSHA256: hash)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: unpacked + "/bin/app")), Data([2]))
        XCTAssertEqual(storeContents().count, 4)
    }

    func testConcurrentInstallsOfOneBundleShareOneDirectory() throws {
        let (path, hash) = try bundle(goodMembers)
        let store = BundleStore(root: directory.path("store"))
        let results = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            let result: String
            do { result = try store.unpack(bundleAt: path, expectedSHA256: hash) } catch { result = "\(error)" }
            results.withLock { $0.append(result) }
        }
        XCTAssertEqual(results.withLock { $0 }, Array(repeating: directory.path("store") + "/" + hash, count: 6))
        XCTAssertEqual(storeContents().count, 7, "one copy, no staging left: \(storeContents())")
    }

    func testAHashThatIsNotTheCataloguesUnpacksNothing() throws {
        let (path, hash) = try bundle([Member("a", data: [1])])
        let wrong = String(repeating: "0", count: 64)
        assertRefused(path, wrong, leaving: []) { $0 == .hashMismatch(expected: wrong, actual: hash) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path("store")), "not even the root is made")
        let before = try storeHoldingABundle()
        assertRefused(path, wrong, leaving: before) { $0 == .hashMismatch(expected: wrong, actual: hash) }
    }

    func testAnExpectedHashThatIsNotAHashIsRefused() throws {
        let (path, hash) = try bundle([Member("a", data: [1])])
        for expected in ["", String(hash.dropLast()), String(hash.dropLast()) + "g", "../" + hash] {
            assertRefused(path, expected, leaving: []) { $0 == .invalidExpectedHash(expected) }
        }
    }

    func testHostileEntriesRefuseTheWholeBundleAndLeaveTheStoreAsItWas() throws {
        let before = try storeHoldingABundle()
        let cases: [(String, [Member])] = [
            ("..", [Member("ok", data: [1]), Member("../evil", data: [2])]),
            ("..", [Member("a/../../b", data: [2])]),
            ("absolute", [Member("/etc/evil", data: [2])]),
            ("empty", [Member("a//b", data: [2])]),
            ("empty", [Member(".", data: [2])]),
            ("symbolic links", [Member("bin", .directory), Member("bin/app", .symlink, link: "/etc/shadow")]),
            ("hard links", [Member("a", data: [1]), Member("b", .hardlink, link: "a")]),
            ("FIFOs", [Member("ok", data: [1]), Member("pipe", .fifo)]),
            ("character devices", [Member("null", .characterDevice)]),
            ("block devices", [Member("disk", .blockDevice)]),
            ("twice", [Member("a", data: [1]), Member("a", data: [2])]),
            ("twice", [Member("d", .directory), Member("./d/", .directory)]),
            ("control characters", [Member("a\u{1}b", data: [1])]),
            ("not a directory", [Member("bin", data: [1]), Member("bin/app", data: [2])]),
            ("over 1024 bytes", [Member(String(repeating: "d/", count: 40) + String(repeating: "x", count: 1000), data: [1])]),
            ("deeper than 32", [Member(String(repeating: "d/", count: 32) + "x", data: [1])]),
        ]
        for (expected, members) in cases {
            let (path, hash) = try bundle(members)
            assertRefused(path, hash, leaving: before) { error in
                guard case let .unsafeEntry(entry, reason) = error else { return false }
                return reason.contains(expected) && members.map(\.name).contains(entry)
            }
        }
    }

    func testLimitsAreEnforcedWhileUnpacking() throws {
        let before = try storeHoldingABundle()
        var limits = BundleLimits()
        limits.perFile = 1000
        limits.total = 1500
        limits.entries = 3
        store = BundleStore(root: directory.path("store"), limits: limits)
        let (big, bigHash) = try bundle([Member("ok", data: [1]), Member("big", data: [UInt8](repeating: 7, count: 1001))])
        assertRefused(big, bigHash, leaving: before) { $0 == .tooLarge(what: "bundle entry big", limit: 1000) }
        let (many, manyHash) = try bundle([Member("a", data: [UInt8](repeating: 7, count: 900)), Member("b", data: [UInt8](repeating: 7, count: 900))])
        assertRefused(many, manyHash, leaving: before) { $0 == .tooLarge(what: "the unpacked bundle", limit: 1500) }
        let (entries, entriesHash) = try bundle([Member("./", .directory), Member("a"), Member("b"), Member("c")])
        assertRefused(entries, entriesHash, leaving: before) { $0 == .tooManyEntries(limit: 3) }
        limits.compressed = 100
        store = BundleStore(root: directory.path("store"), limits: limits)
        let (compressed, compressedHash) = try file([UInt8](repeating: 1, count: 101))
        assertRefused(compressed, compressedHash, leaving: before) { $0 == .tooLarge(what: "the bundle", limit: 100) }
    }

    func testBytesThatAreNotAWholeGzipTarAreRefused() throws {
        let before = try storeHoldingABundle()
        let random = (0..<300_000).map { _ in UInt8.random(in: 0...255) }
        // The first file is written before the cut is met.
        let (whole, _) = try bundle([Member("first", data: [1, 2, 3]), Member("second", data: random)])
        let tarball = Array(try Data(contentsOf: URL(fileURLWithPath: whole)))
        for bytes in [Array(tarball.prefix(tarball.count * 3 / 4)), Array(tarball.prefix(60)), Array(random.prefix(5000)), [UInt8](repeating: 0x41, count: 5000)] {
            let (path, hash) = try file(bytes)
            assertRefused(path, hash, leaving: before) { error in
                guard case .malformed = error else { return false }
                return true
            }
        }
    }

    func testABundleThatIsNotARegularFileIsRefused() throws {
        let (path, hash) = try bundle([Member("a", data: [1])])
        symlink(path, directory.path("link.tar.gz"))
        assertRefused(directory.path("link.tar.gz"), hash, leaving: []) { error in
            guard case .unreadable(directory.path("link.tar.gz"), _) = error else { return false }
            return true
        }
        let folder = directory.url.path
        assertRefused(folder, hash, leaving: []) { $0 == .unreadable(path: folder, reason: "not a regular file") }
    }

    func testSweepStagingRemovesWhatACrashLeftAndKeepsBundles() throws {
        let before = try storeHoldingABundle()
        for leftover in [".staging-1/bin", ".removing-2/share/doc"] {
            try FileManager.default.createDirectory(atPath: directory.path("store/" + leftover), withIntermediateDirectories: true)
            try Data([1]).write(to: URL(fileURLWithPath: directory.path("store/" + leftover + "/file")))
        }
        XCTAssertEqual(storeContents().count, before.count + 7)
        store.sweepStaging()
        XCTAssertEqual(storeContents(), before)
    }
}
