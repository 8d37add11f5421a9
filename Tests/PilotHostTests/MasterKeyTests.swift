import Foundation
import PilotCrypto
import PilotHost
import PilotStore
import PilotTestSupport
import XCTest

final class MasterKeyTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-master")
    }

    override func tearDown() {
        directory.remove()
    }

    func testCreatedOnceWithMode0600AndReusedAfterwards() throws {
        let (first, source) = try MasterKey.load(stateDirectory: directory.url.path, environment: [:])
        let path = directory.path("master-key")
        XCTAssertEqual(source, .created(path))
        var info = stat()
        XCTAssertEqual(stat(path, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        XCTAssertEqual(info.st_size, 32)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".tmp"))

        let (second, again) = try MasterKey.load(stateDirectory: directory.url.path, environment: [:])
        XCTAssertEqual(again, .stateFile(path))
        XCTAssertTrue(first.isEqual(to: second))
    }

    func testSystemdCredentialWinsOverTheStateFile() throws {
        let credentials = directory.url.appendingPathComponent("credentials")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        let key = [UInt8](repeating: 0x42, count: 32)
        try Data(key).write(to: credentials.appendingPathComponent("master-key"))
        let (loaded, source) = try MasterKey.load(
            stateDirectory: directory.url.path, environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        XCTAssertEqual(source, .credential(credentials.appendingPathComponent("master-key").path))
        XCTAssertEqual(loaded.bytes, key)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory.path("master-key")), "no state file when systemd provides the key")
    }

    func testOpenPermissionsAndWrongSizesAreRefused() throws {
        let path = directory.path("master-key")
        try Data(repeating: 1, count: 32).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o644)
        XCTAssertThrowsError(try MasterKey.load(stateDirectory: directory.url.path, environment: [:])) { error in
            XCTAssertEqual(error as? KeyFileError, .tooOpen(what: "master key", path: path, mode: 0o644))
        }
        chmod(path, 0o600)
        try Data(repeating: 1, count: 31).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
        XCTAssertThrowsError(try MasterKey.load(stateDirectory: directory.url.path, environment: [:])) { error in
            XCTAssertEqual(error as? KeyFileError, .wrongSize(what: "master key", path: path, size: 31))
        }
    }

    func testIdentityKeysSurviveTheStoreAndNeedTheirMasterKey() throws {
        let (master, _) = try MasterKey.load(stateDirectory: directory.url.path, environment: [:])
        let keys = try IdentityKeys(masterKey: master)
        let identity = try Ed25519PrivateKey()
        let store = try HostStore(path: directory.path("host.db"))
        try store.create(IdentityRecord(name: "alice", sealedKey: keys.seal(identity), ownerUID: 1000, createdAt: 0))

        let sealed = try XCTUnwrap(try store.identity(named: "alice")?.sealedKey)
        XCTAssertFalse(sealed.contains(subsequence: identity.seed.bytes), "the seed is never stored in clear")
        let restored = try keys.unseal(sealed)
        XCTAssertEqual(restored.publicKey, identity.publicKey)
        XCTAssertTrue(restored.publicKey.isValidSignature(restored.sign("heartbeat:1"), for: Array("heartbeat:1".utf8)))

        let otherMaster = try IdentityKeys(masterKey: SecretBox.generateKey())
        XCTAssertThrowsError(try otherMaster.unseal(sealed)) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence: [UInt8]) -> Bool {
        guard !subsequence.isEmpty, subsequence.count <= count else { return false }
        return (0...(count - subsequence.count)).contains { Array(self[$0..<$0 + subsequence.count]) == subsequence }
    }
}
