import CSodium

/// Seals secrets at rest under the host master key: XSalsa20-Poly1305 (`crypto_secretbox_easy`)
/// with a random 24-byte nonce stored in front of the ciphertext.
///
/// Sealed layout: nonce 24 ‖ MAC 16 ‖ ciphertext. Random nonces are safe at this size.
public final class SecretBox: Sendable {
    /// The master key's size.
    public static let keySize = Int(crypto_secretbox_KEYBYTES)
    /// The random nonce's size, stored first in a sealed secret.
    public static let nonceSize = Int(crypto_secretbox_NONCEBYTES)
    /// How much longer a sealed secret is than the secret: nonce and MAC.
    public static let overhead = nonceSize + Int(crypto_secretbox_MACBYTES)

    private let key: SecretBytes

    /// A box under a 32-byte master key.
    public init(key: SecretBytes) throws(CryptoError) {
        try Sodium.ensureInitialised()
        guard key.count == Self.keySize else {
            throw .invalidLength(what: "master key", expected: Self.keySize, actual: key.count)
        }
        self.key = key
    }

    /// A new random master key.
    public static func generateKey() throws(CryptoError) -> SecretBytes {
        try Sodium.ensureInitialised()
        return SecretBytes(count: keySize) { buffer in
            randombytes_buf(buffer.baseAddress.unsafelyAssumingNonNil, buffer.count)
        }
    }

    /// Seals `secret` under a fresh random nonce.
    public func seal(_ secret: SecretBytes) -> [UInt8] {
        secret.withUnsafeBytes { seal(Array($0)) }
    }

    /// Seals `plaintext` under a fresh random nonce: nonce ‖ MAC ‖ ciphertext.
    public func seal(_ plaintext: [UInt8]) -> [UInt8] {
        let nonce = Sodium.randomBytes(Self.nonceSize)
        var sealed = [UInt8](repeating: 0, count: Self.overhead + plaintext.count)
        key.withUnsafeBytes { keyBytes in
            Sodium.withBytes(plaintext) { message, count in
                sealed.withUnsafeMutableBufferPointer { output in
                    let out = output.baseAddress.unsafelyAssumingNonNil
                    out.update(from: nonce, count: Self.nonceSize)
                    _ = crypto_secretbox_easy(
                        out + Self.nonceSize, message, UInt64(count), nonce,
                        keyBytes.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
                }
            }
        }
        return sealed
    }

    /// Opens what `seal` produced; throws `authenticationFailed` for a wrong key or any change.
    public func open(_ sealed: [UInt8]) throws(CryptoError) -> SecretBytes {
        guard sealed.count >= Self.overhead else { throw .authenticationFailed }
        let nonce = Array(sealed[0..<Self.nonceSize])
        let box = Array(sealed[Self.nonceSize...])
        return try SecretBytes(count: box.count - Int(crypto_secretbox_MACBYTES)) { (output) throws(CryptoError) in
            var scratch: UInt8 = 0
            let status = key.withUnsafeBytes { keyBytes in
                withUnsafeMutablePointer(to: &scratch) { placeholder in
                    crypto_secretbox_open_easy(
                        output.bindMemory(to: UInt8.self).baseAddress ?? placeholder, box, UInt64(box.count), nonce,
                        keyBytes.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
                }
            }
            guard status == 0 else { throw .authenticationFailed }
        }
    }
}
