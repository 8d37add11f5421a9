/// What one stream carried, as 1.18's `conn_list` counts it.
public struct StreamTraffic: Sendable, Equatable {
    /// Data segments sent, a segment sent again counting again.
    public var segmentsSent = 0
    /// Bytes of data sent, each byte once however often it was sent.
    public var bytesSent = 0
    /// Data segments received, in order or not, duplicates included.
    public var segmentsReceived = 0
    /// Bytes handed to the reader, in order.
    public var bytesReceived = 0
    /// ACKs sent with SACK blocks (something was held out of order), and received.
    public var sacksSent = 0
    /// See `sacksSent`.
    public var sacksReceived = 0
    /// Segments sent again before their timer: on three duplicate ACKs or a SACK hole.
    public var fastRetransmits = 0

    /// Nothing yet.
    public init() {}
}
