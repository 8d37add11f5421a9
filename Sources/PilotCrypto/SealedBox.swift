import CSodium

/// libsodium's sealed box (`crypto_box_seal`): a message anyone can seal to an X25519 public
/// key and only the holder of its private key can open. Each seal makes a fresh ephemeral key
/// pair; the output is its public key (32) ‖ XSalsa20-Poly1305 ciphertext ‖ MAC (16). It proves
/// nothing about the sender: whoever needs that signs what is sealed.
public enum SealedBox {
    /// How much longer a sealed message is than the message.
    public static let overhead = Int(crypto_box_sealbytes())

    /// `message` sealed to `recipient`, a 32-byte X25519 public key.
    public static func seal(_ message: [UInt8], to recipient: [UInt8]) throws(CryptoError) -> [UInt8] {
        try Sodium.ensureInitialised()
        guard recipient.count == X25519KeyPair.size else {
            throw .invalidLength(what: "X25519 public key", expected: X25519KeyPair.size, actual: recipient.count)
        }
        var sealed = [UInt8](repeating: 0, count: message.count + overhead)
        let status = Sodium.withBytes(message) { pointer, count in
            crypto_box_seal(&sealed, pointer, UInt64(count), recipient)
        }
        guard status == 0 else { throw .weakPublicKey }
        return sealed
    }

    /// What `seal` sealed to `keyPair`'s public key; throws `authenticationFailed` when it was
    /// sealed to another key, or any byte changed.
    public static func open(_ sealed: [UInt8], with keyPair: X25519KeyPair) throws(CryptoError) -> SecretBytes {
        try Sodium.ensureInitialised()
        guard sealed.count >= overhead else { throw .authenticationFailed }
        return try SecretBytes(count: sealed.count - overhead) { (output) throws(CryptoError) in
            var scratch: UInt8 = 0
            let status = keyPair.secret.withUnsafeBytes { secret in
                withUnsafeMutablePointer(to: &scratch) { placeholder in
                    crypto_box_seal_open(
                        output.bindMemory(to: UInt8.self).baseAddress ?? placeholder, sealed, UInt64(sealed.count), keyPair.publicKey,
                        secret.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
                }
            }
            guard status == 0 else { throw .authenticationFailed }
        }
    }
}
