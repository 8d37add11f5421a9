import PilotCrypto
import PilotHost
import PilotWire
import XCTest

/// `IdentityFile` and `HostKey`: an identity sealed to one host's key opens there only, and
/// any change to the file is refused with the reason a user can act on.
final class IdentityFileTests: XCTestCase {
    private func hostKey(_ byte: UInt8) throws -> HostKey {
        try HostKey(masterKey: SecretBytes(copying: Array(repeating: byte, count: 32)))
    }

    private func parcel(for host: HostKey, key: Ed25519PrivateKey) -> IdentityParcel {
        IdentityParcel(
            recipient: host.publicKey, exportedAt: 1, lastSequence: 2, seed: key.seed.bytes, publicKey: key.publicKey.bytes, node: 42,
            network: 0, name: "alice", hostname: "alice", tags: ["worker"], isPublic: false, autoApprove: true,
            trust: [.init(peer: 9, peerKey: Array(repeating: 9, count: 32), state: "trusted", reason: "hi", updatedAt: 3, mutual: true)],
            messages: [.init(sender: "0:0000.0000.0009", type: "TEXT", data: Array("kept".utf8), messageID: nil, replyTo: nil, receivedAt: 4)])
    }

    func testTheHostKeyComesFromTheMasterKeyAndIsTheSameAtEveryStart() throws {
        XCTAssertEqual(try hostKey(1).publicKey, try hostKey(1).publicKey)
        XCTAssertNotEqual(try hostKey(1).publicKey, try hostKey(2).publicKey)
        // Not the master key's own X25519 public key: a context of its own.
        XCTAssertNotEqual(try hostKey(1).publicKey, try X25519KeyPair(privateKey: Array(repeating: 1, count: 32)).publicKey)
        XCTAssertEqual(HostKey.publicKey(base64: " \(try hostKey(1).base64)\n"), try hostKey(1).publicKey)
        XCTAssertNil(HostKey.publicKey(base64: "c2hvcnQ="))
    }

    func testAFileOpensOnItsHostAsItWasMade() throws {
        let (host, key) = (try hostKey(1), try Ed25519PrivateKey())
        let made = parcel(for: host, key: key)
        let file = try IdentityFile.seal(made, signedBy: key)
        XCTAssertEqual(Array(file.prefix(9)), Array("PILOT-ID".utf8) + [1])
        XCTAssertEqual(Array(file[9..<41]), host.publicKey)
        XCTAssertEqual(try IdentityFile.open(file, with: host), made)
        // Sealed afresh each time: two files of one identity share no ciphertext.
        XCTAssertNotEqual(try IdentityFile.seal(made, signedBy: key), file)
    }

    func testAFileForAnotherHostIsRefusedAsSuch() throws {
        let (host, other, key) = (try hostKey(1), try hostKey(2), try Ed25519PrivateKey())
        let file = try IdentityFile.seal(parcel(for: host, key: key), signedBy: key)
        XCTAssertThrowsError(try IdentityFile.open(file, with: other)) { error in
            XCTAssertEqual(error as? IdentityFileError, .sealedToAnotherHost(file: host.base64, host: other.base64))
            XCTAssertTrue("\(error)".hasPrefix("this file is sealed to another host key"))
        }
        // Its header rewritten to name the other host: the seal does not open.
        var relabelled = file
        relabelled.replaceSubrange(9..<41, with: other.publicKey)
        XCTAssertThrowsError(try IdentityFile.open(relabelled, with: other)) { XCTAssertEqual($0 as? IdentityFileError, .damaged) }
    }

    func testEveryChangedByteAfterTheHeaderMakesTheFileDamaged() throws {
        let (host, key) = (try hostKey(1), try Ed25519PrivateKey())
        let file = try IdentityFile.seal(parcel(for: host, key: key), signedBy: key)
        for index in stride(from: IdentityFile.headerSize, to: file.count, by: 7) {
            var altered = file
            altered[index] ^= 0x01
            XCTAssertThrowsError(try IdentityFile.open(altered, with: host)) { XCTAssertEqual($0 as? IdentityFileError, .damaged, "\(index)") }
        }
        XCTAssertThrowsError(try IdentityFile.open(Array(file.dropLast()), with: host)) { XCTAssertEqual($0 as? IdentityFileError, .damaged) }
        XCTAssertThrowsError(try IdentityFile.open(file + [0], with: host)) { XCTAssertEqual($0 as? IdentityFileError, .damaged) }
    }

    func testAParcelSignedByAnotherKeyThanItsOwnIsDamaged() throws {
        let (host, key, mallory) = (try hostKey(1), try Ed25519PrivateKey(), try Ed25519PrivateKey())
        let file = try IdentityFile.seal(parcel(for: host, key: key), signedBy: mallory)
        XCTAssertThrowsError(try IdentityFile.open(file, with: host)) { XCTAssertEqual($0 as? IdentityFileError, .damaged) }
    }

    func testOtherVersionsAndOtherFilesAreNamedAsSuch() throws {
        let (host, key) = (try hostKey(1), try Ed25519PrivateKey())
        var file = try IdentityFile.seal(parcel(for: host, key: key), signedBy: key)
        file[8] = 2
        XCTAssertThrowsError(try IdentityFile.open(file, with: host)) {
            XCTAssertEqual($0 as? IdentityFileError, .unsupportedVersion(2))
            XCTAssertEqual("\($0)", "this identity file is version 2; this host reads version 1")
        }
        XCTAssertThrowsError(try IdentityFile.open(Array("{\"private_key\":\"...\"}".utf8), with: host)) {
            XCTAssertEqual($0 as? IdentityFileError, .notAnIdentityFile)
        }
    }

    func testAFileTooLargeForOneControlFrameIsRefusedBeforeAnythingLeaves() throws {
        let (host, key) = (try hostKey(1), try Ed25519PrivateKey())
        var big = parcel(for: host, key: key)
        big.messages = [.init(sender: "x", type: "BINARY", data: Array(repeating: 0, count: IdentityFile.maxSize), messageID: nil, replyTo: nil, receivedAt: 0)]
        XCTAssertThrowsError(try IdentityFile.seal(big, signedBy: key)) {
            guard case .tooLarge = $0 as? IdentityFileError else { return XCTFail("\($0)") }
        }
    }
}
