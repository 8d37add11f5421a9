import CSodium
import PilotWire

/// An Ed25519 public key: a node's identity on the registry and in `PILA` frames.
public struct Ed25519PublicKey: Hashable, Sendable {
    /// A public key's size in bytes.
    public static let size = 32
    /// A signature's size in bytes.
    public static let signatureSize = 64

    /// The 32 key bytes.
    public let bytes: [UInt8]

    /// A key from its 32 bytes; throws for any other length (the bytes are not checked to be a
    /// curve point).
    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.size else {
            throw .invalidLength(what: "Ed25519 public key", expected: Self.size, actual: bytes.count)
        }
        self.bytes = bytes
    }

    /// From the reference's text form: standard base64 of the 32 bytes.
    public init(base64 text: String) throws(CryptoError) {
        guard let bytes = try? Base64.decode(text), bytes.count == Self.size else {
            throw .invalidBase64(what: "Ed25519 public key")
        }
        self.bytes = bytes
    }

    /// The reference's text form: standard base64 of the 32 bytes.
    public var base64: String { Base64.encode(bytes) }

    /// Whether `signature` is this key's signature of `message`.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == Self.signatureSize, (try? Sodium.ensureInitialised()) != nil else { return false }
        return Sodium.withBytes(message) { messagePointer, messageCount in
            crypto_sign_verify_detached(signature, messagePointer, UInt64(messageCount), bytes) == 0
        }
    }
}

/// An Ed25519 signing key. The 64-byte libsodium secret key (seed ‖ public key) lives in
/// `SecretBytes` and is zeroed when the key is released.
public final class Ed25519PrivateKey: Sendable {
    /// The libsodium secret key's size: seed and public key.
    public static let secretSize = 64
    /// The seed's size: what a key is made from.
    public static let seedSize = 32

    private let secret: SecretBytes
    /// The key that verifies this key's signatures.
    public let publicKey: Ed25519PublicKey

    /// A fresh random key.
    public convenience init() throws(CryptoError) {
        try Sodium.ensureInitialised()
        var publicBytes = [UInt8](repeating: 0, count: Ed25519PublicKey.size)
        let secret = SecretBytes(count: Self.secretSize) { buffer in
            _ = crypto_sign_keypair(&publicBytes, buffer.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
        }
        try self.init(secret: secret, publicKey: Ed25519PublicKey(bytes: publicBytes))
    }

    /// The key derived from a 32-byte seed (deterministic).
    public convenience init(seed: [UInt8]) throws(CryptoError) {
        try Sodium.ensureInitialised()
        guard seed.count == Self.seedSize else {
            throw .invalidLength(what: "Ed25519 seed", expected: Self.seedSize, actual: seed.count)
        }
        var publicBytes = [UInt8](repeating: 0, count: Ed25519PublicKey.size)
        let secret = SecretBytes(count: Self.secretSize) { buffer in
            _ = crypto_sign_seed_keypair(
                &publicBytes, buffer.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil, seed)
        }
        try self.init(secret: secret, publicKey: Ed25519PublicKey(bytes: publicBytes))
    }

    /// From the 64-byte libsodium/Go secret key (seed ‖ public key). Fails if the public half does
    /// not belong to the seed.
    public convenience init(secretKey: [UInt8]) throws(CryptoError) {
        guard secretKey.count == Self.secretSize else {
            throw .invalidLength(what: "Ed25519 private key", expected: Self.secretSize, actual: secretKey.count)
        }
        let derived = try Ed25519PrivateKey(seed: Array(secretKey[0..<32]))
        guard Sodium.constantTimeEqual(derived.publicKey.bytes, Array(secretKey[32..<64])) else {
            throw .keyMismatch
        }
        self.init(secret: derived.secret, publicKey: derived.publicKey)
    }

    /// From the reference's identity file fields: base64 of the 64-byte private key and of the
    /// 32-byte public key, which must match.
    public convenience init(base64 privateText: String, publicKey publicText: String? = nil) throws(CryptoError) {
        guard var bytes = try? Base64.decode(privateText), bytes.count == Self.secretSize else {
            throw .invalidBase64(what: "Ed25519 private key")
        }
        defer { Sodium.zero(&bytes) }
        try self.init(secretKey: bytes)
        if let publicText, try Ed25519PublicKey(base64: publicText) != publicKey { throw .keyMismatch }
    }

    private init(secret: SecretBytes, publicKey: Ed25519PublicKey) {
        self.secret = secret
        self.publicKey = publicKey
    }

    /// The 64-byte secret key in the reference's base64 text form.
    public var base64: String { secret.withUnsafeBytes { Base64.encode($0) } }

    /// The 32-byte seed, for sealing at rest.
    public var seed: SecretBytes { SecretBytes(copying: secret.withUnsafeBytes { Array($0.prefix(Self.seedSize)) }) }

    /// A detached signature of `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Ed25519PublicKey.signatureSize)
        secret.withUnsafeBytes { key in
            Sodium.withBytes(message) { pointer, count in
                _ = crypto_sign_detached(
                    &signature, nil, pointer, UInt64(count), key.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
            }
        }
        return signature
    }

    /// A detached signature of the UTF-8 bytes of `text` (the registry's challenge strings).
    public func sign(_ text: String) -> [UInt8] { sign(Array(text.utf8)) }
}
