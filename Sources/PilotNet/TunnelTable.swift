public import NIOCore
public import PilotCrypto
public import PilotWire

/// What the tunnel table asks of the world after an event: it does no I/O itself, so every
/// decision it makes can be tested with bytes in and bytes out.
public enum TunnelAction: Sendable, Equatable {
    /// Send `bytes` to `endpoint` from the socket numbered `socket`.
    case send([UInt8], to: SocketAddress, socket: Int)
    /// A packet that authenticated, passed its replay window and is addressed to `local`.
    case deliver(local: UInt32, Packet)
    /// Fetch the Ed25519 key the registry holds for `node` and call `keyLookedUp`.
    case lookUpKey(UInt32)
    /// The key exchange from `local` to `remote` gave up; `dropped` queued packets are lost.
    case exchangeFailed(local: UInt32, remote: UInt32, dropped: Int)
}

/// Why a packet could not be sent.
public enum TunnelError: Error, Equatable, CustomStringConvertible {
    case unknownIdentity(UInt32)
    case noEndpoint(UInt32)
    case sourceNotLocal(Address)
    case encoding(String)

    public var description: String {
        switch self {
        case .unknownIdentity(let node): "no local identity with node id \(node)"
        case .noEndpoint(let node): "no known endpoint for node \(node)"
        case .sourceNotLocal(let address): "packet source \(address) is not the sending identity"
        case .encoding(let reason): "cannot encode the packet: \(reason)"
        }
    }
}

/// What the table counted, for metrics and tests. Every frame it drops is counted once, by why.
public struct TunnelCounters: Sendable, Equatable {
    public var framesIn = 0
    public var framesOut = 0
    public var delivered = 0
    public var keyExchangesIn = 0
    public var keyRequestsIn = 0
    public var sessionsInstalled = 0
    /// PILA whose Ed25519 key is not the registry's, or whose signature does not verify.
    public var keyExchangesRejected = 0
    /// Key exchanges from a node no local identity has business with (on the shared socket).
    public var unsolicited = 0
    public var malformed = 0
    /// PILT: 1.18 with encryption on ignores plaintext, and so do we.
    public var plaintextDropped = 0
    public var noSession = 0
    public var authenticationFailed = 0
    public var replayed = 0
    /// The packet inside names another source than the frame's sender.
    public var spoofed = 0
    /// The packet inside is for another node than the identity whose key opened it.
    public var misrouted = 0
    public var queueOverflow = 0
    public var beacon = 0
    public var punches = 0
    public var keepalivesSent = 0

    public init() {}
}

/// Every tunnel of the host: one `Tunnel` per (local identity, remote node), one path
/// (endpoint and the socket it was reached on) per remote node, pending key exchanges with the
/// packets waiting for them. Inbound `PILS` are mapped to their identity by (sender, nonce
/// prefix), learned from the first frame that opens; on a miss the identities with a session
/// with the sender are tried.
///
/// Not thread-safe: owned by one event loop (`Fabric`). No I/O: events in, `TunnelAction`s out.
public final class TunnelTable {
    struct Pair: Hashable {
        let local: UInt32
        let remote: UInt32
    }

    struct Epoch: Hashable {
        let remote: UInt32
        let prefix: UInt32
    }

    /// An exchange this side started: the packets that wait for it and its retransmissions.
    struct Pending {
        var queue: [[UInt8]] = []
        var attempts = 0
        var nextAttempt: NIODeadline
    }

    struct Path {
        var endpoint: SocketAddress
        var socket: Int
    }

    /// 1.18's numbers (PROTOCOL-1.18.md §1.4).
    public struct Timing: Sendable {
        public var retransmit: TimeAmount = .seconds(4)
        public var attempts = 6
        public var answerSilence: TimeAmount = .seconds(6)
        public var answerInterval: TimeAmount = .seconds(1)
        public var noSessionAnswerInterval: TimeAmount = .seconds(3)
        public var keepalive: TimeAmount = .seconds(25)
        /// A session nothing arrived on for this long is forgotten (it is re-established on use).
        public var idle: TimeAmount = .minutes(10)
        public var negativeKeyCache: TimeAmount = .seconds(3)
        public var queueLimit = 64
        public init() {}
    }

    public private(set) var counters = TunnelCounters()
    let timing: Timing
    private var identities: [UInt32: TunnelIdentity] = [:]
    /// Socket number → the identity that owns it (sockets of their own, for identities that
    /// accept strangers). Socket 0 and others absent here are shared.
    private var socketOwners: [Int: UInt32] = [:]
    private var identitySockets: [UInt32: Int] = [:]
    private var tunnels: [Pair: Tunnel] = [:]
    private var epochs: [Epoch: UInt32] = [:]
    private var pending: [Pair: Pending] = [:]
    /// Remote node → local identities with a tunnel, a pending exchange or a relation (trust,
    /// a handshake under way) with it: those a key exchange from it applies to.
    private var related: [UInt32: Set<UInt32>] = [:]
    private var relations: Set<Pair> = []
    private var paths: [UInt32: Path] = [:]
    /// Registry keys of remote nodes and when they were fetched.
    private var signingKeys: [UInt32: (key: Ed25519PublicKey, fetched: NIODeadline)] = [:]
    private var missingKeys: [UInt32: NIODeadline] = [:]
    private var keyLookups: Set<UInt32> = []
    /// PILAs waiting for their sender's registry key: the latest per sender and socket (the
    /// same PILA on two sockets is for two different identities).
    private var awaitingKey: [UInt32: [Int: (AuthenticatedKeyExchange, SocketAddress)]] = [:]
    private var lastNoSessionAnswer: [Pair: NIODeadline] = [:]

    public init(timing: Timing = Timing()) {
        self.timing = timing
    }

    // MARK: Identities and relations

    /// Adds `identity`; with `socket`, that socket is its own (a key exchange arriving there is
    /// for it, from anyone) and it sends from it.
    public func add(_ identity: TunnelIdentity, ownSocket socket: Int? = nil) {
        identities[identity.node] = identity
        if let socket {
            socketOwners[socket] = identity.node
            identitySockets[identity.node] = socket
        }
    }

    /// Forgets `node` and every tunnel it has.
    public func remove(_ node: UInt32) {
        identities[node] = nil
        if let socket = identitySockets.removeValue(forKey: node) { socketOwners[socket] = nil }
        for pair in tunnels.keys where pair.local == node { dropTunnel(pair) }
        for pair in pending.keys where pair.local == node { pending[pair] = nil }
        for pair in relations where pair.local == node { relations.remove(pair) }
        for remote in Array(related.keys) { unrelate(local: node, remote: remote, keepExplicit: false) }
    }

    /// `local` has business with `remote` (trust, a handshake under way): key exchanges from
    /// `remote` apply to it even with no session.
    public func relate(local: UInt32, remote: UInt32) {
        relations.insert(Pair(local: local, remote: remote))
        related[remote, default: []].insert(local)
    }

    public func forgetRelation(local: UInt32, remote: UInt32) {
        relations.remove(Pair(local: local, remote: remote))
        unrelate(local: local, remote: remote, keepExplicit: true)
    }

    private func unrelate(local: UInt32, remote: UInt32, keepExplicit: Bool) {
        let pair = Pair(local: local, remote: remote)
        guard tunnels[pair] == nil, pending[pair] == nil, !(keepExplicit && relations.contains(pair)) else { return }
        related[remote]?.remove(local)
        if related[remote]?.isEmpty == true { related[remote] = nil }
    }

    /// The identity with node id `node`, if it was added.
    public func identity(_ node: UInt32) -> TunnelIdentity? { identities[node] }

    public func hasSession(local: UInt32, remote: UInt32) -> Bool { tunnels[Pair(local: local, remote: remote)] != nil }

    public var sessionCount: Int { tunnels.count }

    /// The remote nodes `local` has a session with, where each was last seen, and when it last
    /// sent something.
    public func sessions(of local: UInt32) -> [(remote: UInt32, endpoint: SocketAddress?, lastReceived: NIODeadline)] {
        tunnels.values.filter { $0.local == local }.sorted { $0.remote < $1.remote }.map { ($0.remote, paths[$0.remote]?.endpoint, $0.lastReceived) }
    }

    // MARK: Receiving

    /// One datagram from `endpoint`, arrived on socket `socket`.
    public func receive(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        counters.framesIn += 1
        guard let first = bytes.first else {
            counters.malformed += 1
            return []
        }
        if first < TunnelFrame.beaconTypeLimit {
            counters.beacon += 1
            return []
        }
        let frame: TunnelFrame
        do { frame = try TunnelFrame(decoding: bytes) } catch {
            counters.malformed += 1
            return []
        }
        switch frame {
        case .encrypted(let encrypted): return receive(encrypted, from: endpoint, socket: socket, now: now)
        case .authenticatedKeyExchange(let exchange):
            counters.keyExchangesIn += 1
            return receive(exchange, from: endpoint, socket: socket, now: now)
        case .keyExchange(let request):
            counters.keyRequestsIn += 1
            return answerKeyRequest(from: request.node, endpoint: endpoint, socket: socket, now: now)
        case .plaintext:
            counters.plaintextDropped += 1
            return []
        case .punch:
            counters.punches += 1
            return []
        }
    }

    /// The local identities a key exchange from `remote` on `socket` applies to.
    private func recipients(of remote: UInt32, socket: Int) -> [UInt32] {
        var locals = related[remote] ?? []
        if let owner = socketOwners[socket] { locals.insert(owner) }
        return locals.filter { identities[$0] != nil && $0 != remote }.sorted()
    }

    private func receive(_ exchange: AuthenticatedKeyExchange, from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        guard !recipients(of: exchange.node, socket: socket).isEmpty else {
            counters.unsolicited += 1
            return []
        }
        if let known = signingKeys[exchange.node] {
            // A PILA with another key than the registry's: the node may have rotated its key.
            // Fetch it again, but not more than once per negative-cache period.
            let stale = known.key.bytes != exchange.ed25519 && now - known.fetched >= timing.negativeKeyCache
            if !stale { return apply(exchange, registryKey: known.key, from: endpoint, socket: socket, now: now) }
        }
        if let missing = missingKeys[exchange.node], now - missing < timing.negativeKeyCache {
            counters.keyExchangesRejected += 1
            return []
        }
        awaitingKey[exchange.node, default: [:]][socket] = (exchange, endpoint)
        guard keyLookups.insert(exchange.node).inserted else { return [] }
        return [.lookUpKey(exchange.node)]
    }

    /// The registry's answer for `node`: its Ed25519 key, or nil when it has none. A key that
    /// differs from the one PILA frames carry rejects them.
    public func keyLookedUp(_ node: UInt32, key: Ed25519PublicKey?, now: NIODeadline) -> [TunnelAction] {
        keyLookups.remove(node)
        let waiting = awaitingKey.removeValue(forKey: node)
        guard let key else {
            missingKeys[node] = now
            counters.keyExchangesRejected += waiting?.count ?? 0
            return []
        }
        signingKeys[node] = (key, now)
        missingKeys[node] = nil
        return (waiting ?? [:]).sorted { $0.key < $1.key }.flatMap { socket, pending in
            apply(pending.0, registryKey: key, from: pending.1, socket: socket, now: now)
        }
    }

    /// Forgets the cached registry key of `node` (it rotated its key).
    public func forgetKey(of node: UInt32) { signingKeys[node] = nil }

    private func apply(
        _ exchange: AuthenticatedKeyExchange, registryKey: Ed25519PublicKey, from endpoint: SocketAddress, socket: Int, now: NIODeadline
    ) -> [TunnelAction] {
        guard exchange.ed25519 == registryKey.bytes,
            registryKey.isValidSignature(exchange.signature, for: exchange.signedMessage)
        else {
            counters.keyExchangesRejected += 1
            return []
        }
        let remote = exchange.node
        var actions: [TunnelAction] = []
        for local in recipients(of: remote, socket: socket) {
            guard let identity = identities[local] else { continue }
            let pair = Pair(local: local, remote: remote)
            let reply = self.path(endpoint, from: local, else: socket)
            paths[remote] = reply
            if let tunnel = tunnels[pair], tunnel.remoteExchangeKey == exchange.x25519 {
                // The same key again: the session stands. Answer only if the remote seems to
                // have lost it (nothing from it for a while), at most once a second.
                if now - tunnel.lastReceived >= timing.answerSilence, now - tunnel.lastAnswered >= timing.answerInterval {
                    tunnel.lastAnswered = now
                    actions.append(send(identity.authenticatedExchange, reply))
                }
                continue
            }
            let tunnel: Tunnel
            do {
                let shared = try identity.exchangeKey.sharedSecret(with: exchange.x25519)
                tunnel = try Tunnel(
                    local: local, remote: remote, remoteExchangeKey: exchange.x25519,
                    key: TunnelKeyDerivation.hkdf.key(fromSharedSecret: shared), now: now)
            } catch {
                counters.keyExchangesRejected += 1
                continue
            }
            if tunnels[pair] != nil { dropTunnel(pair) }
            tunnels[pair] = tunnel
            related[remote, default: []].insert(local)
            counters.sessionsInstalled += 1
            tunnel.lastAnswered = now
            actions.append(send(identity.authenticatedExchange, reply))
            // What waited for the key goes out now, in order.
            for packet in pending.removeValue(forKey: pair)?.queue ?? [] {
                if let action = seal(packet, on: tunnel, path: reply, now: now) { actions.append(action) }
            }
        }
        return actions
    }

    private func answerKeyRequest(from remote: UInt32, endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        let locals = recipients(of: remote, socket: socket)
        guard !locals.isEmpty else {
            counters.unsolicited += 1
            return []
        }
        // A PILK installs nothing (it is unauthenticated): it asks for our PILA.
        var actions: [TunnelAction] = []
        for local in locals {
            guard let identity = identities[local] else { continue }
            let pair = Pair(local: local, remote: remote)
            let last = tunnels[pair]?.lastAnswered ?? lastNoSessionAnswer[pair] ?? .uptimeNanoseconds(0)
            guard now - last >= timing.answerInterval else { continue }
            if let tunnel = tunnels[pair] { tunnel.lastAnswered = now } else { lastNoSessionAnswer[pair] = now }
            actions.append(send(identity.authenticatedExchange, self.path(endpoint, from: local, else: socket)))
        }
        return actions
    }

    private func receive(_ frame: EncryptedFrame, from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        let remote = frame.sender
        let epoch = Epoch(remote: remote, prefix: frame.nonce.prefix)
        var opened: (Tunnel, [UInt8])?
        if let local = epochs[epoch], let tunnel = tunnels[Pair(local: local, remote: remote)] {
            opened = (try? tunnel.cipher.open(frame.sealed, prefix: epoch.prefix, counter: frame.nonce.counter, sender: remote)).map { (tunnel, $0) }
        } else {
            for local in (related[remote] ?? []).sorted() {
                guard let tunnel = tunnels[Pair(local: local, remote: remote)],
                    let plaintext = try? tunnel.cipher.open(frame.sealed, prefix: epoch.prefix, counter: frame.nonce.counter, sender: remote)
                else { continue }
                epochs[epoch] = local
                tunnel.prefixes.insert(epoch.prefix)
                opened = (tunnel, plaintext)
                break
            }
        }
        guard let (tunnel, plaintext) = opened else {
            return undecryptable(from: remote, endpoint: endpoint, socket: socket, now: now)
        }
        guard tunnel.window.accept(prefix: epoch.prefix, counter: frame.nonce.counter) == .accepted else {
            counters.replayed += 1
            return []
        }
        let packet: Packet
        do { packet = try Packet(decoding: plaintext) } catch {
            counters.malformed += 1
            return []
        }
        // The sender stamps its own id; an empty keepalive of an old peer may carry 0.
        let isBareKeepalive = packet.proto == .control && packet.sourcePort == 0 && packet.destinationPort == 0 && packet.payload.isEmpty
        guard packet.source.node == remote || (isBareKeepalive && packet.source.node == 0) else {
            counters.spoofed += 1
            return []
        }
        let destination = packet.destination.node
        guard destination == tunnel.local || destination == 0 || destination == Address.broadcastNode else {
            counters.misrouted += 1
            return []
        }
        tunnel.lastReceived = now
        // The remote may have moved (NAT rebinding): reply where it now is.
        paths[remote] = self.path(endpoint, from: tunnel.local, else: socket)
        counters.delivered += 1
        return [.deliver(local: tunnel.local, packet)]
    }

    /// A PILS no session opens: the remote thinks it has a session we do not. Those of our
    /// identities with business with it answer with their PILA, at most once per 3 s.
    private func undecryptable(from remote: UInt32, endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        let locals = recipients(of: remote, socket: socket)
        if locals.contains(where: { tunnels[Pair(local: $0, remote: remote)] != nil }) {
            counters.authenticationFailed += 1
        } else {
            counters.noSession += 1
        }
        var actions: [TunnelAction] = []
        for local in locals {
            guard let identity = identities[local] else { continue }
            let pair = Pair(local: local, remote: remote)
            if let last = lastNoSessionAnswer[pair], now - last < timing.noSessionAnswerInterval { continue }
            lastNoSessionAnswer[pair] = now
            let path = self.path(endpoint, from: local, else: socket)
            actions.append(send(identity.authenticatedExchange, path))
            if tunnels[pair] == nil { actions.append(send(identity.keyRequest, path)) }
        }
        return actions
    }

    // MARK: Sending

    /// Sends `packet` from the local identity named by its source to `remote`: sealed at once
    /// on a session, else queued while a key exchange runs (to `endpoint`, or where the remote
    /// was last seen).
    public func send(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil, now: NIODeadline) throws(TunnelError) -> [TunnelAction] {
        let local = packet.source.node
        guard let identity = identities[local] else { throw .unknownIdentity(local) }
        guard packet.source == identity.address else { throw .sourceNotLocal(packet.source) }
        let plaintext: [UInt8]
        do { plaintext = try packet.encoded() } catch { throw .encoding("\(error)") }
        if let endpoint { paths[remote] = self.path(endpoint, from: local, else: 0) }
        guard let path = paths[remote] else { throw .noEndpoint(remote) }
        let pair = Pair(local: local, remote: remote)
        if let tunnel = tunnels[pair] {
            return seal(plaintext, on: tunnel, path: path, now: now).map { [$0] } ?? []
        }
        var exchange = pending[pair] ?? Pending(nextAttempt: now)
        if exchange.queue.count >= timing.queueLimit {
            exchange.queue.removeFirst()
            counters.queueOverflow += 1
        }
        exchange.queue.append(plaintext)
        related[remote, default: []].insert(local)
        var actions: [TunnelAction] = []
        if exchange.attempts == 0 {
            exchange.attempts = 1
            exchange.nextAttempt = now + timing.retransmit
            actions.append(send(identity.authenticatedExchange, self.path(path.endpoint, from: local, else: path.socket)))
        }
        pending[pair] = exchange
        return actions
    }

    private func seal(_ plaintext: [UInt8], on tunnel: Tunnel, path: Path, now: NIODeadline) -> TunnelAction? {
        guard let (counter, sealed) = try? tunnel.cipher.seal(plaintext, sender: tunnel.local) else { return nil }
        tunnel.lastSent = now
        let frame = EncryptedFrame(
            sender: tunnel.local, nonce: TunnelNonce(prefix: tunnel.cipher.noncePrefix, counter: counter), sealed: sealed[...])
        // An identity with a socket of its own always sends from it; the path's socket is where
        // the remote last reached one of the identities that share a socket.
        return send(TunnelFrame.encrypted(frame).encoded(), self.path(path.endpoint, from: tunnel.local, else: path.socket))
    }

    /// Where to send to `endpoint` from `local`: its own socket if it has one, else `shared`
    /// (the socket the remote reached, or where it was last seen).
    private func path(_ endpoint: SocketAddress, from local: UInt32, else shared: Int) -> Path {
        Path(endpoint: endpoint, socket: identitySockets[local] ?? shared)
    }

    private func send(_ bytes: [UInt8], _ path: Path) -> TunnelAction {
        counters.framesOut += 1
        return .send(bytes, to: path.endpoint, socket: path.socket)
    }

    // MARK: Time

    /// Retransmits key exchanges, gives up on dead ones, sends keepalives, forgets idle
    /// sessions. Call about once a second.
    public func tick(now: NIODeadline) -> [TunnelAction] {
        var actions: [TunnelAction] = []
        for (pair, var exchange) in pending where exchange.nextAttempt <= now {
            guard let identity = identities[pair.local], let path = paths[pair.remote], exchange.attempts < timing.attempts else {
                pending[pair] = nil
                unrelate(local: pair.local, remote: pair.remote, keepExplicit: true)
                actions.append(.exchangeFailed(local: pair.local, remote: pair.remote, dropped: exchange.queue.count))
                continue
            }
            exchange.attempts += 1
            exchange.nextAttempt = now + timing.retransmit
            pending[pair] = exchange
            // As 1.18: the PILA again, and a key request since we hold no session.
            let own = self.path(path.endpoint, from: pair.local, else: path.socket)
            actions.append(send(identity.authenticatedExchange, own))
            actions.append(send(identity.keyRequest, own))
        }
        for (pair, tunnel) in tunnels {
            if now - tunnel.lastReceived >= timing.idle {
                dropTunnel(pair)
                continue
            }
            guard now - tunnel.lastSent >= timing.keepalive, let identity = identities[pair.local], let path = paths[pair.remote] else { continue }
            let keepalive = Packet(proto: .control, source: identity.address, destination: Address(node: pair.remote), sourcePort: 0, destinationPort: 0)
            if let bytes = try? keepalive.encoded(), let action = seal(bytes, on: tunnel, path: path, now: now) {
                counters.keepalivesSent += 1
                actions.append(action)
            }
        }
        return actions
    }

    private func dropTunnel(_ pair: Pair) {
        guard let tunnel = tunnels.removeValue(forKey: pair) else { return }
        for prefix in tunnel.prefixes { epochs[Epoch(remote: pair.remote, prefix: prefix)] = nil }
        unrelate(local: pair.local, remote: pair.remote, keepExplicit: true)
    }
}
