public import Logging
import NIOConcurrencyHelpers
public import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// UDP socket buffers large enough for a burst of traffic.
///
/// The kernel silently caps SO_RCVBUF and SO_SNDBUF at net.core.rmem_max and wmem_max (208 KiB
/// on a stock kernel: a fifth of one stream's window in flight). `ensure` asks past the cap
/// (allowed with CAP_NET_ADMIN) and, if the buffers stay small, says so once, with the setting
/// that fixes it, because otherwise the symptom is loss under load that nothing explains.
public enum UDPBuffers {
    private static let warned = NIOLockedValueBox(false)

    /// The size asked for by default, each way.
    public static let wanted = 4 << 20

    /// Sets both buffers of `channel` to `wanted`, forcing past the sysctl caps when the
    /// process may; returns the sizes granted (bytes usable, not the kernel's doubled figure).
    /// A warning names the fix when a cap holds them below `wanted` (the first time only).
    @discardableResult
    public static func ensure(
        on channel: any Channel, wanted: Int = wanted, logger: Logger, metadata: Logger.Metadata = [:]
    ) async -> (receive: Int, send: Int) {
        var granted: [Int] = []
        var small: [String] = []
        for (option, force, name, sysctl) in [
            (SO_RCVBUF, SO_RCVBUFFORCE, "receive", "net.core.rmem_max"), (SO_SNDBUF, SO_SNDBUFFORCE, "send", "net.core.wmem_max"),
        ] {
            let plain = ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: option))
            let forced = ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: force))
            // Linux reports twice the size set (the other half is its bookkeeping).
            var size = ((try? await channel.getOption(plain).get()) ?? 0) / 2
            if size < wanted {
                try? await channel.setOption(plain, value: wanted).get()
                try? await channel.setOption(forced, value: wanted).get()
                size = ((try? await channel.getOption(plain).get()) ?? 0) / 2
            }
            granted.append(size)
            if size < wanted { small.append("\(name) \(size / 1024) KiB (\(sysctl) caps it)") }
        }
        // Said once per process: a host opening thousands of sockets under one cap says it once.
        if !small.isEmpty, warned.withLockedValue({ already in defer { already = true }; return !already }) {
            var fields = metadata
            fields["buffers"] = "\(small.joined(separator: ", "))"
            fields["fix"] = "sysctl -w net.core.rmem_max=\(wanted) net.core.wmem_max=\(wanted) (installed as sysctl.d/60-pilot-host.conf)"
            logger.warning("UDP socket buffers are smaller than a burst of traffic; expect drops under load", metadata: fields)
        }
        return (granted[0], granted[1])
    }
}
