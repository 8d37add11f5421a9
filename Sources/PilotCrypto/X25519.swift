import CSodium

/// An X25519 key pair for tunnel key agreement. pilot-host keeps one per identity: then every
/// AES key is shared by exactly two parties, as between two daemons.
public final class X25519KeyPair: Sendable {
    /// The size of a key and of a shared secret.
    public static let size = 32

    /// The private scalar; read only in this module (`SealedBox` opens with it).
    let secret: SecretBytes
    /// The 32-byte public key, sent in `PILK` and `PILA`.
    public let publicKey: [UInt8]

    /// A fresh random key pair.
    public convenience init() throws(CryptoError) {
        try self.init(privateKey: Sodium.randomBytes(Self.size))
    }

    /// The key pair of a 32-byte private scalar (clamped by X25519 itself).
    public init(privateKey: [UInt8]) throws(CryptoError) {
        try Sodium.ensureInitialised()
        guard privateKey.count == Self.size else {
            throw .invalidLength(what: "X25519 private key", expected: Self.size, actual: privateKey.count)
        }
        secret = SecretBytes(copying: privateKey)
        var publicKey = [UInt8](repeating: 0, count: Self.size)
        _ = crypto_scalarmult_base(&publicKey, privateKey)
        self.publicKey = publicKey
    }

    /// The raw X25519 shared secret with `peerPublicKey`; throws for a low-order peer key (the
    /// all-zero result), which would make the tunnel key predictable.
    public func sharedSecret(with peerPublicKey: [UInt8]) throws(CryptoError) -> SecretBytes {
        guard peerPublicKey.count == Self.size else {
            throw .invalidLength(what: "peer X25519 public key", expected: Self.size, actual: peerPublicKey.count)
        }
        return try SecretBytes(count: Self.size) { (output) throws(CryptoError) in
            let status = secret.withUnsafeBytes { scalar in
                crypto_scalarmult(
                    output.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil,
                    scalar.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil, peerPublicKey)
            }
            guard status == 0 else { throw .weakPublicKey }
        }
    }
}
