/// Well-known Pilot ports (`docs/PROTOCOL.md §1.2`; 1003 is `verify` since 1.18).
public enum Port {
    /// Control pings use port 0.
    public static let control: UInt16 = 0
    /// Echo: every identity answers, 1.18's `pilotctl ping` and `bench` use it.
    public static let echo: UInt16 = 7
    /// The nameserver (a separate service).
    public static let nameserver: UInt16 = 53
    /// The secure channel (library only in 1.18).
    public static let secureChannel: UInt16 = 443
    /// The trust handshake.
    public static let handshake: UInt16 = 444
    /// Stdio, the default port of `connect`, `send` and broadcasts.
    public static let stdio: UInt16 = 1000
    /// Data exchange: messages and files.
    public static let dataExchange: UInt16 = 1001
    /// The event stream: publish and subscribe by topic.
    public static let eventStream: UInt16 = 1002
    /// Verify (task submit before 1.18).
    public static let verify: UInt16 = 1003
    /// Source ports for outbound streams and datagrams come from here.
    public static let ephemeral: ClosedRange<UInt16> = 49152...65535
}
