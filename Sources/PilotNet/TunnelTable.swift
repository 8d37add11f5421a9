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
    /// Frames to `remote` now go through the beacon (`relayed`), or straight to it again.
    case pathChanged(remote: UInt32, relayed: Bool)
    /// A message from the beacon that is not for the table (a poke, a discover reply), which
    /// came in on socket `socket`.
    case fromBeacon(BeaconMessage, socket: Int)
    /// Resting identity `local` (see `rest`) is wanted by a node it has business with: add it,
    /// relate it, then call `woke`, which takes again the frames that asked for it.
    case wake(local: UInt32)
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
    /// Beacon messages that are not from the beacon (or do not parse).
    public var beacon = 0
    public var punches = 0
    public var keepalivesSent = 0
    /// Tunnel frames that came through the beacon (0x06, 0x09) and went through it (0x05).
    public var relayedIn = 0
    public var relayedOut = 0
    /// Frames to send through the beacon while none is known.
    public var relayUnavailable = 0
    /// Punch commands (0x04) obeyed with three PILPs.
    public var punchCommands = 0
    /// Direct paths given up for the beacon because the remote fell silent on them (1.18's
    /// blackhole rule).
    public var blackholes = 0
    /// Resting identities asked to join because a node they have business with sent a frame.
    public var wakes = 0

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

    /// How frames reach a remote node: straight to `endpoint` from `socket`, or, when
    /// `relayed`, wrapped in 0x05 to the beacon from that socket (the one the beacon knows the
    /// sending identity by). A relayed path keeps the remote's direct endpoint, if one is
    /// known, for the next key exchange to try again.
    struct Path {
        var endpoint: SocketAddress?
        var socket: Int
        var relayed = false
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
        /// The exchange attempt from which frames go through the beacon (1.18: the second).
        public var relayFromAttempt = 2
        /// A remote heard directly this recently is answered directly even when a relayed copy
        /// of its frame arrives too (1.18 sends each PILA both ways).
        public var directPreference: TimeAmount = .seconds(10)
        /// How often a relayed path with a known direct endpoint is tried directly (an empty
        /// keepalive, sealed): once one gets through, both sides answer directly (1.18: 15 s).
        public var directProbe: TimeAmount = .seconds(15)
        /// 1.18's blackhole rule: a remote sent this many sealed frames directly, and heard
        /// nothing directly for `blackholeSilence` since the first, is reached through the
        /// beacon (and tried directly again every `directProbe`). This also catches a stream
        /// whose SYNs go unanswered (three within the silence).
        public var blackholeWrites = 3
        public var blackholeSilence: TimeAmount = .seconds(8)
        /// How long frames for a resting identity are held while it joins (a join takes about
        /// a millisecond), and after which it is asked for again (the join failed). Shorter than
        /// the 4 s after which a peer sends its exchange again, so that one asks anew.
        public var wakeWait: TimeAmount = .seconds(3)
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
    /// When each remote node was last heard directly (an authenticated frame not relayed).
    private var heardDirectly: [UInt32: NIODeadline] = [:]
    private var lastDirectProbe: [UInt32: NIODeadline] = [:]
    /// Sealed frames sent straight to each remote since it was last heard directly: how many,
    /// and when the first went (the blackhole rule reads them).
    private var unansweredDirect: [UInt32: (count: Int, since: NIODeadline)] = [:]
    /// The beacon: relays frames (0x05 out, 0x06/0x09 in) and coordinates punches.
    private var beacon: SocketAddress?
    /// Registry keys of remote nodes and when they were fetched.
    private var signingKeys: [UInt32: (key: Ed25519PublicKey, fetched: NIODeadline)] = [:]
    private var missingKeys: [UInt32: NIODeadline] = [:]
    private var keyLookups: Set<UInt32> = []
    /// PILAs waiting for their sender's registry key: the latest per sender and socket (the
    /// same PILA on two sockets is for two different identities).
    private var awaitingKey: [UInt32: [Int: (AuthenticatedKeyExchange, Path)]] = [:]
    private var lastNoSessionAnswer: [Pair: NIODeadline] = [:]
    /// Identities of the host not added yet (they join when first needed), by the remote nodes
    /// each has business with, and those remotes by identity.
    private var resting: [UInt32: Set<UInt32>] = [:]
    private var restingRelations: [UInt32: Set<UInt32>] = [:]
    /// Resting identities asked to join, and when.
    private var waking: [UInt32: NIODeadline] = [:]
    /// Frames from each remote that asked for a resting identity, taken again when it has joined.
    private var held: [UInt32: [(frame: TunnelFrame, arrival: Path, at: NIODeadline)]] = [:]
    static let heldFramesPerRemote = 4

    public init(timing: Timing = Timing()) {
        self.timing = timing
    }

    /// The beacon that relays frames for nodes that cannot reach each other (nil: none).
    /// Beacon messages are accepted from it alone.
    public func useBeacon(_ endpoint: SocketAddress?) {
        beacon = endpoint
        guard endpoint == nil else { return }
        unansweredDirect = [:]
        // No beacon, no relay: back to the direct endpoints, where known.
        for (remote, path) in paths where path.relayed {
            paths[remote] = path.endpoint.map { Path(endpoint: $0, socket: path.socket) }
        }
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

    /// `local` is an identity of the host not added (it has not joined), with business (trust,
    /// a handshake under way) with `remotes`: a key exchange or a frame no session opens from
    /// one of them asks for it (`wake`) instead of being dropped. An empty set forgets it.
    public func rest(_ local: UInt32, relatedTo remotes: Set<UInt32>) {
        for remote in restingRelations.removeValue(forKey: local) ?? [] {
            resting[remote]?.remove(local)
            if resting[remote]?.isEmpty == true { resting[remote] = nil }
        }
        guard !remotes.isEmpty else { return }
        restingRelations[local] = remotes
        for remote in remotes { resting[remote, default: []].insert(local) }
    }

    /// `local` was added and related after a `wake`: it rests no more, and the frames held for
    /// it are taken again (answered now, not at the remote's next retransmission).
    public func woke(_ local: UInt32, now: NIODeadline) -> [TunnelAction] {
        let remotes = restingRelations[local] ?? []
        rest(local, relatedTo: [])
        waking[local] = nil
        var actions: [TunnelAction] = []
        for remote in remotes.sorted() {
            // Taken out first: taken again, they are held anew for identities still asleep.
            for frame in held.removeValue(forKey: remote) ?? [] where now - frame.at < timing.wakeWait {
                actions += dispatch(frame.frame, arrival: frame.arrival, now: now)
            }
        }
        return actions
    }

    /// Asks the resting identities related to `remote` to join (each once per `wakeWait`) and
    /// holds `frame` for them (the latest few per remote); `held` is false when none rests.
    private func wakeResting(for remote: UInt32, holding frame: TunnelFrame, arrival: Path, now: NIODeadline) -> (held: Bool, actions: [TunnelAction]) {
        // Added but not yet related (`woke` not yet called) counts as asleep: the frame would be lost.
        guard let asleep = resting[remote]?.filter({ identities[$0] == nil || waking[$0] != nil }), !asleep.isEmpty else { return (false, []) }
        var frames = held[remote] ?? []
        if frames.count >= Self.heldFramesPerRemote { frames.removeFirst() }
        frames.append((frame, arrival, now))
        held[remote] = frames
        var actions: [TunnelAction] = []
        for local in asleep.sorted() where identities[local] == nil && (waking[local].map { now - $0 >= timing.wakeWait } ?? true) {
            waking[local] = now
            counters.wakes += 1
            actions.append(.wake(local: local))
        }
        return (true, actions)
    }

    /// The identity with node id `node`, if it was added.
    public func identity(_ node: UInt32) -> TunnelIdentity? { identities[node] }

    public func hasSession(local: UInt32, remote: UInt32) -> Bool { tunnels[Pair(local: local, remote: remote)] != nil }

    public var sessionCount: Int { tunnels.count }

    /// The remote nodes `local` has a session with, where each was last seen, and when it last
    /// sent something.
    public func sessions(of local: UInt32) -> [(remote: UInt32, endpoint: SocketAddress?, relayed: Bool, lastReceived: NIODeadline)] {
        tunnels.values.filter { $0.local == local }.sorted { $0.remote < $1.remote }.map {
            ($0.remote, paths[$0.remote]?.endpoint, paths[$0.remote]?.relayed ?? false, $0.lastReceived)
        }
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
            return receiveFromBeacon(bytes, from: endpoint, socket: socket, now: now)
        }
        return receive(frame: bytes[...], arrival: Path(endpoint: endpoint, socket: socket), relayedFrom: nil, now: now)
    }

    /// A tunnel frame that arrived straight from `arrival.endpoint`, or through the beacon from
    /// node `relayedFrom`.
    private func receive(frame bytes: ArraySlice<UInt8>, arrival: Path, relayedFrom: UInt32?, now: NIODeadline) -> [TunnelAction] {
        let frame: TunnelFrame
        do { frame = try TunnelFrame(decoding: bytes) } catch {
            counters.malformed += 1
            return []
        }
        // Whoever relays names the sender; the frame names it too, and they must agree.
        if let relayedFrom, let sender = frame.sender, sender != relayedFrom {
            counters.spoofed += 1
            return []
        }
        switch frame {
        case .authenticatedKeyExchange: counters.keyExchangesIn += 1
        case .keyExchange: counters.keyRequestsIn += 1
        case .plaintext: counters.plaintextDropped += 1
        case .punch: counters.punches += 1
        case .encrypted: break
        }
        return dispatch(frame, arrival: arrival, now: now)
    }

    /// A decoded frame to what handles its kind (PILT is ignored, as 1.18 with encryption on).
    private func dispatch(_ frame: TunnelFrame, arrival: Path, now: NIODeadline) -> [TunnelAction] {
        switch frame {
        case .encrypted(let encrypted): receive(encrypted, arrival: arrival, now: now)
        case .authenticatedKeyExchange(let exchange): receive(exchange, arrival: arrival, now: now)
        case .keyExchange(let request): answerKeyRequest(request, arrival: arrival, now: now)
        case .plaintext, .punch: []
        }
    }

    /// A beacon message: relayed frames and punch commands are the table's; the rest (discover
    /// replies, pokes) are handed on (`fromBeacon`). Only the beacon's own messages are heard:
    /// anyone can send these bytes, and the others are counted and dropped.
    private func receiveFromBeacon(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        guard let beacon, endpoint == beacon, let message = try? BeaconMessage(decoding: bytes[...]) else {
            counters.beacon += 1
            return []
        }
        let arrival = Path(endpoint: nil, socket: socket, relayed: true)
        switch message {
        case let .relayDeliver(source, frame):
            counters.relayedIn += 1
            return receive(frame: frame, arrival: arrival, relayedFrom: source, now: now)
        case let .relayDeliverTo(source, destination, frame):
            guard identities[destination] != nil || restingRelations[destination] != nil else {
                counters.misrouted += 1
                return []
            }
            counters.relayedIn += 1
            return receive(frame: frame, arrival: arrival, relayedFrom: source, now: now)
        case let .punchCommand(ip, port):
            // A peer is about to punch toward us: three PILPs to its endpoint open our side.
            guard let target = Self.socketAddress(ip: ip, port: port) else {
                counters.malformed += 1
                return []
            }
            counters.punchCommands += 1
            let punch = TunnelFrame.punch.encoded()
            counters.framesOut += 3
            return Array(repeating: .send(punch, to: target, socket: socket), count: 3)
        default:
            return [.fromBeacon(message, socket: socket)]
        }
    }

    private static func socketAddress(ip: [UInt8], port: UInt16) -> SocketAddress? {
        switch ip.count {
        case 4: return try? SocketAddress(ipAddress: ip.map(String.init).joined(separator: "."), port: Int(port))
        case 16:
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(ip[$0]) << 8 | UInt16(ip[$0 + 1]), radix: 16) }
            return try? SocketAddress(ipAddress: groups.joined(separator: ":"), port: Int(port))
        default: return nil
        }
    }

    /// Where `remote` is to be reached after an authenticated frame from it arrived by
    /// `arrival`: where it came from. A relayed copy does not displace a direct path heard
    /// from within `directPreference` (1.18 sends its PILAs both ways). Returns the path change
    /// to report, if the path turned relayed or direct.
    private func learn(_ arrival: Path, for remote: UInt32, now: NIODeadline) -> [TunnelAction] {
        let old = paths[remote]
        if arrival.relayed {
            if let direct = heardDirectly[remote], now - direct < timing.directPreference, old?.relayed == false { return [] }
            paths[remote] = Path(endpoint: old?.endpoint, socket: arrival.socket, relayed: true)
        } else {
            heardDirectly[remote] = now
            unansweredDirect[remote] = nil
            paths[remote] = arrival
        }
        return (old?.relayed ?? false) != arrival.relayed ? [.pathChanged(remote: remote, relayed: arrival.relayed)] : []
    }

    /// The local identities a key exchange from `remote` on `socket` applies to.
    private func recipients(of remote: UInt32, socket: Int) -> [UInt32] {
        var locals = related[remote] ?? []
        if let owner = socketOwners[socket] { locals.insert(owner) }
        return locals.filter { identities[$0] != nil && $0 != remote }.sorted()
    }

    private func receive(_ exchange: AuthenticatedKeyExchange, arrival: Path, now: NIODeadline) -> [TunnelAction] {
        let woken = wakeResting(for: exchange.node, holding: .authenticatedKeyExchange(exchange), arrival: arrival, now: now)
        guard !recipients(of: exchange.node, socket: arrival.socket).isEmpty || woken.held else {
            counters.unsolicited += 1
            return []
        }
        // A held exchange has its sender's key looked up now: it is at hand when the exchange
        // is taken again.
        return woken.actions + verify(exchange, arrival: arrival, now: now)
    }

    private func verify(_ exchange: AuthenticatedKeyExchange, arrival: Path, now: NIODeadline) -> [TunnelAction] {
        if let known = signingKeys[exchange.node] {
            // A PILA with another key than the registry's: the node may have rotated its key.
            // Fetch it again, but not more than once per negative-cache period.
            let stale = known.key.bytes != exchange.ed25519 && now - known.fetched >= timing.negativeKeyCache
            if !stale { return apply(exchange, registryKey: known.key, arrival: arrival, now: now) }
        }
        if let missing = missingKeys[exchange.node], now - missing < timing.negativeKeyCache {
            counters.keyExchangesRejected += 1
            return []
        }
        // The latest exchange, but a direct arrival is kept over its relayed copy (1.18 sends
        // the first PILA both ways): the remote was heard directly, so it is answered directly.
        var heardBy = arrival
        if arrival.relayed, let earlier = awaitingKey[exchange.node]?[arrival.socket]?.1, !earlier.relayed { heardBy = earlier }
        awaitingKey[exchange.node, default: [:]][arrival.socket] = (exchange, heardBy)
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
        return (waiting ?? [:]).sorted { $0.key < $1.key }.flatMap { _, pending in
            apply(pending.0, registryKey: key, arrival: pending.1, now: now)
        }
    }

    /// Forgets the cached registry key of `node` (it rotated its key).
    public func forgetKey(of node: UInt32) { signingKeys[node] = nil }

    private func apply(_ exchange: AuthenticatedKeyExchange, registryKey: Ed25519PublicKey, arrival: Path, now: NIODeadline) -> [TunnelAction] {
        guard exchange.ed25519 == registryKey.bytes,
            registryKey.isValidSignature(exchange.signature, for: exchange.signedMessage)
        else {
            counters.keyExchangesRejected += 1
            return []
        }
        let remote = exchange.node
        var actions = learn(arrival, for: remote, now: now)
        for local in recipients(of: remote, socket: arrival.socket) {
            guard let identity = identities[local], let reply = paths[remote] else { continue }
            let pair = Pair(local: local, remote: remote)
            if let tunnel = tunnels[pair], tunnel.remoteExchangeKey == exchange.x25519 {
                // The same key again: the session stands. Answer only if the remote seems to
                // have lost it (nothing from it for a while), at most once a second.
                if now - tunnel.lastReceived >= timing.answerSilence, now - tunnel.lastAnswered >= timing.answerInterval {
                    tunnel.lastAnswered = now
                    actions += emit(identity.authenticatedExchange, reply, local: local, remote: remote)
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
            actions += emit(identity.authenticatedExchange, reply, local: local, remote: remote)
            // What waited for the key goes out now, in order.
            for packet in pending.removeValue(forKey: pair)?.queue ?? [] {
                actions += seal(packet, on: tunnel, path: reply, now: now)
            }
        }
        return actions
    }

    private func answerKeyRequest(_ request: KeyExchange, arrival: Path, now: NIODeadline) -> [TunnelAction] {
        let remote = request.node
        let woken = wakeResting(for: remote, holding: .keyExchange(request), arrival: arrival, now: now)
        let locals = recipients(of: remote, socket: arrival.socket)
        guard !locals.isEmpty else {
            if !woken.held { counters.unsolicited += 1 }
            return woken.actions
        }
        // A PILK installs nothing (it is unauthenticated): it asks for our PILA.
        var actions: [TunnelAction] = []
        for local in locals {
            guard let identity = identities[local] else { continue }
            let pair = Pair(local: local, remote: remote)
            let last = tunnels[pair]?.lastAnswered ?? lastNoSessionAnswer[pair] ?? .uptimeNanoseconds(0)
            guard now - last >= timing.answerInterval else { continue }
            if let tunnel = tunnels[pair] { tunnel.lastAnswered = now } else { lastNoSessionAnswer[pair] = now }
            // Unauthenticated: it changes no path; the answer goes back the way it came.
            actions += emit(identity.authenticatedExchange, reply(arrival, for: remote), local: local, remote: remote)
        }
        return woken.actions + actions
    }

    /// Where an answer to something that arrived by `arrival` from `remote` goes.
    private func reply(_ arrival: Path, for remote: UInt32) -> Path {
        arrival.relayed ? Path(endpoint: paths[remote]?.endpoint, socket: arrival.socket, relayed: true) : arrival
    }

    private func receive(_ frame: EncryptedFrame, arrival: Path, now: NIODeadline) -> [TunnelAction] {
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
            // The remote may hold a session from before a restart with an identity resting now.
            let woken = wakeResting(for: remote, holding: .encrypted(frame), arrival: arrival, now: now)
            return woken.actions + undecryptable(from: remote, arrival: arrival, now: now)
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
        // The remote may have moved (NAT rebinding), or lost or found a direct path: reply
        // the way it now comes.
        let changed = learn(arrival, for: remote, now: now)
        counters.delivered += 1
        return [.deliver(local: tunnel.local, packet)] + changed
    }

    /// A PILS no session opens: the remote thinks it has a session we do not. Those of our
    /// identities with business with it answer with their PILA, at most once per 3 s.
    private func undecryptable(from remote: UInt32, arrival: Path, now: NIODeadline) -> [TunnelAction] {
        let locals = recipients(of: remote, socket: arrival.socket)
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
            let path = reply(arrival, for: remote)
            actions += emit(identity.authenticatedExchange, path, local: local, remote: remote)
            if tunnels[pair] == nil { actions += emit(identity.keyRequest, path, local: local, remote: remote) }
        }
        return actions
    }

    // MARK: Sending

    /// Sends `packet` from the local identity named by its source to `remote`: sealed at once
    /// on a session, else queued while a key exchange runs (with `endpoint`, where the remote
    /// was last seen, or, knowing neither, through the beacon: a node that hides its endpoint).
    public func send(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil, now: NIODeadline) throws(TunnelError) -> [TunnelAction] {
        var actions: [TunnelAction] = []
        let local = packet.source.node
        // The source's node names the sending identity; its network part is the network the
        // packet is sent within (a broadcast's is the custom network's).
        guard let identity = identities[local] else { throw .unknownIdentity(local) }
        let plaintext: [UInt8]
        do { plaintext = try packet.encoded() } catch { throw .encoding("\(error)") }
        if let endpoint {
            // A relayed path stays relayed (until the remote is heard directly); the endpoint is
            // what the next key exchange tries besides.
            paths[remote, default: Path(endpoint: endpoint, socket: 0)].endpoint = endpoint
        } else if paths[remote] == nil, beacon != nil {
            paths[remote] = Path(endpoint: nil, socket: 0, relayed: true)
            actions.append(.pathChanged(remote: remote, relayed: true))
        }
        guard let path = paths[remote] else { throw .noEndpoint(remote) }
        let pair = Pair(local: local, remote: remote)
        if let tunnel = tunnels[pair] {
            return actions + seal(plaintext, on: tunnel, path: path, now: now)
        }
        var exchange = pending[pair] ?? Pending(nextAttempt: now)
        if exchange.queue.count >= timing.queueLimit {
            exchange.queue.removeFirst()
            counters.queueOverflow += 1
        }
        exchange.queue.append(plaintext)
        related[remote, default: []].insert(local)
        if exchange.attempts == 0 {
            exchange.attempts = 1
            exchange.nextAttempt = now + timing.retransmit
            // As 1.18: straight to the endpoint and a copy through the beacon at once, so a
            // remote that cannot be reached directly gets the exchange without waiting for the
            // retries to give up on it, and one that can again is tried directly again (a path
            // once relayed is not relayed for good).
            if path.endpoint != nil {
                actions += emit(identity.authenticatedExchange, Path(endpoint: path.endpoint, socket: path.socket), local: local, remote: remote)
            }
            if beacon != nil {
                actions += emit(identity.authenticatedExchange, Path(endpoint: path.endpoint, socket: path.socket, relayed: true), local: local, remote: remote)
            }
        }
        pending[pair] = exchange
        return actions
    }

    private func seal(_ plaintext: [UInt8], on tunnel: Tunnel, path: Path, now: NIODeadline) -> [TunnelAction] {
        // Sealed straight into the datagram: no copy of the ciphertext.
        let cipher = tunnel.cipher, sender = tunnel.local
        guard let frame = try? EncryptedFrame.datagram(
            sender: sender, noncePrefix: cipher.noncePrefix, sealedCount: plaintext.count + TunnelCipher.tagSize,
            seal: { output in try plaintext.withUnsafeBytes { try cipher.seal($0, sender: sender, into: output).counter } })
        else { return [] }
        tunnel.lastSent = now
        if beacon != nil, !path.relayed, paths[tunnel.remote]?.relayed == false {
            // On the remote's direct path (not a probe of a relayed one): does it still answer?
            // A record too old to have reached the count starts again: a keepalive long ago
            // and two frames now are not three frames over the silence.
            var record = unansweredDirect[tunnel.remote] ?? (0, now)
            if record.count < timing.blackholeWrites, now - record.since > timing.blackholeSilence { record = (0, now) }
            unansweredDirect[tunnel.remote] = (record.count + 1, record.since)
        }
        return emit(frame, path, local: tunnel.local, remote: tunnel.remote)
    }

    /// `frame` from `local` to `remote` along `path`. An identity with a socket of its own
    /// always sends from it; the others from the path's socket (the one the remote last
    /// reached, or the shared one). Relayed: wrapped in 0x05 to the beacon.
    private func emit(_ frame: [UInt8], _ path: Path, local: UInt32, remote: UInt32) -> [TunnelAction] {
        let socket = sendingSocket(local, path)
        if path.relayed {
            guard let beacon, let wrapped = try? BeaconMessage.relay(source: local, destination: remote, frame: frame[...]).encoded() else {
                counters.relayUnavailable += 1
                return []
            }
            counters.framesOut += 1
            counters.relayedOut += 1
            return [.send(wrapped, to: beacon, socket: socket)]
        }
        guard let endpoint = path.endpoint else {
            counters.relayUnavailable += 1
            return []
        }
        counters.framesOut += 1
        return [.send(frame, to: endpoint, socket: socket)]
    }

    /// The socket `local` sends on along `path`: its own if it has one, else the path's.
    private func sendingSocket(_ local: UInt32, _ path: Path) -> Int { identitySockets[local] ?? path.socket }

    // MARK: Time

    /// Retransmits key exchanges (through the beacon from the `relayFromAttempt`th, with a
    /// punch request), gives up on dead ones, sends keepalives, forgets idle sessions. Call
    /// about once a second.
    public func tick(now: NIODeadline) -> [TunnelAction] {
        var actions: [TunnelAction] = []
        for (pair, var exchange) in pending where exchange.nextAttempt <= now {
            guard let identity = identities[pair.local], var path = paths[pair.remote], exchange.attempts < timing.attempts else {
                pending[pair] = nil
                unrelate(local: pair.local, remote: pair.remote, keepExplicit: true)
                actions.append(.exchangeFailed(local: pair.local, remote: pair.remote, dropped: exchange.queue.count))
                continue
            }
            exchange.attempts += 1
            exchange.nextAttempt = now + timing.retransmit
            pending[pair] = exchange
            // To the beacon, unless the remote was heard directly of late (by another of our
            // identities: the path is the remote's, and that one works).
            let heardOfLate = heardDirectly[pair.remote].map { now - $0 < timing.directPreference } ?? false
            if exchange.attempts >= timing.relayFromAttempt, !path.relayed, !heardOfLate, let beacon {
                path.relayed = true
                paths[pair.remote] = path
                actions.append(.pathChanged(remote: pair.remote, relayed: true))
                // The beacon tells both sides where the other is; their PILPs may open a
                // direct path, which the first frame heard directly switches back to.
                if let request = try? BeaconMessage.punchRequest(requester: pair.local, target: pair.remote).encoded() {
                    actions.append(.send(request, to: beacon, socket: sendingSocket(pair.local, path)))
                }
            }
            // As 1.18: the PILA again, and a key request since we hold no session.
            actions += emit(identity.authenticatedExchange, path, local: pair.local, remote: pair.remote)
            actions += emit(identity.keyRequest, path, local: pair.local, remote: pair.remote)
        }
        actions += giveUpSilentDirectPaths(now: now)
        actions += probeDirectPaths(now: now)
        // A join that did not come back within the wait: its frames are dropped (the remote
        // sends again), and the next frame asks again.
        for (remote, frames) in held {
            let fresh = frames.filter { now - $0.at < timing.wakeWait }
            held[remote] = fresh.isEmpty ? nil : fresh
        }
        waking = waking.filter { now - $0.value < timing.wakeWait }
        for (pair, tunnel) in tunnels {
            if now - tunnel.lastReceived >= timing.idle {
                dropTunnel(pair)
                continue
            }
            guard now - tunnel.lastSent >= timing.keepalive, let identity = identities[pair.local], let path = paths[pair.remote] else { continue }
            if let bytes = Self.keepalive(from: identity, to: pair.remote) {
                let sent = seal(bytes, on: tunnel, path: path, now: now)
                counters.keepalivesSent += sent.isEmpty ? 0 : 1
                actions += sent
            }
        }
        return actions
    }

    /// 1.18's blackhole rule: a remote that has had `blackholeWrites` frames straight to it and
    /// has said nothing directly for `blackholeSilence` since the first is reached through the
    /// beacon from now on; `probeDirectPaths` tries the direct path again in `directProbe`.
    private func giveUpSilentDirectPaths(now: NIODeadline) -> [TunnelAction] {
        guard beacon != nil else { return [] }
        var actions: [TunnelAction] = []
        for (remote, record) in unansweredDirect where record.count >= timing.blackholeWrites && now - record.since >= timing.blackholeSilence {
            unansweredDirect[remote] = nil
            guard var path = paths[remote], !path.relayed else { continue }
            path.relayed = true
            paths[remote] = path
            lastDirectProbe[remote] = now
            counters.blackholes += 1
            actions.append(.pathChanged(remote: remote, relayed: true))
        }
        return actions
    }

    /// An empty keepalive straight to each relayed remote whose direct endpoint is known, every
    /// `directProbe`: if it gets through, the remote hears us directly and answers directly,
    /// and so do we once we hear it.
    private func probeDirectPaths(now: NIODeadline) -> [TunnelAction] {
        var actions: [TunnelAction] = []
        for (remote, path) in paths where path.relayed {
            guard let endpoint = path.endpoint, now - (lastDirectProbe[remote] ?? .uptimeNanoseconds(0)) >= timing.directProbe,
                let local = related[remote]?.sorted().first(where: { tunnels[Pair(local: $0, remote: remote)] != nil }),
                let tunnel = tunnels[Pair(local: local, remote: remote)], let identity = identities[local]
            else { continue }
            lastDirectProbe[remote] = now
            guard let bytes = Self.keepalive(from: identity, to: remote) else { continue }
            // A probe may be lost: it does not stand in for the keepalive on the relayed path.
            let lastSent = tunnel.lastSent
            actions += seal(bytes, on: tunnel, path: Path(endpoint: endpoint, socket: path.socket), now: now)
            tunnel.lastSent = lastSent
        }
        return actions
    }

    /// An empty control packet (both ports 0), which the remote swallows: 1.18's keepalive.
    private static func keepalive(from identity: TunnelIdentity, to remote: UInt32) -> [UInt8]? {
        try? Packet(proto: .control, source: identity.address, destination: Address(node: remote), sourcePort: 0, destinationPort: 0).encoded()
    }

    private func dropTunnel(_ pair: Pair) {
        guard let tunnel = tunnels.removeValue(forKey: pair) else { return }
        unansweredDirect[pair.remote] = nil
        for prefix in tunnel.prefixes { epochs[Epoch(remote: pair.remote, prefix: prefix)] = nil }
        unrelate(local: pair.local, remote: pair.remote, keepExplicit: true)
    }
}
