/// What one identity's tunnels carried, over every session it has had (1.18's `pkts_sent`,
/// `bytes_sent`, `tunnel_encryption_success`, ... of a daemon, which is one identity). Packets
/// between identities of one fabric take no tunnel and are not in it.
public struct TunnelTraffic: Sendable, Equatable {
    /// Packets sealed and sent, and their bytes (the packet, header included, before sealing).
    public var packetsSent = 0
    /// See `packetsSent`.
    public var bytesSent = 0
    /// Packets that opened, passed the replay window and were handed on, and their bytes.
    public var packetsReceived = 0
    /// See `packetsReceived`.
    public var bytesReceived = 0
    /// Packets that could not be sealed (and were not sent).
    public var sealFailures = 0

    /// No traffic.
    public init() {}

    /// The sum of both.
    static func + (lhs: TunnelTraffic, rhs: TunnelTraffic) -> TunnelTraffic {
        var sum = lhs
        sum.packetsSent += rhs.packetsSent
        sum.bytesSent += rhs.bytesSent
        sum.packetsReceived += rhs.packetsReceived
        sum.bytesReceived += rhs.bytesReceived
        sum.sealFailures += rhs.sealFailures
        return sum
    }
}
