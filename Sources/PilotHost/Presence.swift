import FoundationEssentials
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PilotNet
import PilotServices
import PilotStore
import PilotWire

/// Each identity's presence on the network: the fabric on the `listen` socket, who is on it,
/// the beacon, and where a peer is.
///
/// An identity joins the fabric when it first uses the network (its key is unsealed and its
/// X25519 key made then, not at start: a cold start with 100,000 identities touches none), or
/// when a peer it has business with calls: until then a private identity rests on the fabric
/// with the node ids of those peers (`restPrivateIdentities`), and a key exchange from one of
/// them joins it and is answered then. A public identity accepts key exchanges from strangers,
/// so it gets a UDP socket of its own (on the listen host, any free port) and is registered
/// with that address. An identity that joins listens on the ports of `services` from then on.
/// What each identity registers follows its socket's mapping as the beacon reports it
/// (`Presence+Mappings.swift`).
actor Presence {
    /// What serves a port every identity listens on once it joins: it is handed each stream a
    /// peer opens there and the name of the identity.
    typealias Service = @Sendable (_ stream: StreamHandle, _ identity: String) -> Void

    let fabric: Fabric
    let pool: IdentityPool
    private let services: [UInt16: Service]
    /// The ports every identity serves itself (echo, handshake, data exchange, event stream).
    var servicePorts: [UInt16] { services.keys.sorted() }
    private let datagrams: DatagramPorts
    let logger: Logger
    private var listenHost = "0.0.0.0"
    private var joined: [String: TunnelIdentity] = [:]
    /// Joins under way, which a second caller waits for.
    private var joining: [String: Task<TunnelIdentity, any Error>] = [:]
    /// Public identities on the network: node → the number of its own socket.
    var ownSockets: [UInt32: Int] = [:]
    /// The beacon, which pokes an endpoint when a relayed handshake waits for one of its nodes.
    private(set) var beacon: SocketAddress?
    /// The beacons configured, in the order they are tried (`Presence+Beacons.swift`).
    var beacons: [SocketAddress] = []
    /// When the beacon in use last said anything: written on the fabric's loop.
    let beaconHeard = NIOLockedValueBox<ContinuousClock.Instant>(.now)
    /// The watch that moves to the next beacon when this one falls silent.
    var beaconWatch: Task<Void, Never>?

    /// Each tunnel socket's own address, registered while the beacon has reported no mapping
    /// for it (the shared socket's listen host and port, a public identity's advertised host
    /// and port), by socket number.
    var localAddresses: [Int: Endpoint] = [:]
    /// Each tunnel socket's public mapping as the beacon last reported it (0x02), by socket
    /// number. Written on the fabric's loop, where a reply to every identity announced arrives:
    /// only a change leaves the loop (`mappingChanged`).
    let mappings = NIOLockedValueBox<[Int: ObservedEndpoint]>([:])
    /// What each socket's identities were last given to register, by socket number (nil: to
    /// be given again, after a registration that failed).
    var registeredAddresses: [Int: String] = [:]
    /// Sockets whose identities may have to register again, and whether that is under way.
    var staleSockets: Set<Int> = []
    var following = false
    /// Whether the first registration has begun: from then on a changed mapping is registered
    /// at once; before, the first registration carries it.
    var registrationBegun = false

    /// Identities of `pool` on `fabric`, serving `services` (port → service) and handing
    /// datagrams to `datagrams`.
    init(fabric: Fabric, pool: IdentityPool, services: [UInt16: Service], datagrams: DatagramPorts, logger: Logger) {
        self.fabric = fabric
        self.pool = pool
        self.services = services
        self.datagrams = datagrams
        self.logger = logger
    }

    /// Listens for the beacon at `beacon`: `poked` runs (on the fabric's loop: it must return
    /// at once) when it says a relayed handshake waits at the registry.
    func useBeacon(_ beacon: SocketAddress, poked: @escaping @Sendable () -> Void) async throws {
        self.beacon = beacon
        beaconHeard.withLockedValue { $0 = .now }
        try await fabric.useBeacon(beacon)
        // The fabric hands on the beacon's own messages only: anyone could send a poke to make
        // the host poll, or a discover reply to make it register elsewhere.
        try await fabric.onBeaconMessage { [weak self, mappings, beaconHeard] message, socket in
            beaconHeard.withLockedValue { $0 = .now }
            switch message {
            case .notify(BeaconMessage.notifyHandshakePending):
                poked()
            case let .discoverReply(ip, port):
                guard let observed = ObservedEndpoint(ip: ip, port: port),
                    mappings.withLockedValue({ $0.updateValue(observed, forKey: socket) }) != observed, let self
                else { return }
                Task { await self.mappingChanged(socket: socket, to: observed) }
            default:
                return
            }
        }
    }

    /// Tells the beacon that `nodes` are behind the shared socket (a discover each, asking for
    /// 0x09 relays that name their destination), and where each public identity on the
    /// network has its own socket (a discover from it): it can then poke them and relay frames
    /// to them. Repeated with the heartbeats, within the beacon's 300 s memory. Each discover is
    /// answered with the socket's mapping (`mappingChanged`); with no identity behind the shared
    /// socket, it discovers as node 0, to learn its mapping all the same.
    func announce(_ nodes: [UInt32]) async {
        guard let beacon else { return }
        if nodes.isEmpty { try? await fabric.sendBeacon([.discover(node: 0)], to: beacon) }
        for start in stride(from: 0, to: nodes.count, by: 1000) {
            let chunk = nodes[start..<min(start + 1000, nodes.count)]
            do { try await fabric.sendBeacon(chunk.map { .discoverExtended(node: $0) }, to: beacon) } catch {
                logger.warning("cannot reach the beacon", metadata: ["beacon": "\(beacon)", "error": "\(error)"])
                return
            }
        }
        for (node, socket) in ownSockets.sorted(by: { $0.key < $1.key }) {
            try? await fabric.sendBeacon([.discover(node: node)], to: beacon, socket: socket)
        }
    }

    /// `name` has business with `peer` (a handshake, a trust) or no longer has: key exchanges
    /// from `peer` apply to `name`, and the trust gate lets `peer` through if it is trusted.
    func relate(_ name: String, peer: UInt32, _ related: Bool) async {
        guard let identity = try? await join(name) else { return }
        try? await fabric.relate(local: identity.node, remote: peer, related)
        let trusted = await pool.trust(of: name, peer: peer)?.state == .trusted
        try? await fabric.setTrusted(local: identity.node, remote: peer, trusted)
    }

    /// Puts every private identity at rest on the fabric with the peers it has business with
    /// (its trust table): one of them calling joins it at once, so it is reachable from the
    /// start without a join per identity (public identities join after registration).
    func restPrivateIdentities() async {
        do {
            try await fabric.onWake { [weak self] node in
                // On the loop: the join (the pool's actor, a key to unseal) runs as a task.
                guard let self else { return }
                Task { await self.wake(node) }
            }
            try await fabric.rest(await pool.privateRelations)
        } catch {
            logger.error("identities not put at rest: they join when first used", metadata: ["error": "\(error)"])
        }
    }

    /// A peer wants resting identity `node`: it joins (and `joinNow` answers the peer).
    private func wake(_ node: UInt32) async {
        guard let record = await pool.identity(withNode: node) else {
            // Deleted while resting.
            try? await fabric.rest([(node, [])])
            return
        }
        do { try await join(record.name) } catch {
            logger.error("cannot put identity on the network for a peer", metadata: ["PILOT_IDENTITY": "\(record.name)", "error": "\(error)"])
        }
    }

    /// The longest datagram a public identity's own socket takes, and how many it reads at
    /// once (see `Fabric.bind`): room for 1.18's largest segment frame (4,096 bytes of payload,
    /// 4,175 relayed) and pilot datagrams up to 8 KiB, in 32 KiB per socket, so that a host
    /// with thousands of public identities does not hold a megabyte for each. Longer datagrams
    /// are dropped there.
    static let ownSocketLargestDatagram = 8 << 10
    static let ownSocketReadBatch = 4
    /// Its kernel buffers, each way: a window in flight with room to spare, not the shared
    /// socket's 4 MiB (thousands of sockets, each allowed to queue that much, add up).
    static let ownSocketBufferBytes = 1 << 20

    /// The ports of a public identity open to nodes it does not trust (besides 444): echo.
    static let publicServices: Set<UInt16> = [Port.echo]

    /// Binds the shared tunnel socket.
    func start(listen: String) async throws {
        let (host, port) = try Host.split(listen, key: "listen")
        listenHost = host
        let bound = try await fabric.bind(host: host, port: port)
        // `listen` may leave the port to the kernel (0): registered is the port it gave.
        if let boundPort = bound.address.port { await useLocalAddress(Endpoint(host: host, port: UInt16(boundPort)), ofSharedSocket: bound.socket) }
        logger.info("tunnel socket", metadata: ["address": "\(bound.address)"])
    }

    /// Serves the tunnel sockets systemd passed; the first is the shared one, and public
    /// identities bind their own sockets on its address.
    func start(adopting descriptors: [Int32]) async throws {
        for descriptor in descriptors {
            let adopted = try await fabric.adopt(descriptor: descriptor)
            if adopted.socket == 0, let host = adopted.address.ipAddress, let port = adopted.address.port {
                listenHost = host
                await useLocalAddress(Endpoint(host: host, port: UInt16(port)), ofSharedSocket: adopted.socket)
            }
            logger.info("tunnel socket from systemd", metadata: ["address": "\(adopted.address)", "fd": "\(descriptor)"])
        }
    }

    /// Identities on the network, tunnels and streams: for the status line.
    func load() async -> (joined: Int, tunnels: Int, streams: Int) {
        let (tunnels, streams) = (try? await fabric.load()) ?? (0, 0)
        return (joined.count, tunnels, streams)
    }

    /// `name` on the fabric (joined now if it was not). One join per identity at a time: the
    /// actor runs other calls at every await, and a second join would give the identity a
    /// second tunnel key (and a public one a second socket) while peers hold sessions with the
    /// first. A public identity's own socket is registered at once, unless `registering` is false
    /// (at start, before READY: the registration that follows carries it).
    @discardableResult
    func join(_ name: String, registering: Bool = true) async throws -> TunnelIdentity {
        if let identity = joined[name] { return identity }
        if let inFlight = joining[name] { return try await inFlight.value }
        let attempt = Task { try await joinNow(name, registering: registering) }
        joining[name] = attempt
        defer { joining[name] = nil }
        return try await attempt.value
    }

    private func joinNow(_ name: String, registering: Bool) async throws -> TunnelIdentity {
        guard let record = await pool.identity(named: name) else { throw PoolError.notFound(name) }
        let identity = try TunnelIdentity(address: Address(network: record.network, node: record.nodeID), signingKey: try await pool.signingKey(of: name))
        var ownSocket: Int?
        if record.isPublic {
            // The port it had before, if it is still free: peers' tunnels then survive a restart.
            func bind(_ port: Int) async throws -> (socket: Int, address: SocketAddress) {
                try await fabric.bind(
                    host: listenHost, port: port, largestDatagram: Self.ownSocketLargestDatagram, readBatch: Self.ownSocketReadBatch,
                    bufferBytes: Self.ownSocketBufferBytes)
            }
            let earlier = record.ownPort == 0 ? nil : try? await bind(Int(record.ownPort))
            let bound: (socket: Int, address: SocketAddress)
            if let earlier { bound = earlier } else { bound = try await bind(0) }
            ownSocket = bound.socket
            let port = UInt16(bound.address.port ?? 0)
            let local = Endpoint(host: advertisedHost(bound: listenHost), port: port)
            localAddresses[bound.socket] = local
            // Registered with its mapping, if the beacon answers (at start, the registration
            // that follows waits for the mappings of every socket at once). A beacon that has
            // answered no socket yet is not waited for: a late answer registers it again.
            if registering {
                let beaconAnswers = !mappings.withLockedValue { $0.isEmpty }
                await discoverMappings([bound.socket: identity.node], within: beaconAnswers ? Self.mappingWait : .zero)
            }
            let address = address(of: bound.socket, local: local)
            if registering {
                try await pool.useOwnSocket(name, address: address, port: port)
            } else {
                try await pool.noteOwnSocket(name, address: address, port: port)
            }
            registeredAddresses[bound.socket] = address
        }
        try await fabric.add(identity, ownSocket: ownSocket) { [datagrams] packet in
            guard packet.proto == .datagram else { return }
            datagrams.deliver(packet, to: name)
        }
        do {
            try await serve(identity, as: name, record: record)
        } catch {
            // Not half on the network: the next join starts clean.
            try? await fabric.remove(identity.node)
            throw error
        }
        joined[name] = identity
        if let ownSocket {
            ownSockets[identity.node] = ownSocket
            if let beacon { try? await fabric.sendBeacon([.discover(node: identity.node)], to: beacon, socket: ownSocket) }
            // A mapping that came in while it joined, after its registration was sent.
            await follow([ownSocket])
        }
        // Related now: it rests no more, and a peer that woke it is answered.
        try? await fabric.woke(identity.node)
        return identity
    }

    /// The services and trust of `name`, just added to the fabric as `identity`.
    private func serve(_ identity: TunnelIdentity, as name: String, record: IdentityRecord) async throws {
        for (port, service) in services.sorted(by: { $0.key < $1.key }) {
            try await fabric.listen(node: identity.node, port: port) { stream in service(stream, name) }
        }
        // Key exchanges from peers it trusts or is in a handshake with apply to it; trusted peers
        // pass the gate, and strangers reach a public identity's echo port.
        for entry in await pool.trust(of: name) where entry.state != .rejected {
            try await fabric.relate(local: identity.node, remote: entry.peerNode)
            if entry.state == .trusted { try await fabric.setTrusted(local: identity.node, remote: entry.peerNode, true) }
        }
        try await fabric.setPublicPorts(local: identity.node, record.isPublic ? Self.publicServices : [])
    }

    /// Takes `name` off the fabric (deleted, or public no more); a join under way finishes
    /// first, so it cannot put the identity back afterwards.
    func leave(_ name: String) async {
        if let inFlight = joining[name] { _ = try? await inFlight.value }
        guard let identity = joined.removeValue(forKey: name) else { return }
        let socket = ownSockets.removeValue(forKey: identity.node)
        try? await fabric.remove(identity.node)
        if let socket {
            forget(socket: socket)
            await fabric.closeSocket(socket)
        }
        // Made private: it rests, so the peers it trusts still reach it before it is used.
        if let record = await pool.identity(named: name), !record.isPublic {
            try? await fabric.rest([(identity.node, await pool.relatedPeers(of: name))])
        }
    }

    /// Joins every public identity, so strangers can reach them; the others rest until first used
    /// or called by a peer (`restPrivateIdentities`). With `registering` false (at start) their
    /// own sockets are bound and served at once and registered by the registration that follows.
    func joinPublicIdentities(registering: Bool = true) async {
        for record in await pool.all where record.isPublic {
            do { try await join(record.name, registering: registering) } catch {
                logger.error("cannot put identity on the network", metadata: ["PILOT_IDENTITY": "\(record.name)", "error": "\(error)"])
            }
        }
    }

    /// Rotates `name`'s key (`IdentityPool.rotateKey`); on the fabric it keeps its X25519 key,
    /// sessions, streams and ports, and its key exchanges are signed by the new key from now
    /// on. Returns the registry's `rotate_key_ok`.
    func rotateKey(_ name: String) async throws -> RegistryMessage {
        let (reply, key) = try await pool.rotateKey(name: name)
        if let inFlight = joining[name] { _ = try? await inFlight.value }
        if let identity = joined[name] {
            let resigned = try identity.resigned(by: key)
            try await fabric.resign(resigned)
            joined[name] = resigned
        }
        logger.info("identity key rotated", metadata: ["PILOT_IDENTITY": "\(name)", "public_key": "\(key.publicKey.base64)"])
        return reply
    }

    /// prefer-direct from `name` to `node`: where the registry says `node` is, and a relayed
    /// session with it tried directly at once (`Fabric.preferDirect`). Nothing is pinned to
    /// the beacon on pilot-host, and no key exchange is pushed: the report says so.
    func preferDirect(from name: String, to node: UInt32) async throws -> DirectPreferenceReport {
        var resolveError = ""
        var endpoint: SocketAddress?
        do {
            if let text = try await pool.resolve(node: node, as: name) {
                let parsed = try Endpoint(parsing: text)
                endpoint = try SocketAddress(ipAddress: parsed.host, port: Int(parsed.port))
            }
        } catch {
            resolveError = "\(error)"
        }
        guard let identity = joined[name] else {
            return DirectPreferenceReport(nodeID: node, hadTunnel: false, wasRelayActive: false, resolveError: resolveError, directAttempt: false)
        }
        let found = try await fabric.preferDirect(local: identity.node, remote: node, endpoint: endpoint)
        return DirectPreferenceReport(
            nodeID: node, hadTunnel: found.hadTunnel, wasRelayActive: found.wasRelayed, resolveError: resolveError, directAttempt: found.upgrading)
    }

    /// `name` as it is on the fabric, if it joined (nothing is joined by asking).
    func joinedIdentity(_ name: String) -> TunnelIdentity? { joined[name] }

    /// A stream from `name` to `port` of `target` (joining the network first if need be), or
    /// an error within 15 s.
    func dial(from name: String, to target: Address, port: UInt16) async throws -> StreamHandle {
        let identity = try await join(name)
        let endpoint = try await endpoint(of: target, for: name)
        return try await withTimeout(.seconds(15)) { [fabric] in
            try await fabric.dial(from: identity.node, to: target, port: port, endpoint: endpoint)
        }
    }

    /// Where to reach `target`: nowhere for an identity of this host (delivered in-process; it
    /// joins the fabric), else the endpoint the registry gives (a private target answers only
    /// to nodes it trusts).
    func endpoint(of target: Address, for name: String) async throws -> SocketAddress? {
        if let local = await pool.identity(withNode: target.node) {
            try await join(local.name)
            return nil
        }
        // A session with it: the tunnel knows where it is (no registry round trip per dial).
        if let identity = joined[name], try await fabric.hasSession(local: identity.node, remote: target.node) { return nil }
        let resolved: String?
        do { resolved = try await pool.resolve(node: target.node, as: name) } catch PoolError.registry(let reason) {
            throw ControlFailure(.notFound, "cannot reach \(target): \(reason)")
        }
        guard let text = resolved else {
            // Relay-only: the tunnel goes through the beacon (the fabric's choice with no endpoint).
            guard beacon != nil else { throw ControlFailure(.connectionFailed, "cannot reach \(target): it is relay-only and no beacon is configured") }
            return nil
        }
        guard let endpoint = try? Endpoint(parsing: text) else {
            throw ControlFailure(.connectionFailed, "registry gave an endpoint that is not host:port: \(text.prefix(64))")
        }
        return try SocketAddress(ipAddress: endpoint.host, port: Int(endpoint.port))
    }
}
