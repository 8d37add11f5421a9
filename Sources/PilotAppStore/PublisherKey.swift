public import PilotCrypto
import PilotWire

/// A publisher's signing key file, in the official tools' format: the 64-byte Ed25519 private
/// key (seed ‖ public key) as 128 hex digits, mode 0600. `pilotctl appstore gen-key` writes it;
/// `sign` and `sign-catalogue` read it.
public enum PublisherKey {
    /// The file's text for `key`.
    public static func fileText(_ key: Ed25519PrivateKey) -> String {
        guard let secret = try? Base64.decode(key.base64) else { return "" }
        return Hex.lowercase(secret)
    }

    /// The key in `text` (surrounding whitespace ignored); `path` names the file in errors.
    public static func parse(_ text: String, path: String) throws(AppStoreError) -> Ed25519PrivateKey {
        guard var bytes = Hex.decode(text.trimmingWhitespace), bytes.count == Ed25519PrivateKey.secretSize else {
            throw .badKeyFile(path: path, reason: "expected 128 hex digits (a 64-byte Ed25519 private key)")
        }
        defer { for index in bytes.indices { bytes[index] = 0 } }
        do { return try Ed25519PrivateKey(secretKey: bytes) } catch {
            throw .badKeyFile(path: path, reason: "its public half does not match its seed")
        }
    }

    /// The `store.publisher` text of a key: `ed25519:<base64>`.
    public static func publisher(_ key: Ed25519PublicKey) -> String { "ed25519:" + key.base64 }
}
