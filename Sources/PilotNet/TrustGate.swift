import NIOCore
import PilotWire

/// Which nodes may reach which ports of a fabric's identities. Loop-confined (`Fabric.State`).
///
/// Invariant: a node an identity does not trust reaches only the fabric's open ports (the trust
/// handshake's, so that trust can be asked for) and the ports the identity made public; any
/// other SYN or datagram from it is counted and dropped, silently, as behind a firewall. The
/// gate holds no policy of its own: the host tells it who is trusted and what is open.
///
/// One exception, 1.18's "reply window": for `replyWindow` after an identity dials a node, that
/// node's SYNs to the identity's ports 1001 and 444 pass, so a service asked a question (a
/// directory, say) can dial back its answer to a node that does not trust it. Datagrams never
/// pass by it. Each identity keeps at most `replyWindowsPerIdentity` windows; past that, the
/// oldest is closed, so one identity dialling many nodes fills only its own share.
struct TrustGate {
    /// How long a dial opens the reply window (1.18: 5 minutes).
    static let replyWindow = TimeAmount.minutes(5)
    /// The ports a reply window opens.
    static let replyPorts: Set<UInt16> = [Port.dataExchange, Port.handshake]
    /// Open reply windows one identity keeps.
    static let replyWindowsPerIdentity = 1024
    /// Pairs (local identity, remote node) that are trusted.
    private var trusted: Set<NodePair> = []
    /// Each identity's public ports.
    var publicPorts: [UInt32: Set<UInt16>] = [:]
    /// Ports of every identity that any node may reach.
    var openPorts: Set<UInt16> = []
    /// SYNs and datagrams dropped by the gate.
    private(set) var dropped = 0
    /// Open reply windows: (identity, node it dialled) → when the window closes.
    private var replyWindows: [NodePair: NIODeadline] = [:]
    /// Each identity's reply windows, oldest first (a window dialled again moves to the end).
    private var replyWindowOrder: [UInt32: [UInt32]] = [:]

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

    /// Whether `remote` may open a stream to `port` of `local`: as `admits`, or through a reply
    /// window `local` opened by dialling `remote`.
    mutating func admitsStream(_ remote: UInt32, to local: UInt32, port: UInt16, now: NIODeadline) -> Bool {
        if Self.replyPorts.contains(port), let closes = replyWindows[NodePair(local: local, remote: remote)], closes > now {
            return true
        }
        return admits(remote, to: local, port: port)
    }

    /// `local` dialled `remote`: its reply window opens (or stays open) until `now + replyWindow`.
    mutating func dialled(_ remote: UInt32, from local: UInt32, now: NIODeadline) {
        guard remote != local else { return }
        let pair = NodePair(local: local, remote: remote)
        var order = replyWindowOrder[local, default: []]
        if replyWindows.updateValue(now + Self.replyWindow, forKey: pair) != nil {
            order.removeAll { $0 == remote }
        } else if order.count >= Self.replyWindowsPerIdentity {
            replyWindows[NodePair(local: local, remote: order.removeFirst())] = nil
        }
        order.append(remote)
        replyWindowOrder[local] = order
    }

    /// Closes the reply windows whose time is up.
    mutating func closeReplyWindows(now: NIODeadline) {
        guard !replyWindows.isEmpty else { return }
        for (local, order) in replyWindowOrder {
            // Oldest first, and a window's time only grows when it moves to the end: the open
            // ones are a suffix.
            let open = order.drop { replyWindows[NodePair(local: local, remote: $0)].map { $0 <= now } ?? true }
            for remote in order.prefix(order.count - open.count) { replyWindows[NodePair(local: local, remote: remote)] = nil }
            replyWindowOrder[local] = open.isEmpty ? nil : Array(open)
        }
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
        for remote in replyWindowOrder.removeValue(forKey: local) ?? [] { replyWindows[NodePair(local: local, remote: remote)] = nil }
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
