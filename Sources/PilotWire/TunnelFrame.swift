/// A datagram of the tunnel layer: every UDP payload that is not a beacon message starts with one
/// of five 4-byte magics (`docs/PROTOCOL.md §5.1`).
///
/// | magic | after the magic                                               | size        |
/// |-------|---------------------------------------------------------------|-------------|
/// | PILT  | a plaintext packet                                            | 4 + packet  |
/// | PILS  | sender node u32, nonce 12, ciphertext ‖ 16-byte tag           | ≥ 36        |
/// | PILK  | sender node u32, X25519 public key 32                         | 40          |
/// | PILA  | sender node u32, X25519 32, Ed25519 public key 32, signature 64 | 136       |
/// | PILP  | nothing: a NAT punch                                          | 4           |
public enum TunnelFrame: Hashable, Sendable {
    /// `PILT`: a plaintext packet (what 1.18 sends before a session exists, or with encryption
    /// off).
    case plaintext(packet: ArraySlice<UInt8>)
    /// `PILS`: a sealed packet.
    case encrypted(EncryptedFrame)
    /// `PILK`: an unauthenticated key exchange, or 1.18's request for a `PILA`.
    case keyExchange(KeyExchange)
    /// `PILA`: a key exchange signed by the sender's Ed25519 identity.
    case authenticatedKeyExchange(AuthenticatedKeyExchange)
    /// `PILP`: a NAT punch; it carries nothing.
    case punch

    /// The magic numbers, as big-endian integers of their ASCII bytes.
    public enum Magic: UInt32, Sendable, CaseIterable {
        /// "PILT".
        case plaintext = 0x5049_4C54
        /// "PILS".
        case encrypted = 0x5049_4C53
        /// "PILK".
        case keyExchange = 0x5049_4C4B
        /// "PILA".
        case authenticatedKeyExchange = 0x5049_4C41
        /// "PILP".
        case punch = 0x5049_4C50
    }

    /// Beacon messages share the tunnel socket; their first byte is below this value, while every
    /// tunnel frame starts with "P" (0x50).
    public static let beaconTypeLimit: UInt8 = 0x10

    /// The frame's magic.
    public var magic: Magic {
        switch self {
        case .plaintext: .plaintext
        case .encrypted: .encrypted
        case .keyExchange: .keyExchange
        case .authenticatedKeyExchange: .authenticatedKeyExchange
        case .punch: .punch
        }
    }

    /// Decodes one whole datagram; throws on an unknown magic, a short frame, or bytes left over (a
    /// PILT takes every byte after its magic).
    public init(decoding bytes: ArraySlice<UInt8>) throws(WireError) {
        var reader = ByteReader(bytes)
        let raw = try reader.readUInt32("tunnel magic")
        guard let magic = Magic(rawValue: raw) else { throw .unknownType(field: "tunnel magic", value: raw) }
        switch magic {
        case .plaintext:
            self = .plaintext(packet: reader.readRemaining())
        case .encrypted:
            self = .encrypted(try EncryptedFrame(decodingBody: &reader))
        case .keyExchange:
            self = .keyExchange(try KeyExchange(decodingBody: &reader))
        case .authenticatedKeyExchange:
            self = .authenticatedKeyExchange(try AuthenticatedKeyExchange(decodingBody: &reader))
        case .punch:
            try reader.expectEnd("PILP punch")
            self = .punch
        }
    }

    /// Decodes one whole datagram (see `init(decoding:)` of a slice).
    public init(decoding bytes: [UInt8]) throws(WireError) {
        try self.init(decoding: bytes[...])
    }

    /// The node that says it sent the frame (PILS, PILK, PILA); nil for PILT and PILP.
    public var sender: UInt32? {
        switch self {
        case .encrypted(let frame): frame.sender
        case .keyExchange(let exchange): exchange.node
        case .authenticatedKeyExchange(let exchange): exchange.node
        case .plaintext, .punch: nil
        }
    }

    /// Appends the frame, magic first, to `writer`.
    public func encode(into writer: inout ByteWriter) {
        writer.writeUInt32(magic.rawValue)
        switch self {
        case .plaintext(let packet): writer.writeBytes(packet)
        case .encrypted(let frame): frame.encodeBody(into: &writer)
        case .keyExchange(let exchange): exchange.encodeBody(into: &writer)
        case .authenticatedKeyExchange(let exchange): exchange.encodeBody(into: &writer)
        case .punch: break
        }
    }

    /// The frame's bytes, as sent in one UDP datagram.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 4 + encodedBodySize)
        encode(into: &writer)
        return writer.bytes
    }

    private var encodedBodySize: Int {
        switch self {
        case .plaintext(let packet): packet.count
        case .encrypted(let frame): 16 + frame.sealed.count
        case .keyExchange: KeyExchange.bodySize
        case .authenticatedKeyExchange: AuthenticatedKeyExchange.bodySize
        case .punch: 0
        }
    }
}

/// The 12-byte AES-GCM nonce of a `PILS` frame: a 4-byte random prefix that names the sender's
/// session epoch, then a big-endian counter starting at 1.
public struct TunnelNonce: Hashable, Sendable {
    /// The nonce's size on the wire: 4 prefix bytes and an 8-byte counter.
    public static let size = 12

    /// The sender's session epoch, random per session.
    public var prefix: UInt32
    /// The message number within the epoch, from 1; never repeats under one key.
    public var counter: UInt64

    /// A nonce from its two parts.
    public init(prefix: UInt32, counter: UInt64) {
        self.prefix = prefix
        self.counter = counter
    }

    /// Reads the 12 nonce bytes (prefix, then counter, both big-endian).
    public init(decoding reader: inout ByteReader) throws(WireError) {
        prefix = try reader.readUInt32("nonce prefix")
        counter = try reader.readUInt64("nonce counter")
    }

    /// Appends the 12 nonce bytes.
    public func encode(into writer: inout ByteWriter) {
        writer.writeUInt32(prefix)
        writer.writeUInt64(counter)
    }

    /// The 12 nonce bytes.
    public var bytes: [UInt8] {
        var writer = ByteWriter(capacity: Self.size)
        encode(into: &writer)
        return writer.bytes
    }
}

/// `PILS`: an AES-256-GCM sealed packet. Only the sender is named; the receiver finds the session
/// by (sender, nonce prefix). The AEAD's additional data is the sender id (`additionalData`).
public struct EncryptedFrame: Hashable, Sendable {
    /// The size of the AES-GCM tag at the end of `sealed`.
    public static let tagSize = 16
    /// Bytes after the magic before the ciphertext: sender and nonce.
    public static let headerSize = 4 + TunnelNonce.size

    /// The node id the sender claims; checked by the tag (it is the additional data).
    public var sender: UInt32
    /// The nonce the packet was sealed with.
    public var nonce: TunnelNonce
    /// Ciphertext followed by the 16-byte tag.
    public var sealed: ArraySlice<UInt8>

    /// A frame from its parts; `sealed` must hold at least the tag to decode again.
    public init(sender: UInt32, nonce: TunnelNonce, sealed: ArraySlice<UInt8>) {
        self.sender = sender
        self.nonce = nonce
        self.sealed = sealed
    }

    init(decodingBody reader: inout ByteReader) throws(WireError) {
        sender = try reader.readUInt32("PILS sender")
        nonce = try TunnelNonce(decoding: &reader)
        guard reader.remaining >= Self.tagSize else {
            throw .truncated(field: "PILS tag", needed: Self.tagSize, available: reader.remaining)
        }
        sealed = reader.readRemaining()
    }

    func encodeBody(into writer: inout ByteWriter) {
        writer.writeUInt32(sender)
        nonce.encode(into: &writer)
        writer.writeBytes(sealed)
    }

    /// Where the ciphertext starts in a whole PILS datagram: after the magic, sender and nonce.
    public static let sealedOffset = 4 + headerSize

    /// A whole PILS datagram whose ciphertext and tag (`sealedCount` bytes) `seal` writes into
    /// the buffer it is given (at `sealedOffset`), returning the nonce counter it used: the
    /// header is written after, so the datagram is built in one buffer without a copy.
    public static func datagram(
        sender: UInt32, noncePrefix: UInt32, sealedCount: Int, seal: (UnsafeMutableRawBufferPointer) throws -> UInt64
    ) rethrows -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: sealedOffset + sealedCount) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            let counter = try seal(UnsafeMutableRawBufferPointer(rebasing: raw[sealedOffset...]))
            // The header, big-endian as the frame's own encoding writes it: magic, sender, nonce.
            raw.storeBytes(of: TunnelFrame.Magic.encrypted.rawValue.bigEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: sender.bigEndian, toByteOffset: 4, as: UInt32.self)
            raw.storeBytes(of: noncePrefix.bigEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 12, as: UInt64.self)
            initialized = sealedOffset + sealedCount
        }
    }

    /// The AEAD additional data of 1.18: the sender's node id, 4 bytes big-endian.
    public static func additionalData(sender: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: sender >> 24), UInt8(truncatingIfNeeded: sender >> 16),
         UInt8(truncatingIfNeeded: sender >> 8), UInt8(truncatingIfNeeded: sender)]
    }

    /// The additional data of this frame: its sender id.
    public var additionalData: [UInt8] { Self.additionalData(sender: sender) }
}

/// `PILK`: an unauthenticated X25519 key exchange. 1.18 sends it after a `PILA` as a request for
/// the receiver's `PILA` when it holds no session ("key request").
public struct KeyExchange: Hashable, Sendable {
    static let bodySize = 4 + 32

    /// The sender's node id.
    public var node: UInt32
    /// The sender's X25519 public key, 32 bytes.
    public var x25519: [UInt8]

    /// A key exchange; throws unless `x25519` is 32 bytes.
    public init(node: UInt32, x25519: [UInt8]) throws(WireError) {
        guard x25519.count == 32 else {
            throw .invalidValue(field: "PILK X25519 key", reason: "\(x25519.count) bytes, need 32")
        }
        self.node = node
        self.x25519 = x25519
    }

    init(decodingBody reader: inout ByteReader) throws(WireError) {
        node = try reader.readUInt32("PILK node")
        x25519 = Array(try reader.readBytes(32, "PILK X25519 key"))
        try reader.expectEnd("PILK")
    }

    func encodeBody(into writer: inout ByteWriter) {
        writer.writeUInt32(node)
        writer.writeBytes(x25519)
    }
}

/// `PILA`: an X25519 key exchange signed by the node's Ed25519 identity over
/// `"auth"` ‖ node u32 ‖ X25519 key (`signedMessage`). The receiver checks the Ed25519 key
/// against the registry's before trusting it.
public struct AuthenticatedKeyExchange: Hashable, Sendable {
    static let bodySize = 4 + 32 + 32 + 64

    /// The sender's node id.
    public var node: UInt32
    /// The sender's X25519 public key, 32 bytes.
    public var x25519: [UInt8]
    /// The sender's Ed25519 public key, 32 bytes: it must be the key the registry holds for `node`.
    public var ed25519: [UInt8]
    /// The Ed25519 signature of `signedMessage`, 64 bytes.
    public var signature: [UInt8]

    /// A signed key exchange; throws unless the key and signature sizes are 32, 32 and 64 bytes.
    public init(node: UInt32, x25519: [UInt8], ed25519: [UInt8], signature: [UInt8]) throws(WireError) {
        for (field, value, size) in [("X25519 key", x25519, 32), ("Ed25519 key", ed25519, 32), ("signature", signature, 64)]
        where value.count != size {
            throw .invalidValue(field: "PILA \(field)", reason: "\(value.count) bytes, need \(size)")
        }
        self.node = node
        self.x25519 = x25519
        self.ed25519 = ed25519
        self.signature = signature
    }

    init(decodingBody reader: inout ByteReader) throws(WireError) {
        node = try reader.readUInt32("PILA node")
        x25519 = Array(try reader.readBytes(32, "PILA X25519 key"))
        ed25519 = Array(try reader.readBytes(32, "PILA Ed25519 key"))
        signature = Array(try reader.readBytes(64, "PILA signature"))
        try reader.expectEnd("PILA")
    }

    func encodeBody(into writer: inout ByteWriter) {
        writer.writeUInt32(node)
        writer.writeBytes(x25519)
        writer.writeBytes(ed25519)
        writer.writeBytes(signature)
    }

    /// The 40 bytes the signature covers: ASCII "auth" (no colon), node id, X25519 key.
    public static func signedMessage(node: UInt32, x25519: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 40)
        writer.writeBytes("auth".utf8)
        writer.writeUInt32(node)
        writer.writeBytes(x25519)
        return writer.bytes
    }

    /// The bytes this frame's signature covers.
    public var signedMessage: [UInt8] { Self.signedMessage(node: node, x25519: x25519) }
}
