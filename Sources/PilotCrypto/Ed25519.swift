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

    /// The public half of a libsodium secret key (seed ‖ public key).
    fileprivate init(halfOf secretKey: UnsafeRawBufferPointer) {
        bytes = Array(secretKey[Self.size...])
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

/// An Ed25519 signing key: the 64-byte libsodium secret key (seed ‖ public key), in one heap
/// object that zeroes it when the last copy of the key goes away.
///
/// One object, not a key object, a `SecretBytes` and its buffer and a public key array: a host
/// keeps the key of every identity that has signed (heartbeats sign every 30 s), and each
/// allocation costs its bytes and malloc's own. The public key is read from the secret key's
/// second half when asked for.
public struct Ed25519PrivateKey: @unchecked Sendable {
    // @unchecked: `secret` (a ManagedBuffer, which is never Sendable) is written by `Secret.make`
    // before the key exists and only read afterwards.

    /// The libsodium secret key's size: seed and public key.
    public static let secretSize = 64
    /// The seed's size: what a key is made from.
    public static let seedSize = 32

    private let secret: Secret

    /// A fresh random key.
    public init() throws(CryptoError) {
        try Sodium.ensureInitialised()
        secret = Secret.make { key in
            var publicBytes = [UInt8](repeating: 0, count: Ed25519PublicKey.size)
            _ = crypto_sign_keypair(&publicBytes, key)
        }
    }

    /// The key derived from a 32-byte seed (deterministic).
    public init(seed: [UInt8]) throws(CryptoError) {
        try Sodium.ensureInitialised()
        guard seed.count == Self.seedSize else {
            throw .invalidLength(what: "Ed25519 seed", expected: Self.seedSize, actual: seed.count)
        }
        secret = Secret.make { key in
            var publicBytes = [UInt8](repeating: 0, count: Ed25519PublicKey.size)
            _ = crypto_sign_seed_keypair(&publicBytes, key, seed)
        }
    }

    /// From the 64-byte libsodium/Go secret key (seed ‖ public key). Fails if the public half does
    /// not belong to the seed.
    public init(secretKey: [UInt8]) throws(CryptoError) {
        guard secretKey.count == Self.secretSize else {
            throw .invalidLength(what: "Ed25519 private key", expected: Self.secretSize, actual: secretKey.count)
        }
        let derived = try Ed25519PrivateKey(seed: Array(secretKey[0..<32]))
        guard Sodium.constantTimeEqual(derived.publicKey.bytes, Array(secretKey[32..<64])) else {
            throw .keyMismatch
        }
        self = derived
    }

    /// From the reference's identity file fields: base64 of the 64-byte private key and of the
    /// 32-byte public key, which must match.
    public init(base64 privateText: String, publicKey publicText: String? = nil) throws(CryptoError) {
        guard var bytes = try? Base64.decode(privateText), bytes.count == Self.secretSize else {
            throw .invalidBase64(what: "Ed25519 private key")
        }
        defer { Sodium.zero(&bytes) }
        try self.init(secretKey: bytes)
        if let publicText, try Ed25519PublicKey(base64: publicText) != publicKey { throw .keyMismatch }
    }

    /// The key that verifies this key's signatures.
    public var publicKey: Ed25519PublicKey { secret.withUnsafeBytes { Ed25519PublicKey(halfOf: $0) } }

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

    /// The 64 bytes of the secret key, in the object's own allocation (after its header), zeroed
    /// in deinit.
    private final class Secret: ManagedBuffer<Void, UInt8> {
        /// A secret key written by `fill`, given its 64 bytes zeroed.
        static func make(_ fill: (UnsafeMutablePointer<UInt8>) -> Void) -> Secret {
            // `create` makes an instance of the class it is called on.
            let secret = unsafeDowncast(create(minimumCapacity: Ed25519PrivateKey.secretSize) { _ in }, to: Secret.self)
            secret.withUnsafeMutablePointerToElements { key in
                key.initialize(repeating: 0, count: Ed25519PrivateKey.secretSize)
                fill(key)
            }
            return secret
        }

        deinit {
            withUnsafeMutablePointerToElements { key in Sodium.zero(key, count: Ed25519PrivateKey.secretSize) }
        }

        func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
            withUnsafeMutablePointerToElements { key in body(UnsafeRawBufferPointer(start: key, count: Ed25519PrivateKey.secretSize)) }
        }
    }
}
