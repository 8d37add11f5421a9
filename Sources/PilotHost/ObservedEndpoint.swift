import PilotWire

/// A tunnel socket's public mapping as the beacon saw it: the source of the socket's datagrams
/// past every NAT on the way, from a discover reply (0x02, docs/PROTOCOL.md §9).
///
/// What to register for the socket (docs/PROTOCOL.md §8.5): the observed port always, since
/// peers reach the socket only through the mapping; the observed IP only when it is public
/// (1.18's rule for keeping a STUN answer), else the socket's own host, which a registry
/// replaces with the IP the registration came from anyway. 1.18 drops a private answer whole and
/// registers its local port; we keep the port, which is what a NAT between private networks
/// (a lab's namespaces, a carrier-grade NAT toward a beacon on the same side) needs. It would be
/// wrong only with the registry and the beacon on different sides of a NAT.
struct ObservedEndpoint: Hashable, Sendable {
    /// 4 bytes (IPv4, also for an IPv4-mapped IPv6 address) or 16 (IPv6).
    let ip: [UInt8]
    let port: UInt16

    /// From a discover reply's fields; nil unless `ip` is 4 or 16 bytes long.
    init?(ip: [UInt8], port: UInt16) {
        switch ip.count {
        case 4: self.ip = ip
        // A dual-stack beacon sees an IPv4 sender as ::ffff:a.b.c.d.
        case 16 where ip.prefix(12).elementsEqual(Self.mappedPrefix): self.ip = Array(ip.suffix(4))
        case 16: self.ip = ip
        default: return nil
        }
        self.port = port
    }

    static let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]

    /// The IP as text: dotted IPv4, or IPv6 as eight hex groups.
    var host: String {
        guard ip.count == 16 else { return ip.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(ip[$0]) << 8 | UInt16(ip[$0 + 1]), radix: 16) }.joined(separator: ":")
    }

    /// Whether nodes elsewhere could reach the IP: not private (10/8, 172.16/12, 192.168/16,
    /// fc00::/7), loopback, link-local or unspecified. Go's `IsPrivate` and its neighbours, as
    /// 1.18 judges a STUN answer.
    var isPublic: Bool {
        if ip.count == 4 { return !(ip[0] == 0 || ip[0] == 127 || Endpoint.isPrivateOrLinkLocal(ipv4: ip)) }
        let unspecifiedOrLoopback = ip.prefix(15).allSatisfy { $0 == 0 } && ip[15] <= 1
        let uniqueLocal = ip[0] & 0xFE == 0xFC
        let linkLocal = ip[0] == 0xFE && ip[1] & 0xC0 == 0x80
        return !(unspecifiedOrLoopback || uniqueLocal || linkLocal)
    }

    /// The `listen_addr` to register for a socket bound on `localHost` with this mapping.
    func listenAddress(localHost: String) -> String {
        Endpoint(host: isPublic ? host : localHost, port: port).description
    }
}
