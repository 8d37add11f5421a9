public import PilotCrypto
public import PilotWire

/// The file an identity moves in (`pilotctl identity export ... > NAME.pilot`): its parcel
/// (`IdentityParcel`), signed by the identity's own Ed25519 key and sealed to the destination's
/// host key (`HostKey`) with libsodium's sealed box. Layout in docs/PROTOCOL.md §7.1:
///
///     magic "PILOT-ID" (8) ‖ version u8 (1) ‖ recipient host key (32) ‖
///     crypto_box_seal(parcel ‖ Ed25519 signature (64) over "pilot-identity-file:v1:" ‖ parcel)
///
/// The recipient stands in the clear too, so a file for another host is told apart from a
/// damaged one before anything is opened; inside, the parcel names it again under the
/// signature.
public enum IdentityFile {
    /// The first eight bytes of every identity file.
    public static let magic = Array("PILOT-ID".utf8)
    /// The version this code writes and reads.
    public static let version: UInt8 = 1
    /// Magic, version and recipient.
    public static let headerSize = 8 + 1 + X25519KeyPair.size
    /// The largest file: it travels whole, base64 in one control frame of 1 MiB.
    public static let maxSize = 700 << 10
    /// What the signature covers before the parcel's bytes.
    static let signatureContext = Array("pilot-identity-file:v1:".utf8)

    /// `parcel` signed by `key` (the identity's own, whose public key the parcel carries) and
    /// sealed to the parcel's recipient; throws `tooLarge` past `maxSize`.
    public static func seal(_ parcel: IdentityParcel, signedBy key: Ed25519PrivateKey) throws(IdentityFileError) -> [UInt8] {
        var body = parcel.encoded()
        defer { Sodium.zero(&body) }
        let signature = key.sign(signatureContext + body)
        let size = headerSize + body.count + signature.count + SealedBox.overhead
        guard size <= maxSize else { throw .tooLarge(bytes: size, limit: maxSize) }
        let sealed: [UInt8]
        do { sealed = try SealedBox.seal(body + signature, to: parcel.recipient) } catch { throw .invalidHostKey }
        return magic + [version] + parcel.recipient + sealed
    }

    /// The parcel in `file`, opened with `hostKey` and checked: it is for this host, nothing
    /// was changed, the seed is the key it names, and that key signed it. The caller zeroes the
    /// parcel's seed when done.
    public static func open(_ file: [UInt8], with hostKey: HostKey) throws(IdentityFileError) -> IdentityParcel {
        guard file.count >= headerSize, Array(file[0..<8]) == magic else { throw .notAnIdentityFile }
        guard file[8] == version else { throw .unsupportedVersion(file[8]) }
        let recipient = Array(file[9..<headerSize])
        guard recipient == hostKey.publicKey else {
            throw .sealedToAnotherHost(file: Base64.encode(recipient), host: hostKey.base64)
        }
        let opened: SecretBytes
        do { opened = try SealedBox.open(Array(file[headerSize...]), with: hostKey.keyPair) } catch { throw .damaged }
        var contents = opened.bytes
        defer { Sodium.zero(&contents) }
        guard contents.count > Ed25519PublicKey.signatureSize else { throw .damaged }
        let body = Array(contents.dropLast(Ed25519PublicKey.signatureSize))
        let signature = Array(contents.suffix(Ed25519PublicKey.signatureSize))
        guard var parcel = try? IdentityParcel(decoding: body), parcel.recipient == recipient else { throw .damaged }
        guard let key = try? Ed25519PrivateKey(seed: parcel.seed), key.publicKey.bytes == parcel.publicKey,
            key.publicKey.isValidSignature(signature, for: signatureContext + body)
        else {
            Sodium.zero(&parcel.seed)
            throw .damaged
        }
        return parcel
    }
}

/// Why an identity file cannot be made or taken; each says what to do.
public enum IdentityFileError: Error, Hashable, Sendable, CustomStringConvertible {
    /// It does not start as an identity file does.
    case notAnIdentityFile
    /// A version this host does not read.
    case unsupportedVersion(UInt8)
    /// It was sealed to `file`, not to this host's key `host` (both base64).
    case sealedToAnotherHost(file: String, host: String)
    /// The seal does not open, or what is inside does not hold together or is not signed by
    /// the identity it carries.
    case damaged
    /// It would pass the size a control frame carries.
    case tooLarge(bytes: Int, limit: Int)
    /// The host key to seal to is not a usable X25519 key.
    case invalidHostKey

    public var description: String {
        switch self {
        case .notAnIdentityFile: "this is not a pilot-host identity file (it does not start with PILOT-ID)"
        case .unsupportedVersion(let version):
            "this identity file is version \(version); this host reads version \(IdentityFile.version)"
        case let .sealedToAnotherHost(file, host):
            "this file is sealed to another host key (\(file)); this host's key is \(host): export it again with --to-host-key \(host)"
        case .damaged: "the file is damaged or was altered: it does not open with this host's key, or its signature does not hold"
        case let .tooLarge(bytes, limit):
            "the identity file would be \(bytes) bytes, more than the \(limit) a move carries: export without --with-inbox, or clear the inbox first"
        case .invalidHostKey: "the destination host key is not a usable X25519 public key"
        }
    }
}
