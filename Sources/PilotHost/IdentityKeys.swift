public import PilotCrypto

/// Seals and unseals identity keys under the master key. `host.db` stores only the sealed Ed25519
/// seed; the key pair is rebuilt from it on load.
public struct IdentityKeys: Sendable {
    private let box: SecretBox

    public init(masterKey: SecretBytes) throws(CryptoError) {
        box = try SecretBox(key: masterKey)
    }

    public func seal(_ key: Ed25519PrivateKey) -> [UInt8] {
        box.seal(key.seed)
    }

    /// The key sealed in `sealed`; throws if the master key is not the one it was sealed with or
    /// the bytes were changed.
    public func unseal(_ sealed: [UInt8]) throws(CryptoError) -> Ed25519PrivateKey {
        let seed = try box.open(sealed)
        return try Ed25519PrivateKey(seed: seed.bytes)
    }
}
