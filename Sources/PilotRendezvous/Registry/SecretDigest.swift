import PilotCrypto

/// A secret (the registry's admin token, a network's join token) kept only as its SHA-256 and
/// checked in constant time. Comparing digests, always 32 bytes, hides even the secret's length.
struct SecretDigest: Sendable {
    let bytes: [UInt8]

    /// The digest of `secret`.
    init(of secret: String) { bytes = Sodium.sha256(Array(secret.utf8)) }

    /// A digest as stored in `registry.db`.
    init(stored bytes: [UInt8]) { self.bytes = bytes }

    /// Whether `candidate` is the secret.
    func matches(_ candidate: String) -> Bool {
        Sodium.constantTimeEqual(Sodium.sha256(Array(candidate.utf8)), bytes)
    }
}
