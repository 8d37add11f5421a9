import PilotWire
import PilotTestSupport
import XCTest

final class TunnelFrameTests: XCTestCase {
    // docs/PROTOCOL.md §5.2 worked example.
    let pubA = "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13"
    let ed25519 = "17cb79fb2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85e18080ce"
    let pilsVector = """
        50494c5300000001a1b2c3d40000000000000001637958be6d2241cee99fc3c03de26ecdeb697e8ff9c817cf\
        ada03fc76d3112a55d84672eb626548de29d7f988be1172a00d8
        """
    let pilaVector = """
        50494c41000000017b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f1317cb79fb\
        2b4120f2b1ec65e4198d6e08b28e813feb01e4a400839b85e18080cee37a2b6847555b05ff2e699f09b9e072\
        ab510dad4397476603b7c7a54db124d3986162ed74844e8f36913c4366e04749953209a2dbe518c0ace66cca\
        2fbc1405
        """

    func testPILSVectorDecodesSenderNonceAndSealedBytes() throws {
        let bytes = [UInt8](hex: pilsVector)
        guard case .encrypted(let frame) = try TunnelFrame(decoding: bytes) else { return XCTFail("not PILS") }
        XCTAssertEqual(frame.sender, 1)
        XCTAssertEqual(frame.nonce, TunnelNonce(prefix: 0xA1B2_C3D4, counter: 1))
        XCTAssertEqual(frame.nonce.bytes.hex, "a1b2c3d40000000000000001")
        XCTAssertEqual(frame.sealed.count, 34 + EncryptedFrame.tagSize)
        XCTAssertEqual(frame.additionalData, [0, 0, 0, 1])
        XCTAssertEqual(TunnelFrame.encrypted(frame).encoded(), bytes)
    }

    func testPILAVectorDecodesEveryFieldAndTheSignedMessage() throws {
        let bytes = [UInt8](hex: pilaVector)
        XCTAssertEqual(bytes.count, 136)
        guard case .authenticatedKeyExchange(let exchange) = try TunnelFrame(decoding: bytes) else {
            return XCTFail("not PILA")
        }
        XCTAssertEqual(exchange.node, 1)
        XCTAssertEqual(exchange.x25519.hex, pubA)
        XCTAssertEqual(exchange.ed25519.hex, ed25519)
        XCTAssertEqual(exchange.signature.hex.prefix(16), "e37a2b6847555b05")
        XCTAssertEqual(exchange.signedMessage, Array("auth".utf8) + [0, 0, 0, 1] + [UInt8](hex: pubA))
        XCTAssertEqual(TunnelFrame.authenticatedKeyExchange(exchange).encoded(), bytes)
    }

    func testPILKIsExactlyFortyBytes() throws {
        let exchange = try KeyExchange(node: 7, x25519: [UInt8](hex: pubA))
        let bytes = TunnelFrame.keyExchange(exchange).encoded()
        XCTAssertEqual(bytes.count, 40)
        XCTAssertEqual(Array(bytes.prefix(4)), Array("PILK".utf8))
        XCTAssertEqual(try TunnelFrame(decoding: bytes), .keyExchange(exchange))
        XCTAssertThrowsError(try TunnelFrame(decoding: bytes + [0]))
    }

    func testPunchIsTheBareMagic() throws {
        XCTAssertEqual(TunnelFrame.punch.encoded(), Array("PILP".utf8))
        XCTAssertEqual(try TunnelFrame(decoding: Array("PILP".utf8)), .punch)
        XCTAssertThrowsError(try TunnelFrame(decoding: Array("PILPx".utf8)))
    }

    func testPlaintextCarriesThePacketBytes() throws {
        let packet = [UInt8](hex: "11010000000000000001000000000002c00003e800000000000000000200145ed874")
        let bytes = Array("PILT".utf8) + packet
        guard case .plaintext(let inner) = try TunnelFrame(decoding: bytes) else { return XCTFail("not PILT") }
        XCTAssertEqual(try Packet(decoding: inner).destinationPort, 1000)
    }

    func testUnknownMagicAndShortPILSAreTypedErrors() {
        XCTAssertThrowsError(try TunnelFrame(decoding: Array("PILX".utf8))) { error in
            XCTAssertEqual(error as? WireError, .unknownType(field: "tunnel magic", value: 0x5049_4C58))
        }
        // Header present but fewer than 16 bytes of tag.
        let short = Array("PILS".utf8) + [0, 0, 0, 1] + [UInt8](repeating: 0, count: 12 + 15)
        XCTAssertThrowsError(try TunnelFrame(decoding: short))
    }

    func testEveryTruncationOfKeyExchangesFails() {
        let pila = [UInt8](hex: pilaVector)
        XCTAssertEqual(assertEveryTruncationFails(pila) { _ = try TunnelFrame(decoding: $0) }, pila.count)
    }

    func testPILSShorterThanHeaderAndTagFails() {
        // A PILS frame's ciphertext has no length field: any frame with header and a full tag
        // decodes (and then fails authentication); anything shorter is a decode error.
        let pils = [UInt8](hex: pilsVector)
        XCTAssertEqual(assertEveryTruncationFails(pils) { _ = try TunnelFrame(decoding: $0) }, 4 + EncryptedFrame.headerSize + 16)
    }

    func testRandomFramesRoundTrip() throws {
        var random = SplitMix64(seed: 7)
        for _ in 0..<3000 {
            let frame: TunnelFrame
            switch Int.random(in: 0..<5, using: &random) {
            case 0: frame = .plaintext(packet: random.bytes(.random(in: 0...100, using: &random))[...])
            case 1:
                frame = .encrypted(
                    EncryptedFrame(
                        sender: .random(in: 0...UInt32.max, using: &random),
                        nonce: TunnelNonce(
                            prefix: .random(in: 0...UInt32.max, using: &random),
                            counter: .random(in: 0...UInt64.max, using: &random)),
                        sealed: random.bytes(.random(in: 16...200, using: &random))[...]))
            case 2: frame = .keyExchange(try KeyExchange(node: .random(in: 0...UInt32.max, using: &random), x25519: random.bytes(32)))
            case 3:
                frame = .authenticatedKeyExchange(
                    try AuthenticatedKeyExchange(
                        node: .random(in: 0...UInt32.max, using: &random), x25519: random.bytes(32),
                        ed25519: random.bytes(32), signature: random.bytes(64)))
            default: frame = .punch
            }
            let bytes = frame.encoded()
            XCTAssertEqual(try TunnelFrame(decoding: bytes).encoded(), bytes)
        }
    }

    /// Random bytes, half behind a known magic: each input is refused with a `WireError` or is
    /// the exact encoding of the frame it decodes to (nothing is skipped or read past the end).
    func testGarbageIsRefusedWithAWireErrorOrDecodesExactly() {
        var random = SplitMix64(seed: 99)
        var refused = 0
        for _ in 0..<5000 {
            var bytes = random.bytes(.random(in: 0...160, using: &random))
            if bytes.count >= 4, Bool.random(using: &random) {
                let magic = TunnelFrame.Magic.allCases.randomElement(using: &random) ?? .punch
                bytes[0...3] = ArraySlice(withUnsafeBytes(of: magic.rawValue.bigEndian, Array.init))
            }
            do {
                let frame = try TunnelFrame(decoding: bytes)
                XCTAssertEqual(frame.encoded(), bytes, "\(frame)")
            } catch {
                refused += 1  // a WireError: the decoder throws nothing else
            }
        }
        XCTAssertGreaterThan(refused, 0)
    }

    func testKeyExchangeFieldSizesAreChecked() {
        XCTAssertThrowsError(try KeyExchange(node: 1, x25519: [1, 2, 3]))
        XCTAssertThrowsError(try AuthenticatedKeyExchange(node: 1, x25519: [UInt8](repeating: 0, count: 32), ed25519: [], signature: []))
    }

    /// A PILS built in one buffer (sealed in place, header after) is the same datagram as one
    /// encoded from its parts.
    func testADatagramBuiltInPlaceEqualsTheEncodedFrame() {
        let sealed: [UInt8] = (0..<40).map { UInt8($0 * 7 & 0xFF) }
        let built = EncryptedFrame.datagram(sender: 0x0102_0304, noncePrefix: 0xAABB_CCDD, sealedCount: sealed.count) { output in
            output.copyBytes(from: sealed)
            return 0x1122_3344_5566_7788
        }
        let frame = EncryptedFrame(sender: 0x0102_0304, nonce: TunnelNonce(prefix: 0xAABB_CCDD, counter: 0x1122_3344_5566_7788), sealed: sealed[...])
        XCTAssertEqual(built, TunnelFrame.encrypted(frame).encoded())
        XCTAssertEqual(built.count, EncryptedFrame.sealedOffset + sealed.count)
    }
}
