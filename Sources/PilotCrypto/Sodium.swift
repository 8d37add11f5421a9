import CSodium

/// libsodium's one-time initialisation and the small primitives other types share.
public enum Sodium {
    /// `sodium_init` runs once (thread-safe in libsodium ≥ 1.0.11) the first time this is read;
    /// it also detects CPU features, without which AES-GCM reads as unavailable.
    private static let initialised: Bool = sodium_init() >= 0

    /// Makes sure libsodium is initialised.
    public static func ensureInitialised() throws(CryptoError) {
        guard initialised else { throw .libraryUnavailable }
    }

    /// Whether this CPU can run the tunnel cipher.
    public static var isAESGCMAvailable: Bool {
        initialised && crypto_aead_aes256gcm_is_available() == 1
    }

    /// `count` bytes from the system's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        _ = initialised
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBufferPointer { buffer in
            if let base = buffer.baseAddress { randombytes_buf(base, buffer.count) }
        }
        return bytes
    }

    /// A uniformly random 32-bit value.
    public static func randomUInt32() -> UInt32 {
        _ = initialised
        return randombytes_random()
    }

    /// Compares in time independent of where the inputs differ.
    public static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        lhs.withUnsafeBytes { left in
            rhs.withUnsafeBytes { right in
                left.count == right.count
                    && (left.count == 0 || sodium_memcmp(left.baseAddress, right.baseAddress, left.count) == 0)
            }
        }
    }

    /// SHA-256 of `data`.
    public static func sha256(_ data: some Collection<UInt8>) -> [UInt8] {
        let data = Array(data)
        _ = initialised
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        withBytes(data) { (input, count) in
            digest.withUnsafeMutableBufferPointer { output in
                _ = crypto_hash_sha256(output.baseAddress.unsafelyAssumingNonNil, input, UInt64(count))
            }
        }
        return digest
    }

    /// Calls `body` with a pointer to `bytes` that is never nil (C wants a valid pointer even for
    /// zero bytes) and their count.
    static func withBytes<R, E: Error>(
        _ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) throws(E) -> R
    ) throws(E) -> R {
        var placeholder: UInt8 = 0
        if bytes.isEmpty {
            return try withUnsafePointer(to: &placeholder) { (pointer) throws(E) -> R in try body(pointer, 0) }
        }
        return try bytes.withUnsafeBufferPointer { (buffer) throws(E) -> R in
            try body(buffer.baseAddress.unsafelyAssumingNonNil, buffer.count)
        }
    }

    /// Overwrites `count` bytes at `pointer` with zeros in a way the optimiser cannot remove.
    public static func zero(_ pointer: UnsafeMutableRawPointer, count: Int) {
        sodium_memzero(pointer, count)
    }

    /// Overwrites every byte of `bytes` with zeros, for secrets that passed through an array.
    public static func zero(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            if let base = buffer.baseAddress { sodium_memzero(base, buffer.count) }
        }
    }
}

extension Optional {
    /// For pointers of non-empty buffers, which are never nil; a nil here is a programming error.
    var unsafelyAssumingNonNil: Wrapped {
        guard let value = self else { preconditionFailure("non-empty buffer without a base address") }
        return value
    }
}
