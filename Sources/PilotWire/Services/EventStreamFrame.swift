/// An event on the event-stream port 1002 (`docs/PROTOCOL.md §11.3`): `u16 topic length ‖ topic ‖
/// u32 payload length ‖ payload`. The first event on a stream subscribes to its topic (`*`: all);
/// each later one publishes.
public struct EventStreamFrame: Hashable, Sendable {
    /// The event-stream port.
    public static let port = Port.eventStream
    /// The longest topic, in UTF-8 bytes.
    public static let maxTopic = 1024
    /// The longest payload accepted or sent.
    public static let maxPayload = 16 << 20
    /// Every topic.
    public static let everything = "*"

    /// The topic; `everything` in a subscription means all.
    public var topic: String
    /// The event's bytes; empty in a subscription.
    public var payload: [UInt8]

    /// An event from its parts.
    public init(topic: String, payload: [UInt8] = []) {
        self.topic = topic
        self.payload = payload
    }

    /// The frame's bytes; throws `oversized` if the topic or payload is over its limit.
    public func encoded() throws(WireError) -> [UInt8] {
        let topicBytes = Array(topic.utf8)
        guard topicBytes.count <= Self.maxTopic else { throw .oversized(field: "event topic", limit: Self.maxTopic, actual: topicBytes.count) }
        guard payload.count <= Self.maxPayload else { throw .oversized(field: "event payload", limit: Self.maxPayload, actual: payload.count) }
        var writer = ByteWriter(capacity: 6 + topicBytes.count + payload.count)
        writer.writeUInt16(UInt16(topicBytes.count))
        writer.writeBytes(topicBytes)
        writer.writeUInt32(UInt32(payload.count))
        writer.writeBytes(payload)
        return writer.bytes
    }

    /// Events out of a byte stream, as they complete.
    public struct Decoder: Sendable {
        private var queue = ByteQueue()

        /// A decoder at the start of a stream.
        public init() {}

        /// Adds bytes received from the stream.
        public mutating func append(_ bytes: some Sequence<UInt8>) { queue.append(bytes) }

        /// The next whole event, nil if more bytes are needed. After a throw the stream is lost.
        public mutating func next() throws(WireError) -> EventStreamFrame? {
            guard queue.count >= 2 else { return nil }
            var reader = ByteReader(queue.peek(0, 2))
            let topicLength = Int(try reader.readUInt16("event topic length"))
            guard topicLength <= EventStreamFrame.maxTopic else {
                throw .oversized(field: "event topic", limit: EventStreamFrame.maxTopic, actual: topicLength)
            }
            guard queue.count >= 2 + topicLength + 4 else { return nil }
            reader = ByteReader(queue.peek(2 + topicLength, 4))
            let payloadLength = Int(try reader.readUInt32("event payload length"))
            guard payloadLength <= EventStreamFrame.maxPayload else {
                throw .oversized(field: "event payload", limit: EventStreamFrame.maxPayload, actual: payloadLength)
            }
            guard queue.count >= 6 + topicLength + payloadLength else { return nil }
            guard let topic = String(validating: queue.peek(2, topicLength), as: UTF8.self) else {
                throw .invalidValue(field: "event topic", reason: "must be UTF-8")
            }
            let payload = Array(queue.peek(6 + topicLength, payloadLength))
            queue.skip(6 + topicLength + payloadLength)
            return EventStreamFrame(topic: topic, payload: payload)
        }
    }
}
