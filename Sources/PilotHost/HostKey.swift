public import PilotCrypto
import PilotWire

/// The host's X25519 key pair, to which identity files are sealed (`IdentityFile`): another
/// host exports an identity to this one's public key (`pilotctl host-key`).
///
/// Derived from the master key with HKDF-SHA256 under a context of its own, not stored: it
/// needs no file of its own, is the same at every start, and goes wherever the master key goes
/// (a restored master key brings it back). Nothing else is derived with this context, and the
/// master key itself never leaves the box that seals keys at rest.
public struct HostKey: Sendable {
    /// The HKDF salt and info: what the derived key is for, and which version of the rule.
    static let salt = Array("pilot-host host key".utf8)
    static let info = Array("pilot-host/identity-files/x25519/v1".utf8)

    /// The key pair; its private half opens identity files sealed to this host.
    public let keyPair: X25519KeyPair

    /// The host key of `masterKey`.
    public init(masterKey: SecretBytes) throws(CryptoError) {
        let pseudoRandomKey = HKDF.extract(salt: Self.salt, inputKeyMaterial: masterKey)
        let derived = try HKDF.expand(pseudoRandomKey: pseudoRandomKey, info: Self.info, length: X25519KeyPair.size)
        var scalar = derived.bytes
        defer { Sodium.zero(&scalar) }
        keyPair = try X25519KeyPair(privateKey: scalar)
    }

    /// The 32-byte public key.
    public var publicKey: [UInt8] { keyPair.publicKey }

    /// The public key as `pilotctl host-key` prints it and `--to-host-key` takes it: standard
    /// base64 of its 32 bytes.
    public var base64: String { Base64.encode(keyPair.publicKey) }

    /// A host key given as text (`--to-host-key`): base64 of 32 bytes, or nil.
    public static func publicKey(base64 text: String) -> [UInt8]? {
        guard let bytes = try? Base64.decode(text.trimmingWhitespace), bytes.count == X25519KeyPair.size else { return nil }
        return bytes
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and line ends (a key pasted from a terminal).
    fileprivate var trimmingWhitespace: String {
        let isSpace = { (character: Character) in character == " " || character == "\t" || character == "\n" || character == "\r" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
