/// Why a cryptographic operation failed. Each case carries what a user or operator needs.
public enum CryptoError: Error, Hashable, Sendable {
    /// libsodium could not initialise (`sodium_init` returned -1).
    case libraryUnavailable
    /// The CPU lacks what libsodium's AES-256-GCM needs.
    case aesGCMUnavailable
    /// A key or buffer had the wrong size.
    case invalidLength(what: String, expected: Int, actual: Int)
    /// Text that should be standard base64 is not, or decodes to the wrong size.
    case invalidBase64(what: String)
    /// A private key's embedded public half does not match the stated public key.
    case keyMismatch
    /// X25519 produced the all-zero secret: the peer sent a low-order point.
    case weakPublicKey
    /// Authentication failed: wrong key, wrong additional data, or tampered bytes.
    case authenticationFailed
    /// A session sealed 2^64-1 frames; it must be re-keyed before sending more.
    case nonceExhausted
    /// An output buffer is smaller than the result.
    case bufferTooSmall(needed: Int, available: Int)
}

extension CryptoError: CustomStringConvertible {
    /// What failed, in a line, for logs and error answers.
    public var description: String {
        switch self {
        case .libraryUnavailable: "libsodium failed to initialise"
        case .aesGCMUnavailable:
            "this CPU lacks AES-NI/PCLMUL: libsodium 1.0.18 has no software AES-256-GCM, "
                + "so Pilot tunnels cannot be encrypted here"
        case let .invalidLength(what, expected, actual): "\(what) must be \(expected) bytes, got \(actual)"
        case .invalidBase64(let what): "\(what) is not valid base64 of the right size"
        case .keyMismatch: "the private key does not belong to the public key"
        case .weakPublicKey: "the peer's X25519 key is a low-order point"
        case .authenticationFailed: "authentication failed (wrong key, wrong sender, or tampered data)"
        case .nonceExhausted: "the tunnel nonce counter is exhausted; re-key the session"
        case let .bufferTooSmall(needed, available): "output buffer too small: need \(needed), have \(available)"
        }
    }
}
