public import NIOCore
import PilotCrypto
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
    /// Something timed is due before the next tick: call `sendDue` at `nextDue`.
    case timerDue
    /// Ask the registry, as identity `local`, where relayed remote `remote` is (a signed
    /// `resolve`), and call `endpointResolved`: the start of a direct upgrade.
    case resolveEndpoint(local: UInt32, remote: UInt32)
    /// A message from the beacon that is not for the table (a poke, a discover reply), which
    /// came in on socket `socket`.
    case fromBeacon(BeaconMessage, socket: Int)
    /// Resting identity `local` (see `rest`) is wanted by a node it has business with: add it,
    /// relate it, then call `woke`, which takes again the frames that asked for it.
    case wake(local: UInt32)
}

/// Why a packet could not be sent.
public enum TunnelError: Error, Equatable, CustomStringConvertible {
    /// No identity of this table has that node id.
    case unknownIdentity(UInt32)
    /// The remote node was never heard and no endpoint was given.
    case noEndpoint(UInt32)
    /// The packet's source is not an identity of this host.
    case sourceNotLocal(Address)
    /// The packet or frame could not be encoded.
    case encoding(String)

    /// What went wrong, for a log line or an error reply.
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
    /// Datagrams read, and frames sent.
    public var framesIn = 0
    /// Frames sent.
    public var framesOut = 0
    /// Packets handed to an identity.
    public var delivered = 0
    /// PILA and PILK received, and sessions made from them.
    public var keyExchangesIn = 0
    /// PILK (key requests) received.
    public var keyRequestsIn = 0
    /// Sessions made from key exchanges.
    public var sessionsInstalled = 0
    /// PILA whose Ed25519 key is not the registry's, or whose signature does not verify.
    public var keyExchangesRejected = 0
    /// Key exchanges from a node no local identity has business with (on the shared socket).
    public var unsolicited = 0
    /// Frames or packets that do not decode.
    public var malformed = 0
    /// PILT: 1.18 with encryption on ignores plaintext, and so do we.
    public var plaintextDropped = 0
    /// PILS no session opens: no key, a failed tag, a replay.
    public var noSession = 0
    /// PILS whose tag did not verify under any key tried.
    public var authenticationFailed = 0
    /// PILS seen before (the replay window).
    public var replayed = 0
    /// The packet inside names another source than the frame's sender.
    public var spoofed = 0
    /// The packet inside is for another node than the identity whose key opened it.
    public var misrouted = 0
    /// Packets dropped because too many waited for a key exchange.
    public var queueOverflow = 0
    /// Beacon messages that are not from the beacon (or do not parse).
    public var beacon = 0
    /// PILPs sent, and keepalives sealed.
    public var punches = 0
    /// Keepalives sealed and sent.
    public var keepalivesSent = 0
    /// Tunnel frames that came through the beacon (0x06, 0x09) and went through it (0x05).
    public var relayedIn = 0
    /// Frames sent through the beacon (0x05).
    public var relayedOut = 0
    /// Frames to send through the beacon while none is known.
    public var relayUnavailable = 0
    /// Punch commands (0x04) obeyed with three PILPs.
    public var punchCommands = 0
    /// Punch requests (0x03) sent: with a first key exchange, and at each direct upgrade.
    public var punchRequests = 0
    /// Discovers sent to the beacon when a direct path went silent (`rediscover`).
    public var rediscovers = 0
    /// Direct upgrades of relayed remotes started (a resolve asked for), and the sealed probes
    /// they sent straight to the remote.
    public var upgrades = 0
    /// See `upgrades`.
    public var upgradeProbes = 0
    /// Direct paths given up for the beacon because the remote fell silent on them (1.18's
    /// blackhole rule).
    public var blackholes = 0
    /// Resting identities asked to join because a node they have business with sent a frame.
    public var wakes = 0

    /// All zero.
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

    /// A first key exchange held back for its punch (`punchCommanded`): the socket the punch
    /// request went from, and when the exchange goes.
    struct PunchWait {
        let socket: Int
        var until: NIODeadline
    }

    /// A relayed remote being tried directly again (1.18's direct upgrade): its endpoint asked
    /// of the registry as `local`, then, once `endpoint` is known, `probesLeft` sealed probes
    /// straight to it, the next at `due`. While the registry is asked, `due` is when its answer
    /// is given up on.
    struct Upgrade {
        let local: UInt32
        var endpoint: SocketAddress?
        var probesLeft = 0
        var due: NIODeadline
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

    /// 1.18's numbers (docs/PROTOCOL.md §5.6).
    public struct Timing: Sendable {
        /// How long an unanswered key exchange waits before it is sent again.
        public var retransmit: TimeAmount = .seconds(4)
        /// Key exchange attempts before giving up (and dropping what waited).
        public var attempts = 6
        /// A session silent this long is offered a fresh key exchange.
        public var answerSilence: TimeAmount = .seconds(6)
        /// At most one answer to a node's key exchanges in this interval.
        public var answerInterval: TimeAmount = .seconds(1)
        /// At most one key request per pair for frames no session opens.
        public var noSessionAnswerInterval: TimeAmount = .seconds(3)
        /// A session nothing was sent on for this long gets a keepalive.
        public var keepalive: TimeAmount = .seconds(25)
        /// A session nothing arrived on for this long is forgotten (it is re-established on use).
        public var idle: TimeAmount = .minutes(10)
        /// How long the registry's "no such key" is believed.
        public var negativeKeyCache: TimeAmount = .seconds(3)
        /// Packets held per pair while its key exchange is under way.
        public var queueLimit = 64
        /// The exchange attempt from which frames go through the beacon (1.18: the second).
        public var relayFromAttempt = 2
        /// A remote heard directly this recently is answered directly even when a relayed copy
        /// of its frame arrives too (1.18 sends each PILA both ways).
        public var directPreference: TimeAmount = .seconds(10)
        /// A first key exchange to an endpoint the registry gave waits for the beacon's punch
        /// command (0x04) that answers its punch request, and goes `punchLead` after it, by
        /// which time the remote has sent its PILPs (1.18 sends them about 1 ms after its own
        /// command); with no command, it goes `punchWaitLimit` after the request.
        public var punchLead: TimeAmount = .milliseconds(50)
        /// See `punchLead`.
        public var punchWaitLimit: TimeAmount = .milliseconds(300)
        /// How often a relayed remote with a session is tried directly (1.18's direct upgrade):
        /// its endpoint is asked of the registry, a punch request goes to the beacon, then
        /// `upgradeProbes` sealed probes go straight to the endpoint, `upgradeProbeSpacing`
        /// apart. Once one gets through, the remote answers directly, and the first frame heard
        /// directly turns the path direct (1.18: 15 s).
        public var directProbe: TimeAmount = .seconds(15)
        /// See `directProbe` (1.18: 5, the first 200 ms after the punch request).
        public var upgradeProbes = 5
        /// See `directProbe`.
        public var upgradeProbeSpacing: TimeAmount = .milliseconds(200)
        /// Direct upgrades started per tick (a second) at most, and under way at most (asking
        /// the registry, or probing): a host with thousands of relayed remotes asks the
        /// registry for 32 a second, not for all of them at once, and its 15 s round stretches
        /// to a remote's turn (thousands of remotes: a few minutes).
        public var upgradesPerTick = 32
        /// See `upgradesPerTick`.
        public var upgradesAtOnce = 256
        /// How long the registry's answer for an upgrade is waited for.
        public var upgradeResolveWait: TimeAmount = .seconds(10)
        /// 1.18's blackhole rule: a remote sent this many sealed frames directly, and heard
        /// nothing directly for `blackholeSilence` since the first, is reached through the
        /// beacon (and tried directly again every `directProbe`). This also catches a stream
        /// whose SYNs go unanswered (three within the silence).
        public var blackholeWrites = 3
        /// See `blackholeWrites`.
        public var blackholeSilence: TimeAmount = .seconds(8)
        /// How long frames for a resting identity are held while it joins (a join takes about
        /// a millisecond), and after which it is asked for again (the join failed). Shorter than
        /// the 4 s after which a peer sends its exchange again, so that one asks anew.
        public var wakeWait: TimeAmount = .seconds(3)
        /// 1.18's numbers.
        public init() {}
    }

    /// What the table counted so far.
    public internal(set) var counters = TunnelCounters()
    let timing: Timing
    var identities: [UInt32: TunnelIdentity] = [:]
    /// Socket number → the identity that owns it (sockets of their own, for identities that
    /// accept strangers). Socket 0 and others absent here are shared.
    var socketOwners: [Int: UInt32] = [:]
    var identitySockets: [UInt32: Int] = [:]
    var tunnels: [NodePair: Tunnel] = [:]
    /// Where each PILS is opened, kept from one to the next (as long as the longest so far):
    /// only the packet's payload is copied out of it.
    var opened: [UInt8] = []
    /// What the sessions dropped so far carried, per local identity (`traffic(of:)`).
    var droppedTraffic: [UInt32: TunnelTraffic] = [:]
    /// What the identities removed so far carried: kept so that `totalTraffic` never goes down.
    var removedTraffic = TunnelTraffic()
    var epochs: [Epoch: UInt32] = [:]
    var pending: [NodePair: Pending] = [:]
    /// First exchanges of `pending` held back for their punch (at most one per pending pair).
    var punchWaits: [NodePair: PunchWait] = [:]
    /// Remote node → local identities with a tunnel, a pending exchange or a relation (trust,
    /// a handshake under way) with it: those a key exchange from it applies to.
    var related: [UInt32: Set<UInt32>] = [:]
    var relations: Set<NodePair> = []
    var paths: [UInt32: Path] = [:]
    /// When each remote node's path last turned relayed or direct (or was first set).
    var pathSince: [UInt32: NIODeadline] = [:]
    /// When each remote node was last heard directly (an authenticated frame not relayed).
    var heardDirectly: [UInt32: NIODeadline] = [:]
    /// When each relayed remote's last direct upgrade started (or its path turned relayed), and
    /// the upgrades under way (at most `upgradesAtOnce`).
    var lastUpgrade: [UInt32: NIODeadline] = [:]
    var upgrades: [UInt32: Upgrade] = [:]
    /// Sealed frames sent straight to each remote since it was last heard directly: how many,
    /// and when the first went (the blackhole rule reads them).
    var unansweredDirect: [UInt32: (count: Int, since: NIODeadline)] = [:]
    /// The beacon: relays frames (0x05 out, 0x06/0x09 in) and coordinates punches.
    var beacon: SocketAddress?
    /// Registry keys of remote nodes and when they were fetched.
    var signingKeys: [UInt32: (key: Ed25519PublicKey, fetched: NIODeadline)] = [:]
    var missingKeys: [UInt32: NIODeadline] = [:]
    var keyLookups: Set<UInt32> = []
    /// PILAs waiting for their sender's registry key: the latest per sender and socket (the
    /// same PILA on two sockets is for two different identities).
    var awaitingKey: [UInt32: [Int: (AuthenticatedKeyExchange, Path)]] = [:]
    var lastNoSessionAnswer: [NodePair: NIODeadline] = [:]
    /// Identities of the host not added yet (they join when first needed), by the remote nodes
    /// each has business with, and those remotes by identity.
    var resting: [UInt32: NodeSet] = [:]
    var restingRelations: [UInt32: NodeSet] = [:]
    /// Resting identities asked to join, and when.
    var waking: [UInt32: NIODeadline] = [:]
    /// Frames from each remote that asked for a resting identity, taken again when it has joined.
    var held: [UInt32: [(frame: TunnelFrame, arrival: Path, at: NIODeadline)]] = [:]
    static let heldFramesPerRemote = 4

    /// An empty table; `timing` defaults to 1.18's numbers.
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

    /// Adds `identity`; with `socket`, that socket is its own (a key exchange arriving there is
    /// for it, from anyone) and it sends from it.
    public func add(_ identity: TunnelIdentity, ownSocket socket: Int? = nil) {
        identities[identity.node] = identity
        if let socket {
            socketOwners[socket] = identity.node
            identitySockets[identity.node] = socket
        }
    }

    /// `identity` replaces the identity of its node, if the table has one; the rest stays.
    public func replace(_ identity: TunnelIdentity) {
        guard identities[identity.node] != nil else { return }
        identities[identity.node] = identity
    }

    /// Forgets `node` and every tunnel it has.
    public func remove(_ node: UInt32) {
        if identities[node] != nil { removedTraffic = removedTraffic + traffic(of: node) }
        identities[node] = nil
        if let socket = identitySockets.removeValue(forKey: node) { socketOwners[socket] = nil }
        for pair in tunnels.keys where pair.local == node { dropTunnel(pair) }
        droppedTraffic[node] = nil
        for pair in pending.keys where pair.local == node {
            pending[pair] = nil
            punchWaits[pair] = nil
        }
        for pair in relations where pair.local == node { relations.remove(pair) }
        for remote in Array(related.keys) { unrelate(local: node, remote: remote, keepExplicit: false) }
    }

    /// `local` has business with `remote` (trust, a handshake under way): key exchanges from
    /// `remote` apply to it even with no session.
    public func relate(local: UInt32, remote: UInt32) {
        relations.insert(NodePair(local: local, remote: remote))
        related[remote, default: []].insert(local)
    }

    /// `local` has no business with `remote` any more (see `relate`).
    public func forgetRelation(local: UInt32, remote: UInt32) {
        relations.remove(NodePair(local: local, remote: remote))
        unrelate(local: local, remote: remote, keepExplicit: true)
    }

    func unrelate(local: UInt32, remote: UInt32, keepExplicit: Bool) {
        let pair = NodePair(local: local, remote: remote)
        guard tunnels[pair] == nil, pending[pair] == nil, !(keepExplicit && relations.contains(pair)) else { return }
        related[remote]?.remove(local)
        if related[remote]?.isEmpty == true {
            related[remote] = nil
            forget(remote: remote)
        }
    }

    /// Remote nodes whose path the table keeps: those some identity has business with.
    public var remotesKnown: Int { paths.count }

    /// No identity of the table has business with `remote` any more: what the table knew of
    /// its path goes too, so the per-remote state is bounded by the remotes in use, not by
    /// every remote ever seen (a public identity hears from strangers without end). A later
    /// dial or key exchange learns the path again.
    func forget(remote: UInt32) {
        guard related[remote] == nil, resting[remote] == nil else { return }
        paths[remote] = nil
        pathSince[remote] = nil
        heardDirectly[remote] = nil
        lastUpgrade[remote] = nil
        upgrades[remote] = nil
        unansweredDirect[remote] = nil
    }

    /// `local` is an identity of the host not added (it has not joined), with business (trust,
    /// a handshake under way) with `remotes`: a key exchange or a frame no session opens from
    /// one of them asks for it (`wake`) instead of being dropped. `remotes` may come in any order
    /// and repeat; none forgets it.
    public func rest(_ local: UInt32, relatedTo remotes: [UInt32]) {
        for remote in restingRelations.removeValue(forKey: local) ?? [] {
            resting[remote]?.remove(local)
            if resting[remote]?.isEmpty == true { resting[remote] = nil }
        }
        guard !remotes.isEmpty else { return }
        let remotes = NodeSet(remotes)
        restingRelations[local] = remotes
        for remote in remotes { resting[remote, default: []].insert(local) }
    }

    /// `local` was added and related after a `wake`: it rests no more, and the frames held for
    /// it are taken again (answered now, not at the remote's next retransmission).
    public func woke(_ local: UInt32, now: NIODeadline) -> TunnelActions {
        let remotes = restingRelations[local] ?? []
        rest(local, relatedTo: [])
        waking[local] = nil
        var actions: TunnelActions = []
        for remote in remotes {
            // Taken out first: taken again, they are held anew for identities still asleep.
            for frame in held.removeValue(forKey: remote) ?? [] where now - frame.at < timing.wakeWait {
                actions += dispatch(frame.frame, arrival: frame.arrival, now: now)
            }
        }
        return actions
    }

    /// Asks the resting identities related to `remote` to join (each once per `wakeWait`) and
    /// holds `frame` for them (the latest few per remote); `held` is false when none rests.
    func wakeResting(for remote: UInt32, holding frame: TunnelFrame, arrival: Path, now: NIODeadline) -> (held: Bool, actions: TunnelActions) {
        // Added but not yet related (`woke` not yet called) counts as asleep: the frame would be lost.
        guard let asleep = resting[remote]?.filter({ identities[$0] == nil || waking[$0] != nil }), !asleep.isEmpty else { return (false, []) }
        var frames = held[remote] ?? []
        if frames.count >= Self.heldFramesPerRemote { frames.removeFirst() }
        frames.append((frame, arrival, now))
        held[remote] = frames
        var actions: TunnelActions = []
        for local in asleep where identities[local] == nil && (waking[local].map { now - $0 >= timing.wakeWait } ?? true) {
            waking[local] = now
            counters.wakes += 1
            actions.append(.wake(local: local))
        }
        return (true, actions)
    }

    /// The identity with node id `node`, if it was added.
    public func identity(_ node: UInt32) -> TunnelIdentity? { identities[node] }

    /// Whether `local` holds a session with `remote`.
    public func hasSession(local: UInt32, remote: UInt32) -> Bool { tunnels[NodePair(local: local, remote: remote)] != nil }

    /// Sessions held, over every identity.
    public var sessionCount: Int { tunnels.count }

    /// The remote nodes `local` has a session with, where each was last seen, whether frames
    /// to it go through the beacon and since when its path is what it is, and when it last sent
    /// something.
    public func sessions(of local: UInt32) -> [(remote: UInt32, endpoint: SocketAddress?, relayed: Bool, pathSince: NIODeadline, lastReceived: NIODeadline)] {
        tunnels.values.filter { $0.local == local }.sorted { $0.remote < $1.remote }.map {
            ($0.remote, paths[$0.remote]?.endpoint, paths[$0.remote]?.relayed ?? false, pathSince[$0.remote] ?? $0.established, $0.lastReceived)
        }
    }

    /// What `local`'s tunnels carried, those it holds and those it had.
    public func traffic(of local: UInt32) -> TunnelTraffic {
        tunnels.values.filter { $0.local == local }.reduce(droppedTraffic[local] ?? TunnelTraffic()) { $0 + $1.traffic }
    }

    /// What every identity's tunnels carried, over the table's life (removed identities
    /// included): the host's totals, read at each metrics scrape rather than counted twice.
    public var totalTraffic: TunnelTraffic {
        tunnels.values.reduce(droppedTraffic.values.reduce(removedTraffic, +)) { $0 + $1.traffic }
    }

    /// What each identity's tunnels carried, those it holds and those it had: `traffic(of:)` of
    /// every identity, in one pass.
    public var trafficByIdentity: [UInt32: TunnelTraffic] {
        var traffic = droppedTraffic
        for tunnel in tunnels.values { traffic[tunnel.local] = (traffic[tunnel.local] ?? TunnelTraffic()) + tunnel.traffic }
        return traffic
    }

    /// Sessions whose frames go straight to the remote, and those that go through the beacon.
    public var tunnelPaths: (direct: Int, relayed: Int) {
        let relayed = tunnels.keys.reduce(0) { $0 + (paths[$1.remote]?.relayed == true ? 1 : 0) }
        return (tunnels.count - relayed, relayed)
    }

    func dropTunnel(_ pair: NodePair) {
        guard let tunnel = tunnels.removeValue(forKey: pair) else { return }
        if identities[pair.local] != nil { droppedTraffic[pair.local] = (droppedTraffic[pair.local] ?? TunnelTraffic()) + tunnel.traffic }
        unansweredDirect[pair.remote] = nil
        for prefix in tunnel.prefixes { epochs[Epoch(remote: pair.remote, prefix: prefix)] = nil }
        unrelate(local: pair.local, remote: pair.remote, keepExplicit: true)
        // An upgrade probes on its session; with the last session, the round is forgotten.
        if upgrades[pair.remote]?.local == pair.local { upgrades[pair.remote] = nil }
        if !hasAnySession(with: pair.remote) { lastUpgrade[pair.remote] = nil }
    }

    /// Whether some identity of the table holds a session with `remote`.
    func hasAnySession(with remote: UInt32) -> Bool {
        (related[remote] ?? []).contains { tunnels[NodePair(local: $0, remote: remote)] != nil }
    }
}
