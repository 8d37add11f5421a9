/// Which nodes may reach which ports of a fabric's identities. Loop-confined (`Fabric.State`).
///
/// Invariant: a node an identity does not trust reaches only the fabric's open ports (the trust
/// handshake's, so that trust can be asked for) and the ports the identity made public; any
/// other SYN or datagram from it is counted and dropped, silently, as behind a firewall. The
/// gate holds no policy of its own: the host tells it who is trusted and what is open.
struct TrustGate {
    /// Pairs (local identity, remote node) that are trusted.
    private var trusted: Set<NodePair> = []
    /// Each identity's public ports.
    var publicPorts: [UInt32: Set<UInt16>] = [:]
    /// Ports of every identity that any node may reach.
    var openPorts: Set<UInt16> = []
    /// SYNs and datagrams dropped by the gate.
    private(set) var dropped = 0

    /// Whether `remote` may open a stream or send a datagram to `port` of `local`.
    mutating func admits(_ remote: UInt32, to local: UInt32, port: UInt16) -> Bool {
        if openPorts.contains(port) || trusted.contains(NodePair(local: local, remote: remote))
            || publicPorts[local]?.contains(port) == true
        {
            return true
        }
        dropped += 1
        return false
    }

    func trusts(local: UInt32, remote: UInt32) -> Bool { trusted.contains(NodePair(local: local, remote: remote)) }

    mutating func setTrusted(local: UInt32, remote: UInt32, _ trusts: Bool) {
        if trusts {
            trusted.insert(NodePair(local: local, remote: remote))
        } else {
            trusted.remove(NodePair(local: local, remote: remote))
        }
    }

    /// `local` is gone: its trust and public ports with it.
    mutating func forget(_ local: UInt32) {
        publicPorts[local] = nil
        trusted = trusted.filter { $0.local != local }
    }
}

extension Fabric {
    /// On the loop: whether `remote` may open a stream or send a datagram to `port` of `local`.
    func admits(_ remote: UInt32, to local: UInt32, port: UInt16) -> Bool {
        state.value.gate.admits(remote, to: local, port: port)
    }

    /// `local` trusts `remote` (or no longer does): its streams and datagrams pass the gate.
    public func setTrusted(local: UInt32, remote: UInt32, _ trusted: Bool) async throws {
        try await loop.submit { [state] in state.value.gate.setTrusted(local: local, remote: remote, trusted) }.get()
    }

    /// The ports of `local` that nodes it does not trust may reach (besides the open ports).
    public func setPublicPorts(local: UInt32, _ ports: Set<UInt16>) async throws {
        try await loop.submit { [state] in state.value.gate.publicPorts[local] = ports }.get()
    }

    /// The ports of every identity that any node may reach, trusted or not (the trust
    /// handshake's, `Port.handshake`, so that trust can be asked for). None by default.
    public func setOpenPorts(_ ports: Set<UInt16>) async throws {
        try await loop.submit { [state] in state.value.gate.openPorts = ports }.get()
    }
}
