/// Well-known Pilot ports (PROTOCOL.md §1.2; 1003 is `verify` since 1.18).
public enum Port {
    /// Control pings use port 0.
    public static let control: UInt16 = 0
    public static let echo: UInt16 = 7
    public static let nameserver: UInt16 = 53
    public static let secureChannel: UInt16 = 443
    public static let handshake: UInt16 = 444
    public static let stdio: UInt16 = 1000
    public static let dataExchange: UInt16 = 1001
    public static let eventStream: UInt16 = 1002
    public static let verify: UInt16 = 1003
    /// Source ports for outbound streams and datagrams come from here.
    public static let ephemeral: ClosedRange<UInt16> = 49152...65535
}
