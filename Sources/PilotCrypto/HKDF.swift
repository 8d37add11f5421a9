import CSodium

/// HKDF with HMAC-SHA256 (RFC 5869), built on libsodium's HMAC because 1.0.18 has no HKDF.
public enum HKDF {
    /// SHA-256's output size: the PRK's size and the most one expand block gives.
    public static let hashLength = 32

    /// PRK = HMAC-SHA256(key: salt, message: input key material). An empty salt acts as 32 zero
    /// bytes (HMAC pads keys with zeros).
    public static func extract(salt: [UInt8], inputKeyMaterial: SecretBytes) -> SecretBytes {
        inputKeyMaterial.withUnsafeBytes { ikm in
            SecretBytes(count: hashLength) { output in
                hmac(key: salt, message: ikm, into: output)
            }
        }
    }

    /// OKM = T(1) ‖ T(2) ‖ … truncated to `length` (≤ 255 × 32), T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i).
    public static func expand(pseudoRandomKey: SecretBytes, info: [UInt8], length: Int) throws(CryptoError) -> SecretBytes {
        guard length > 0, length <= 255 * hashLength else {
            throw .invalidLength(what: "HKDF output", expected: 255 * hashLength, actual: length)
        }
        return expandChecked(pseudoRandomKey: pseudoRandomKey, info: info, length: length)
    }

    /// `expand` for a length already known to be in range.
    static func expandChecked(pseudoRandomKey: SecretBytes, info: [UInt8], length: Int) -> SecretBytes {
        let prk = pseudoRandomKey.bytes
        return SecretBytes(count: length) { output in
            var previous: [UInt8] = []
            var written = 0
            var counter: UInt8 = 1
            while written < length {
                var block = [UInt8](repeating: 0, count: hashLength)
                block.withUnsafeMutableBytes { blockBuffer in
                    (previous + info + [counter]).withUnsafeBytes { message in
                        hmac(key: prk, message: message, into: blockBuffer)
                    }
                }
                let take = min(hashLength, length - written)
                for index in 0..<take { output[written + index] = block[index] }
                written += take
                previous = block
                counter &+= 1
            }
        }
    }

    private static func hmac(key: [UInt8], message: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) {
        var state = crypto_auth_hmacsha256_state()
        _ = crypto_auth_hmacsha256_init(&state, key, key.count)
        if let base = message.bindMemory(to: UInt8.self).baseAddress, message.count > 0 {
            _ = crypto_auth_hmacsha256_update(&state, base, UInt64(message.count))
        }
        _ = crypto_auth_hmacsha256_final(&state, output.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
        Sodium.zero(&state, count: MemoryLayout<crypto_auth_hmacsha256_state>.size)
    }
}

/// The AES-256-GCM key of a tunnel, from the X25519 shared secret.
public enum TunnelKeyDerivation: Sendable {
    /// Pilot Protocol 1.18: HKDF-SHA256, empty salt, info `pilot-tunnel-v1`, 32 bytes.
    case hkdf
    /// The older Go tree: SHA-256(`pilot-tunnel-v1:` ‖ shared). Not spoken by 1.18; kept to prove
    /// the codec against the older spec's worked example.
    case legacy

    /// The HKDF info (and the legacy hash's label, without its colon).
    public static let info = Array("pilot-tunnel-v1".utf8)

    /// The 32-byte tunnel key for an X25519 shared secret (`docs/PROTOCOL.md §5.2` for the legacy
    /// form).
    public func key(fromSharedSecret shared: SecretBytes) -> SecretBytes {
        switch self {
        case .hkdf:
            let prk = HKDF.extract(salt: [], inputKeyMaterial: shared)
            return HKDF.expandChecked(pseudoRandomKey: prk, info: Self.info, length: 32)
        case .legacy:
            return SecretBytes(copying: Sodium.sha256(Array("pilot-tunnel-v1:".utf8) + shared.bytes))
        }
    }
}
