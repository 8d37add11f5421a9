import PilotCrypto
import PilotTestSupport
import XCTest

final class SecretBoxTests: XCTestCase {
    func testSealedSecretsOpenOnlyUnderTheirKeyAndUnchanged() throws {
        let box = try SecretBox(key: SecretBox.generateKey())
        let seed = SecretBytes(copying: Array(0..<32))
        let sealed = box.seal(seed)
        XCTAssertEqual(sealed.count, SecretBox.overhead + 32)
        XCTAssertTrue(try box.open(sealed).isEqual(to: seed))
        // Fresh nonce every time.
        XCTAssertNotEqual(box.seal(seed), sealed)

        let otherBox = try SecretBox(key: SecretBox.generateKey())
        XCTAssertThrowsError(try otherBox.open(sealed)) { XCTAssertEqual($0 as? CryptoError, .authenticationFailed) }
        for index in [0, 23, 24, 39, sealed.count - 1] {
            var tampered = sealed
            tampered[index] ^= 0x80
            XCTAssertThrowsError(try box.open(tampered), "flip at \(index)")
        }
        XCTAssertThrowsError(try box.open(Array(sealed.prefix(SecretBox.overhead - 1))))
        XCTAssertTrue(try box.open(box.seal([])).bytes.isEmpty)
    }

    func testMasterKeyMustBe32Bytes() {
        XCTAssertThrowsError(try SecretBox(key: SecretBytes(copying: [1])))
    }

    func testPrimitives() {
        XCTAssertEqual(
            Sodium.sha256(Array("abc".utf8)).hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Sodium.sha256([]).hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertTrue(Sodium.constantTimeEqual([1, 2], [1, 2]))
        XCTAssertFalse(Sodium.constantTimeEqual([1, 2], [1, 3]))
        XCTAssertFalse(Sodium.constantTimeEqual([1], [1, 2]))
        XCTAssertTrue(Sodium.isAESGCMAvailable, "this machine's CPU has AES-NI")
    }
}
