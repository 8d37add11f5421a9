/// Streams of `[u32 big-endian length][body]` frames: the registry's TCP framing and pilot-host's
/// control sockets both use it.
public enum LengthPrefixedFrames {
    /// Frames `body`; throws if it is longer than `maxSize`.
    public static func frame(_ body: [UInt8], maxSize: Int, field: String) throws(WireError) -> [UInt8] {
        guard body.count <= maxSize else { throw .oversized(field: field, limit: maxSize, actual: body.count) }
        var writer = ByteWriter(capacity: 4 + body.count)
        writer.writeUInt32(UInt32(body.count))
        writer.writeBytes(body)
        return writer.bytes
    }

    /// Splits a byte stream into frame bodies. It never holds more than one frame, and rejects a
    /// length over `maxSize` as soon as the 4 length bytes are in, before buffering any of it.
    public struct Decoder: Sendable {
        private var queue = ByteQueue()
        /// The longest body accepted; a longer length is an error before any of it is buffered.
        public let maxSize: Int
        /// The frame's name in errors.
        public let field: String

        /// A decoder of frames of at most `maxSize` bytes, called `field` in errors.
        public init(maxSize: Int, field: String) {
            self.maxSize = maxSize
            self.field = field
        }

        /// Bytes held: at most one partial frame.
        public var bufferedCount: Int { queue.count }

        /// The bytes received so far that are not part of a returned frame.
        public var pending: ArraySlice<UInt8> { queue.bytes }

        /// Adds bytes received from the stream.
        public mutating func append(_ bytes: some Sequence<UInt8>) { queue.append(bytes) }

        /// Drops `count` leading bytes (a preamble the caller recognised).
        public mutating func discard(_ count: Int) { queue.skip(count) }

        /// The next complete frame's body, `nil` if more bytes are needed. After a throw the
        /// stream's framing is lost: close it.
        public mutating func next() throws(WireError) -> [UInt8]? {
            try next { body in Array(body) }
        }

        /// The next complete frame, made by `build` from its body while the body is still in the
        /// buffer (a format with a header inside the body then copies the rest only once); `nil`
        /// if more bytes are needed. When `build` throws, the frame is left in the buffer.
        public mutating func next<Frame>(
            _ build: (ArraySlice<UInt8>) throws(WireError) -> Frame
        ) throws(WireError) -> Frame? {
            guard queue.count >= 4 else { return nil }
            var reader = ByteReader(queue.peek(0, 4))
            let length = Int(try reader.readUInt32("\(field) length"))
            guard length <= maxSize else { throw .oversized(field: field, limit: maxSize, actual: length) }
            guard queue.count >= 4 + length else { return nil }
            let frame = try build(queue.peek(4, length))
            queue.skip(4 + length)
            return frame
        }
    }
}
