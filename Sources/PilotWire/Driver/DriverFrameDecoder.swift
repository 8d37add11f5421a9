/// Splits the byte stream of the daemon's Unix socket into frames.
///
/// It holds at most one partial frame and what was appended since, and rejects a length over
/// `DriverFrame.maxSize` as soon as the four length bytes are in, before buffering the frame.
public struct DriverFrameDecoder: Sendable {
    private var frames = LengthPrefixedFrames.Decoder(maxSize: DriverFrame.maxSize, field: "driver frame")

    /// An empty decoder.
    public init() {}

    /// Bytes received and not yet returned as a frame.
    public var bufferedCount: Int { frames.bufferedCount }

    /// Adds bytes read from the socket.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        frames.append(bytes)
    }

    /// The next whole frame, `nil` if more bytes are needed. Throws for a length of 0 (a frame
    /// has at least its command byte) or over `DriverFrame.maxSize`; the stream's framing is
    /// then lost, and the connection must be closed.
    public mutating func next() throws(WireError) -> DriverFrame? {
        try frames.next { body throws(WireError) in
            guard let command = body.first else {
                throw .invalidValue(field: "driver frame length", reason: "0, a frame holds at least its command byte")
            }
            return DriverFrame(command: command, payload: Array(body.dropFirst()))
        }
    }
}
