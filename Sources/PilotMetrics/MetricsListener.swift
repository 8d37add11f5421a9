public import PilotWire

/// Where the metrics endpoint listens, checked: the endpoint serves whatever the host counts to
/// anyone who can reach it, so it binds loopback unless the operator said remote scrapers may
/// reach it.
public struct MetricsListener: Equatable, Sendable, CustomStringConvertible {
    /// The address bound: an IP address, never a name, so that loopback is what the kernel binds.
    public let endpoint: Endpoint

    /// `text` is `host:port` or `[v6]:port` with an IP address as the host; it must be a loopback
    /// address (127.0.0.0/8, ::1) unless `allowRemote`.
    public init(parsing text: String, allowRemote: Bool) throws(MetricsError) {
        let parsed: Endpoint
        do { parsed = try Endpoint(parsing: text) } catch { throw .invalidAddress(text, reason: "\(error)") }
        guard let loopback = Self.isLoopback(ip: parsed.host) else {
            throw .invalidAddress(text, reason: "the host must be an IP address (127.0.0.1, [::1], or another address with remote scrapers allowed)")
        }
        guard loopback || allowRemote else { throw .remoteRefused(text) }
        endpoint = parsed
    }

    public var description: String { endpoint.description }

    /// Whether `host`, as `Endpoint` parsed it (IPv4 and IPv6 addresses checked), is a loopback
    /// address; nil when it is a name.
    static func isLoopback(ip host: String) -> Bool? {
        if host.contains(":") {
            // "::1", "0:0:0:0:0:0:0:1" and the like: every group zero but the last, which is 1.
            var groups = host.split(separator: ":", omittingEmptySubsequences: false)
            let last = groups.removeLast()
            return groups.allSatisfy { $0.isEmpty || Int($0, radix: 16) == 0 } && Int(last, radix: 16) == 1
        }
        guard let first = host.split(separator: ".").first, host.last?.isNumber == true else { return nil }
        return first == "127"
    }
}

/// Why the metrics endpoint cannot start, said so that the operator can fix it.
public enum MetricsError: Error, Equatable, CustomStringConvertible {
    /// Not an address the endpoint can bind.
    case invalidAddress(String, reason: String)
    /// A non-loopback address without the setting that allows remote scrapers.
    case remoteRefused(String)

    public var description: String {
        switch self {
        case let .invalidAddress(text, reason): "metrics address \(text): \(reason)"
        case let .remoteRefused(text):
            "metrics address \(text) is not loopback: the endpoint would show every identity's traffic to the network; "
                + "bind 127.0.0.1, or allow remote scrapers explicitly (metrics-allow-remote)"
        }
    }
}
