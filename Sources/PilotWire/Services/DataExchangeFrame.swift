/// A data-exchange frame (port 1001, `docs/PROTOCOL.md §11.2`, and the 1.18 tagged form):
/// `u32 type ‖ u32 length ‖ payload`. Type 10 (tagged) wraps another frame with correlation
/// ids: `u16 meta length ‖ meta JSON {"message_id", "reply_to"} ‖ u32 inner type ‖ inner payload`.
public struct DataExchangeFrame: Hashable, Sendable {
    /// The data-exchange port.
    public static let port = Port.dataExchange
    /// The largest payload this side accepts: 1.18's limit (64 MiB; older daemons took 16 MiB).
    public static let maxPayload = 64 << 20
    /// The largest payload this side sends in one frame: what every daemon since the first takes.
    public static let maxSentPayload = 16 << 20

    /// The frame's type; unknown values stay representable.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The type number on the wire.
        public let rawValue: UInt32
        /// Any type number, known or not.
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// UTF-8 text.
        public static let text = Kind(rawValue: 1)
        /// Opaque bytes.
        public static let binary = Kind(rawValue: 2)
        /// A JSON document.
        public static let json = Kind(rawValue: 3)
        /// A file: `u16 name length ‖ name ‖ contents`.
        public static let file = Kind(rawValue: 4)
        /// 1.18's wrapper with correlation ids around another frame.
        public static let tagged = Kind(rawValue: 10)

        /// The name the reference uses in its ACK and in inbox records.
        public var description: String {
            switch self {
            case .text: "TEXT"
            case .binary: "BINARY"
            case .json: "JSON"
            case .file: "FILE"
            case .tagged: "TAGGED"
            default: "UNKNOWN(\(rawValue))"
            }
        }
    }

    /// What the payload is.
    public var kind: Kind
    /// The payload; at most `maxPayload` bytes are accepted.
    public var payload: [UInt8]

    /// A frame from its parts.
    public init(kind: Kind, payload: [UInt8]) {
        self.kind = kind
        self.payload = payload
    }

    /// A tagged frame around `inner`, with `messageID` (and `replyTo` when answering).
    public static func tagged(_ inner: DataExchangeFrame, messageID: String, replyTo: String? = nil) -> DataExchangeFrame {
        var meta: [String: JSON] = ["message_id": .string(messageID)]
        if let replyTo { meta["reply_to"] = .string(replyTo) }
        let encodedMeta = JSON.object(meta).encoded()
        var writer = ByteWriter(capacity: 6 + encodedMeta.count + inner.payload.count)
        writer.writeUInt16(UInt16(encodedMeta.count))
        writer.writeBytes(encodedMeta)
        writer.writeUInt32(inner.kind.rawValue)
        writer.writeBytes(inner.payload)
        return DataExchangeFrame(kind: .tagged, payload: writer.bytes)
    }

    /// The frame inside a tagged one, with its ids.
    public func untagged() throws(WireError) -> (frame: DataExchangeFrame, messageID: String?, replyTo: String?) {
        guard kind == .tagged else { return (self, nil, nil) }
        var reader = ByteReader(payload[...])
        let metaLength = Int(try reader.readUInt16("tagged meta length"))
        let meta = try JSON(parsing: try reader.readBytes(metaLength, "tagged meta"))
        guard meta.objectValue != nil else { throw .invalidValue(field: "tagged meta", reason: "must be a JSON object") }
        let inner = Kind(rawValue: try reader.readUInt32("tagged inner type"))
        guard inner != .tagged else { throw .invalidValue(field: "tagged inner type", reason: "a tagged frame cannot wrap another") }
        return (DataExchangeFrame(kind: inner, payload: Array(reader.readRemaining())), meta["message_id"]?.stringValue, meta["reply_to"]?.stringValue)
    }

    /// The longest file name a FILE frame carries (its length is a u16; names are base names).
    public static let maxFileName = 255

    /// A FILE frame: `u16 name length ‖ name ‖ contents`.
    public static func file(name: String, contents: [UInt8]) -> DataExchangeFrame {
        let encodedName = Array(name.utf8.prefix(maxFileName))
        var writer = ByteWriter(capacity: 2 + encodedName.count + contents.count)
        writer.writeUInt16(UInt16(encodedName.count))
        writer.writeBytes(encodedName)
        writer.writeBytes(contents)
        return DataExchangeFrame(kind: .file, payload: writer.bytes)
    }

    /// A FILE frame's name and contents. The name is the sender's: check it before using it as a
    /// path (`safeFileName`).
    public func fileParts() throws(WireError) -> (name: String, contents: ArraySlice<UInt8>) {
        guard kind == .file else { throw .invalidValue(field: "data exchange type", reason: "\(kind) is not FILE") }
        var reader = ByteReader(payload[...])
        let length = Int(try reader.readUInt16("file name length"))
        let name = try reader.readBytes(length, "file name")
        guard let text = String(validating: name, as: UTF8.self) else { throw .invalidValue(field: "file name", reason: "must be UTF-8") }
        return (text, reader.readRemaining())
    }

    /// `name` reduced to a base name that is safe in a directory: no path, no control
    /// characters, not `.` or `..`, at most 255 bytes; nil if nothing is left.
    public static func safeFileName(_ name: String) -> String? {
        let base = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        let cleaned = String(base.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
        guard !cleaned.isEmpty, cleaned != ".", cleaned != "..", cleaned.utf8.count <= maxFileName else { return nil }
        return cleaned
    }

    /// The frame's bytes: type, length, payload.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + payload.count)
        writer.writeUInt32(kind.rawValue)
        writer.writeUInt32(UInt32(payload.count))
        writer.writeBytes(payload)
        return writer.bytes
    }

    /// Frames out of a byte stream, as they complete.
    public struct Decoder: Sendable {
        private var queue = ByteQueue()
        /// The longest payload accepted; a longer length is an error before any of it is buffered.
        public let maxPayload: Int

        /// A decoder of frames with payloads of at most `maxPayload` bytes.
        public init(maxPayload: Int = DataExchangeFrame.maxPayload) {
            self.maxPayload = maxPayload
        }

        /// Bytes held: at most one partial frame.
        public var bufferedCount: Int { queue.count }

        /// Adds bytes received from the stream.
        public mutating func append(_ bytes: some Sequence<UInt8>) { queue.append(bytes) }

        /// The next whole frame, nil if more bytes are needed. After a throw the stream is lost.
        public mutating func next() throws(WireError) -> DataExchangeFrame? {
            guard queue.count >= 8 else { return nil }
            var reader = ByteReader(queue.peek(0, 8))
            let kind = Kind(rawValue: try reader.readUInt32("data exchange type"))
            let length = Int(try reader.readUInt32("data exchange length"))
            guard length <= maxPayload else { throw .oversized(field: "data exchange frame", limit: maxPayload, actual: length) }
            guard queue.count >= 8 + length else { return nil }
            let payload = Array(queue.peek(8, length))
            queue.skip(8 + length)
            return DataExchangeFrame(kind: kind, payload: payload)
        }
    }
}
