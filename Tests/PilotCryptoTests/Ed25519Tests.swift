import PilotCrypto
import PilotWire
import PilotTestSupport
import XCTest

final class Ed25519Tests: XCTestCase {
    func testSeedAndPILASignatureReproduceTheSpecByteForByte() throws {
        // docs/PROTOCOL.md §5.2: seed 32 × 0x33, PILA(node 1, pubA) signed over "auth" ‖ node ‖ pubA.
        let key = try Ed25519PrivateKey(seed: [UInt8](repeating: 0x33, count: 32))
        XCTAssertEqual(key.publicKey.bytes.hex, "17cb79fb2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85e18080ce")
        let pubA = [UInt8](hex: "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13")
        let signature = key.sign(AuthenticatedKeyExchange.signedMessage(node: 1, x25519: pubA))
        XCTAssertEqual(
            signature.hex,
            "e37a2b6847555b05ff2e699f09b9e072ab510dad4397476603b7c7a54db124d3986162ed74844e8f36913c4366e04749953209a2dbe518c0ace66cca2fbc1405"
        )
        let frame = try AuthenticatedKeyExchange(node: 1, x25519: pubA, ed25519: key.publicKey.bytes, signature: signature)
        XCTAssertTrue(key.publicKey.isValidSignature(frame.signature, for: frame.signedMessage))
    }

    func testSignaturesVerifyOnlyForTheirMessageAndKey() throws {
        let key = try Ed25519PrivateKey()
        let other = try Ed25519PrivateKey()
        let signature = key.sign("heartbeat:7")
        XCTAssertTrue(key.publicKey.isValidSignature(signature, for: Array("heartbeat:7".utf8)))
        XCTAssertFalse(key.publicKey.isValidSignature(signature, for: Array("heartbeat:8".utf8)))
        XCTAssertFalse(other.publicKey.isValidSignature(signature, for: Array("heartbeat:7".utf8)))
        XCTAssertFalse(key.publicKey.isValidSignature(Array(signature.prefix(63)), for: Array("heartbeat:7".utf8)))
        XCTAssertTrue(key.publicKey.isValidSignature(key.sign([]), for: []))
    }

    func testAKeyFromItsSeedSignsAsItDoesAndACopyOutlivesTheOriginal() throws {
        var copy: Ed25519PrivateKey?
        do {
            let key = try Ed25519PrivateKey()
            copy = key
            let again = try Ed25519PrivateKey(seed: key.seed.bytes)
            XCTAssertEqual(again.publicKey, key.publicKey)
            XCTAssertEqual(again.base64, key.base64)
            XCTAssertEqual(again.sign("heartbeat:7"), key.sign("heartbeat:7"))
        }
        let key = try XCTUnwrap(copy)
        XCTAssertTrue(key.publicKey.isValidSignature(key.sign("heartbeat:8"), for: Array("heartbeat:8".utf8)))
        XCTAssertEqual(try Ed25519PrivateKey(seed: key.seed.bytes).publicKey, key.publicKey)
    }

    func testReferenceTextFormRoundTripsAndMustMatch() throws {
        let key = try Ed25519PrivateKey()
        let loaded = try Ed25519PrivateKey(base64: key.base64, publicKey: key.publicKey.base64)
        XCTAssertEqual(loaded.publicKey, key.publicKey)
        XCTAssertEqual(try Ed25519PublicKey(base64: key.publicKey.base64), key.publicKey)
        XCTAssertEqual(key.base64.count, 88)

        let other = try Ed25519PrivateKey()
        XCTAssertThrowsError(try Ed25519PrivateKey(base64: key.base64, publicKey: other.publicKey.base64)) { error in
            XCTAssertEqual(error as? CryptoError, .keyMismatch)
        }
        // Seed of one key with the public half of another.
        var spliced = [UInt8](repeating: 0, count: 64)
        spliced.replaceSubrange(32..<64, with: other.publicKey.bytes)
        XCTAssertThrowsError(try Ed25519PrivateKey(secretKey: spliced))
        for bad in ["", "not base64!", key.publicKey.base64, key.base64 + "AA=="] {
            XCTAssertThrowsError(try Ed25519PrivateKey(base64: bad), bad)
        }
        XCTAssertThrowsError(try Ed25519PublicKey(base64: "AAAA"))
    }
}
