import Foundation
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import PilotNet
public import PilotWire

/// The beacon (UDP): tells nodes their public endpoint, introduces nodes for hole punching, relays
/// tunnel frames between nodes that cannot reach each other, and pokes nodes when a relayed
/// handshake waits at the registry (docs/PROTOCOL.md §9).
///
/// With peers (other beacons of the overlay), each tells the others every `syncInterval` which
/// nodes it knows (0x07 sync); a relay or a punch request for a node that another beacon knows
/// goes there (the relay as it came, the punch as 0x0B, answered with 0x0C). What comes from a
/// peer is never passed on again. The peers are `Configuration.peers` together with those found
/// later (`findPeers(_:)`, from the database's beacon table: `BeaconRoster`).
public final class BeaconServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// A node that sent no discover for this long is forgotten.
        public var endpointLifetime: Double = 300
        /// Relayed and punch datagrams per source IP: burst and per-second refill. Peers are
        /// not held to it (their senders were, at their own beacon).
        public var relayBurst: Double = 20_000
        public var relaysPerSecond: Double = 10_000
        /// This beacon's id in its syncs.
        public var beaconID: UInt32 = .random(in: 1...UInt32.max)
        /// The other beacons of the overlay: syncs go to them, and only theirs are heeded. Always
        /// peers, whatever `findPeers(_:)` is told.
        public var peers: [SocketAddress] = []
        /// Seconds between syncs to each peer.
        public var syncInterval: Double = 10
        /// A node a peer named is forgotten when no sync names it for this long.
        public var peerNodeLifetime: Double = 35

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// What the beacon has done, for tests and status.
    public struct Counters: Sendable, Equatable {
        public var discovers = 0
        public var punches = 0
        public var relayed = 0
        /// Bytes of the frames relayed (the tunnel frames, without the beacon's header).
        public var relayedBytes = 0
        public var relayDropped = 0
        public var notifies = 0
        public var malformed = 0
        public var rateLimited = 0
        /// Punch requests refused because one side hides its endpoint (relay-only).
        public var punchesRefused = 0
        /// Relays sent on to the peer that knows the destination.
        public var relaysForwarded = 0
        /// Punch requests sent on to a peer (0x0B), and answered for a peer (0x0C sent).
        public var punchesForwarded = 0
        public var punchesAnsweredForPeers = 0
        /// Syncs sent to peers, and heeded from them.
        public var syncsSent = 0
        public var syncsReceived = 0
        /// Beacon-to-beacon messages from an address that is no peer: dropped.
        public var notFromPeer = 0
    }

    private let configuration: Configuration
    private let logger: Logger
    private let state: NIOLockedValueBox<BeaconState>
    private let channel: NIOLockedValueBox<(any Channel)?> = NIOLockedValueBox(nil)
    private let syncs: NIOLockedValueBox<RepeatedTask?> = NIOLockedValueBox(nil)
    private let hidden: NIOLockedValueBox<(@Sendable (UInt32) -> Bool)?> = NIOLockedValueBox(nil)

    /// Nodes whose endpoint must go to nobody (registered relay-only): a punch request naming
    /// one is dropped, since the punch command would tell each side where the other is.
    public func hideEndpoints(of isHidden: @escaping @Sendable (UInt32) -> Bool) {
        hidden.withLockedValue { $0 = isHidden }
    }

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        state = NIOLockedValueBox(BeaconState(configuration: configuration))
    }

    public var counters: Counters { state.withLockedValue { $0.counters } }

    public func start(on group: any EventLoopGroup) async throws -> SocketAddress {
        let state = state
        let hidden = hidden
        let logger = logger
        let bound = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(BeaconHandler(state: state, hidden: hidden, logger: logger))
                }
            }
            .bind(host: configuration.host, port: configuration.port).get()
        await UDPBuffers.ensure(on: bound, logger: logger, metadata: ["PILOT_SOCKET": "beacon"])
        channel.withLockedValue { $0 = bound }
        // Always: peers may be found later; with none, a sync sends nothing.
        let interval = TimeAmount.nanoseconds(Int64(configuration.syncInterval * 1_000_000_000))
        let task = bound.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { [state, configuration] _ in
            Self.sync(state: state, configuration: configuration, to: nil, on: bound)
        }
        syncs.withLockedValue { $0 = task }
        guard let address = bound.localAddress else { throw RegistryServerError("beacon socket has no address") }
        return address
    }

    /// Where the beacon last saw `node` (within its endpoint lifetime), from its discovers.
    public func observedEndpoint(of node: UInt32) -> Endpoint? {
        let seen = state.withLockedValue { $0.endpoint(of: node, now: Registry.uptime())?.endpoint }
        guard let seen, let host = seen.ipAddress, let port = seen.port, let port = UInt16(exactly: port) else { return nil }
        return Endpoint(host: host, port: port)
    }

    /// Sends `[0x0A][kind]` (kind 1: a relayed handshake waits) to `node` if the beacon knows where it is (at most 3 per 5 s per node).
    public func notify(node: UInt32, kind: UInt8 = 0x01) {
        guard let channel = channel.withLockedValue({ $0 }) else { return }
        let target: SocketAddress? = state.withLockedValue { $0.notifyTarget(node, now: Registry.uptime()) }
        guard let target, let bytes = try? BeaconMessage.notify(kind: kind).encoded() else { return }
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: buffer), promise: nil)
    }

    /// The id this beacon's syncs carry: `Configuration.beaconID`, or the one the database
    /// handed it (`adopt(beaconID:)`).
    public var beaconID: UInt32 { state.withLockedValue { $0.beaconID } }

    /// Makes `id` the id in this beacon's syncs from now on (the one it holds in the database).
    func adopt(beaconID id: UInt32) {
        state.withLockedValue { $0.beaconID = id }
    }

    /// The peers now: `Configuration.peers` and those found, each once.
    public var peers: [SocketAddress] { state.withLockedValue { $0.peers } }

    /// Makes `found` the peers found elsewhere (the database), besides `Configuration.peers`:
    /// a peer no longer found stops being one (its nodes are forgotten, its messages no longer
    /// heeded), and a new one is sent a sync at once rather than at the next interval.
    public func findPeers(_ found: [SocketAddress]) {
        let (added, gone) = state.withLockedValue { $0.replaceFoundPeers(with: found) }
        if !gone.isEmpty { logger.notice("peer beacons gone", metadata: ["peers": "\(gone.sorted())"]) }
        guard !added.isEmpty else { return }
        logger.notice("peer beacons found", metadata: ["peers": "\(added.map(BeaconState.key))"])
        guard let channel = channel.withLockedValue({ $0 }) else { return }
        let (state, configuration) = (state, configuration)
        channel.eventLoop.execute { Self.sync(state: state, configuration: configuration, to: added, on: channel) }
    }

    public func shutdown() async throws {
        syncs.withLockedValue { $0?.cancel() }
        if let channel = channel.withLockedValue({ $0 }) { try? await channel.close() }
    }

    /// Tells each peer (or only `only`) which nodes this beacon knows (0x07), in datagrams of at
    /// most 16375 ids.
    private static func sync(
        state: NIOLockedValueBox<BeaconState>, configuration: Configuration, to only: [SocketAddress]?, on channel: any Channel
    ) {
        let (beaconID, peers, nodes): (UInt32, [SocketAddress], [UInt32]) = state.withLockedValue { state in
            let now = Registry.uptime()
            let peers = only ?? state.peers
            guard !peers.isEmpty else { return (state.beaconID, [], []) }
            state.counters.syncsSent += peers.count
            return (state.beaconID, peers, state.nodes.compactMap { now - $0.value.lastSeen <= configuration.endpointLifetime ? $0.key : nil })
        }
        guard !peers.isEmpty else { return }
        let perDatagram = (65_507 - 7) / 4
        var start = 0
        repeat {
            let chunk = Array(nodes[start..<min(nodes.count, start + perDatagram)])
            guard let bytes = try? BeaconMessage.sync(beacon: beaconID, nodes: chunk).encoded() else { return }
            for peer in peers {
                var buffer = channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                channel.write(AddressedEnvelope(remoteAddress: peer, data: buffer), promise: nil)
            }
            start += perDatagram
        } while start < nodes.count
        channel.flush()
    }
}

/// The beacon's table of node endpoints and its limits.
struct BeaconState: Sendable {
    struct Entry: Sendable {
        var endpoint: SocketAddress
        var wantsDestination: Bool
        var lastSeen: Double
        var notifyBudget: TokenBucket
    }

    let configuration: BeaconServer.Configuration
    /// `configuration.peers` and the peers found, each once; `found` are the latter.
    private(set) var peers: [SocketAddress]
    private var found: Set<String> = []
    var beaconID: UInt32
    var nodes: [UInt32: Entry] = [:]
    /// Nodes the peers know: which peer, and when its last sync named the node.
    var remote: [UInt32: (peer: SocketAddress, lastSeen: Double)] = [:]
    var buckets: [String: TokenBucket] = [:]
    var counters = BeaconServer.Counters()

    init(configuration: BeaconServer.Configuration) {
        self.configuration = configuration
        peers = configuration.peers
        beaconID = configuration.beaconID
    }

    /// A peer's identity: its IP and port, as datagrams from it show them.
    static func key(_ address: SocketAddress) -> String { "\(address.ipAddress ?? "?"):\(address.port ?? 0)" }

    /// Replaces the peers found with `found` (configured ones stay) and returns those that are
    /// new and those gone (by `key`). The nodes of a peer gone are forgotten, so nothing is sent
    /// on to it.
    mutating func replaceFoundPeers(with found: [SocketAddress]) -> (added: [SocketAddress], gone: Set<String>) {
        let configured = Set(configuration.peers.map(Self.key))
        var next = configuration.peers
        var nextFound: Set<String> = []
        var added: [SocketAddress] = []
        for address in found {
            let key = Self.key(address)
            guard !configured.contains(key), nextFound.insert(key).inserted else { continue }
            next.append(address)
            if !self.found.contains(key) { added.append(address) }
        }
        let gone = self.found.subtracting(nextFound)
        if !gone.isEmpty { remote = remote.filter { !gone.contains(Self.key($0.value.peer)) } }
        peers = next
        self.found = nextFound
        return (added, gone)
    }

    mutating func record(_ node: UInt32, at endpoint: SocketAddress, extended: Bool, now: Double) {
        guard node != 0 else { return }  // id 0 only asks for its endpoint
        var entry = nodes[node] ?? Entry(
            endpoint: endpoint, wantsDestination: extended, lastSeen: now,
            notifyBudget: TokenBucket(capacity: 3, ratePerSecond: 3.0 / 5.0, now: now))
        entry.endpoint = endpoint
        entry.wantsDestination = extended || (entry.wantsDestination && entry.endpoint == endpoint)
        entry.lastSeen = now
        nodes[node] = entry
        if nodes.count % 4096 == 0 { expire(now: now) }
    }

    func endpoint(of node: UInt32, now: Double) -> Entry? {
        guard let entry = nodes[node], now - entry.lastSeen <= configuration.endpointLifetime else { return nil }
        return entry
    }

    mutating func allow(_ source: SocketAddress, now: Double) -> Bool {
        if isPeer(source) { return true }
        let key = source.ipAddress ?? "?"
        var bucket = buckets[key] ?? TokenBucket(capacity: configuration.relayBurst, ratePerSecond: configuration.relaysPerSecond, now: now)
        let allowed = bucket.take(now: now)
        buckets[key] = bucket
        if !allowed { counters.rateLimited += 1 }
        return allowed
    }

    mutating func notifyTarget(_ node: UInt32, now: Double) -> SocketAddress? {
        guard var entry = endpoint(of: node, now: now), entry.notifyBudget.take(now: now) else { return nil }
        nodes[node] = entry
        counters.notifies += 1
        return entry.endpoint
    }

    /// Whether `address` is one of the peers (by IP and port).
    func isPeer(_ address: SocketAddress) -> Bool {
        peers.contains { $0.ipAddress == address.ipAddress && $0.port == address.port }
    }

    /// The peer that last named `node`, while its sync is fresh.
    func peer(knowing node: UInt32, now: Double) -> SocketAddress? {
        guard let entry = remote[node], now - entry.lastSeen <= configuration.peerNodeLifetime else { return nil }
        return entry.peer
    }

    mutating func learn(_ nodes: [UInt32], from peer: SocketAddress, now: Double) {
        counters.syncsReceived += 1
        for node in nodes where node != 0 { remote[node] = (peer, now) }
        if remote.count > 4096, counters.syncsReceived % 64 == 0 {
            remote = remote.filter { now - $0.value.lastSeen <= configuration.peerNodeLifetime }
        }
    }

    mutating func expire(now: Double) {
        nodes = nodes.filter { now - $0.value.lastSeen <= configuration.endpointLifetime }
        if buckets.count > 65_536 { buckets.removeAll() }
    }
}

/// Reads beacon datagrams and answers them; never blocks, drops what it cannot use.
final class BeaconHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    private let state: NIOLockedValueBox<BeaconState>
    private let hidden: NIOLockedValueBox<(@Sendable (UInt32) -> Bool)?>
    private let logger: Logger

    init(state: NIOLockedValueBox<BeaconState>, hidden: NIOLockedValueBox<(@Sendable (UInt32) -> Bool)?>, logger: Logger) {
        self.state = state
        self.hidden = hidden
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let source = envelope.remoteAddress
        let bytes = Array(envelope.data.readableBytesView)
        let now = Registry.uptime()
        let message: BeaconMessage
        do {
            message = try BeaconMessage(decoding: bytes)
        } catch {
            state.withLockedValue { $0.counters.malformed += 1 }
            return
        }
        switch message {
        case .discover(let node), .discoverExtended(let node):
            let extended = message.kind == .discoverExtended
            state.withLockedValue {
                $0.counters.discovers += 1
                $0.record(node, at: source, extended: extended, now: now)
            }
            if let (ip, port) = Self.endpointBytes(source) {
                send(context, .discoverReply(ip: ip, port: port), to: source)
            }
        case let .punchRequest(requester, target):
            if isHidden(requester) || isHidden(target) {
                state.withLockedValue { $0.counters.punchesRefused += 1 }
                return
            }
            enum Punch { case local(SocketAddress), peer(SocketAddress) }
            let punch: Punch? = state.withLockedValue { state in
                guard state.allow(source, now: now) else { return nil }
                state.record(requester, at: source, extended: state.nodes[requester]?.wantsDestination ?? false, now: now)
                if let other = state.endpoint(of: target, now: now) {
                    state.counters.punches += 1
                    return .local(other.endpoint)
                }
                guard !state.isPeer(source), let peer = state.peer(knowing: target, now: now) else { return nil }
                state.counters.punchesForwarded += 1
                return .peer(peer)
            }
            guard let (requesterIP, requesterPort) = Self.endpointBytes(source) else { return }
            switch punch {
            case .local(let targetEndpoint):
                guard let (targetIP, targetPort) = Self.endpointBytes(targetEndpoint) else { return }
                send(context, .punchCommand(ip: targetIP, port: targetPort), to: source)
                send(context, .punchCommand(ip: requesterIP, port: requesterPort), to: targetEndpoint)
            case .peer(let peer):
                send(context, .punchForward(requester: requester, target: target, ip: requesterIP, port: requesterPort), to: peer)
            case nil:
                return
            }
        case let .punchForward(requester, target, ip, port):
            // A peer's node asks to punch toward one of ours: ours is told where the requester
            // is, and the peer where ours is, for its node.
            guard !isHidden(requester), !isHidden(target) else {
                state.withLockedValue { $0.counters.punchesRefused += 1 }
                return
            }
            let targetEndpoint: SocketAddress? = state.withLockedValue { state in
                guard state.isPeer(source) else {
                    state.counters.notFromPeer += 1
                    return nil
                }
                guard let entry = state.endpoint(of: target, now: now) else { return nil }
                state.counters.punchesAnsweredForPeers += 1
                return entry.endpoint
            }
            guard let targetEndpoint, let (targetIP, targetPort) = Self.endpointBytes(targetEndpoint) else { return }
            send(context, .punchCommand(ip: ip, port: port), to: targetEndpoint)
            send(context, .punchAnswer(requester: requester, ip: targetIP, port: targetPort), to: source)
        case let .punchAnswer(requester, ip, port):
            let requesterEndpoint: SocketAddress? = state.withLockedValue { state in
                guard state.isPeer(source) else {
                    state.counters.notFromPeer += 1
                    return nil
                }
                return state.endpoint(of: requester, now: now)?.endpoint
            }
            guard let requesterEndpoint else { return }
            send(context, .punchCommand(ip: ip, port: port), to: requesterEndpoint)
        case let .relay(sender, destination, frame):
            enum Relay { case local(BeaconState.Entry), peer(SocketAddress) }
            let relay: Relay? = state.withLockedValue { state in
                guard state.allow(source, now: now) else { return nil }
                if let entry = state.endpoint(of: destination, now: now) {
                    state.counters.relayed += 1
                    state.counters.relayedBytes += frame.count
                    return .local(entry)
                }
                // A relay a peer sent on is delivered here or nowhere: never back and forth.
                if !state.isPeer(source), let peer = state.peer(knowing: destination, now: now) {
                    state.counters.relaysForwarded += 1
                    return .peer(peer)
                }
                state.counters.relayDropped += 1
                return nil
            }
            switch relay {
            case .local(let target):
                let delivery: BeaconMessage =
                    target.wantsDestination
                    ? .relayDeliverTo(source: sender, destination: destination, frame: frame)
                    : .relayDeliver(source: sender, frame: frame)
                send(context, delivery, to: target.endpoint)
            case .peer(let peer):
                // As it came: the peer relays it as its own node's.
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: peer, data: envelope.data)), promise: nil)
            case nil:
                return
            }
        case let .sync(_, nodes):
            state.withLockedValue { state in
                guard state.isPeer(source) else {
                    state.counters.notFromPeer += 1
                    return
                }
                state.learn(nodes, from: source, now: now)
            }
        case .discoverReply, .punchCommand, .relayDeliver, .relayDeliverTo, .notify:
            // Beacon-to-node messages arriving at the beacon: someone is confused or probing.
            state.withLockedValue { $0.counters.malformed += 1 }
        }
    }

    /// Whether `node` registered relay-only (its endpoint goes to nobody).
    private func isHidden(_ node: UInt32) -> Bool {
        hidden.withLockedValue { $0 }?(node) ?? false
    }

    private func send(_ context: ChannelHandlerContext, _ message: BeaconMessage, to address: SocketAddress) {
        guard let bytes = try? message.encoded() else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: address, data: buffer)), promise: nil)
    }

    /// The raw IP bytes and port of an IPv4 or IPv6 socket address.
    static func endpointBytes(_ address: SocketAddress) -> ([UInt8], UInt16)? {
        guard let port = address.port, let port16 = UInt16(exactly: port) else { return nil }
        switch address {
        case .v4(let v4):
            let raw = UInt32(bigEndian: v4.address.sin_addr.s_addr)
            return ([UInt8(raw >> 24), UInt8(raw >> 16 & 0xFF), UInt8(raw >> 8 & 0xFF), UInt8(raw & 0xFF)], port16)
        case .v6(let v6):
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            return (bytes, port16)
        default:
            return nil
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A UDP socket reports ICMP errors of earlier sends here; the socket itself is fine.
        logger.debug("beacon socket error", metadata: ["error": "\(error)"])
    }
}
