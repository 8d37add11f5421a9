/// The registry's TCP framing: each message is a big-endian u32 length, then that many bytes of
/// a JSON object with a `type` key (`docs/PROTOCOL.md §8.1`).
///
/// A client may instead open with `"PILT"` 0x01 to switch the connection to the binary mode
/// (`[u32 length incl. type][type u8][payload]`); `RegistryFrameDecoder` reports that opening
/// rather than misreading it as a 1.3 GB length.
public enum RegistryFrame {
    /// The largest message either side accepts.
    public static let maxSize = 1 << 20
    /// The binary-mode opening: "PILT" then version 1.
    public static let binaryModePreamble: [UInt8] = Array("PILT".utf8) + [0x01]

    /// Frames an encoded message.
    public static func encode(_ message: RegistryMessage) throws(WireError) -> [UInt8] {
        try LengthPrefixedFrames.frame(message.json.encoded(), maxSize: maxSize, field: "registry message")
    }
}

/// Splits a registry TCP byte stream into messages. Feed it bytes as they arrive; it never holds
/// more than one frame (at most `RegistryFrame.maxSize`) and rejects a longer length at once,
/// before any of that frame is buffered.
public struct RegistryFrameDecoder: Sendable {
    /// What the next complete unit of the stream is.
    public enum Event: Hashable, Sendable {
        /// A whole registry message.
        case message(RegistryMessage)
        /// A whole frame whose body is not a registry message (bad JSON, no `type`). The framing
        /// is intact, so the stream goes on: answer with an error.
        case malformed(WireError)
        /// The peer opened with the binary-mode preamble.
        case binaryModeRequested
    }

    private var frames: LengthPrefixedFrames.Decoder
    private var sawFirstBytes = false
    /// The longest frame body accepted.
    public var maxSize: Int { frames.maxSize }

    /// A decoder of frames of at most `maxSize` bytes.
    public init(maxSize: Int = RegistryFrame.maxSize) {
        frames = LengthPrefixedFrames.Decoder(maxSize: maxSize, field: "registry frame")
    }

    /// Bytes received but not yet part of a complete frame.
    public var bufferedCount: Int { frames.bufferedCount }

    /// Adds bytes received from the connection.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        frames.append(bytes)
    }

    /// The next complete frame, `nil` if more bytes are needed. Throws only when the framing
    /// itself is broken (a length over the limit): the stream is then unusable, close it.
    public mutating func next() throws(WireError) -> Event? {
        if !sawFirstBytes {
            let preamble = RegistryFrame.binaryModePreamble
            let pending = frames.pending
            if pending.count < preamble.count, pending.elementsEqual(preamble.prefix(pending.count)) {
                return nil  // could still be the preamble
            }
            sawFirstBytes = true
            if pending.starts(with: preamble) {
                frames.discard(preamble.count)
                return .binaryModeRequested
            }
        }
        guard let body = try frames.next() else { return nil }
        do {
            return .message(try RegistryMessage(decoding: body))
        } catch {
            return .malformed(error)
        }
    }
}

/// One registry message: a JSON object whose `type` names it.
public struct RegistryMessage: Hashable, Sendable {
    /// The whole message, `type` included: always an object with a string `type`.
    public var json: JSON

    /// Builds a message of `type` with `fields`.
    public init(type: String, _ fields: [String: JSON] = [:]) {
        var members = fields
        members["type"] = .string(type)
        json = .object(members)
    }

    /// A message from JSON; throws unless it is an object with a string `type`.
    public init(json: JSON) throws(WireError) {
        guard case .object(let members) = json else {
            throw .invalidValue(field: "registry message", reason: "not a JSON object")
        }
        guard case .string = members["type"] else {
            throw .invalidValue(field: "registry message", reason: "no string \"type\"")
        }
        self.json = json
    }

    /// Parses a frame body; throws unless it is a JSON object with a string `type`.
    public init(decoding bytes: some Collection<UInt8>) throws(WireError) {
        try self.init(json: JSON(parsing: bytes))
    }

    /// The message's `type` (for example `register`, `lookup_ok`, `error`).
    public var type: String { json["type"]?.stringValue ?? "" }

    /// The member `key`.
    public subscript(key: String) -> JSON? { json[key] }

    /// A string field, or a typed error naming it.
    public func string(_ key: String) throws(WireError) -> String {
        guard let value = json[key]?.stringValue else { throw missing(key, "a string") }
        return value
    }

    /// A non-negative integer field that fits `UInt32` (node ids), or a typed error naming it.
    public func nodeID(_ key: String) throws(WireError) -> UInt32 {
        guard let value = json[key]?.integerValue, let node = UInt32(exactly: value) else {
            throw missing(key, "a node id (0...4294967295)")
        }
        return node
    }

    /// A boolean field, or a typed error naming it.
    public func bool(_ key: String) throws(WireError) -> Bool {
        guard let value = json[key]?.boolValue else { throw missing(key, "a boolean") }
        return value
    }

    private func missing(_ key: String, _ kind: String) -> WireError {
        .invalidValue(field: "\(type).\(key)", reason: "must be \(kind)")
    }
}

extension RegistryMessage {
    /// A tag as the registry keeps it: without the leading `#` that `set_tags` and `find_by_tag`
    /// may carry. (Whether it is a valid tag is the registry's to judge.)
    public static func storedTag(_ text: String) -> String {
        text.hasPrefix("#") ? String(text.dropFirst()) : text
    }

    /// Whether `text` is 1 to `maxLength` lowercase letters, digits and inner hyphens: the rule
    /// for hostnames (63), network names (63), tags and directory categories (32).
    public static func isLabel(_ text: String, maxLength: Int) -> Bool {
        let bytes = Array(text.utf8)
        let allowed = { (byte: UInt8) in (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) }
        guard (1...maxLength).contains(bytes.count), let first = bytes.first, let last = bytes.last else { return false }
        return allowed(first) && allowed(last) && bytes.allSatisfy { allowed($0) || $0 == 0x2D }
    }
}
