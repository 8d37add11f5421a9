import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PilotControl
import PilotCrypto
import PilotNet
import PilotStore
import PilotWire

/// pilot-host's side of PilotNet: the fabric on the `listen` socket, and each identity on it.
///
/// An identity joins the fabric when it first uses the network (its key is unsealed and its
/// X25519 key made then, not at start: a cold start with 100,000 identities touches none), or
/// when a peer it has business with calls: until then a private identity rests on the fabric
/// with the node ids of those peers (`restPrivateIdentities`), and a key exchange from one of
/// them joins it and is answered then. A public identity accepts key exchanges from strangers,
/// so it gets a UDP socket of its own (on the listen host, any free port) and is registered
/// with that address.
actor DataPlane {
    let fabric: Fabric
    let trust: TrustService
    let pool: IdentityPool
    let logger: Logger
    private var listenHost = "0.0.0.0"
    private var joined: [String: TunnelIdentity] = [:]
    /// Joins under way, which a second caller waits for.
    private var joining: [String: Task<TunnelIdentity, any Error>] = [:]
    /// Public identities on the network: node → the number of its own socket.
    private var ownSockets: [UInt32: Int] = [:]
    /// `listen` commands waiting for datagrams, by identity and port.
    private var datagramListeners: [String: [UInt16: AsyncStream<Packet>.Continuation]] = [:]

    /// The beacon, which pokes an endpoint when a relayed handshake waits for one of its nodes.
    private var beacon: SocketAddress?
    /// The token a broadcast must carry (`admin-token-file`), as its digest; nil: broadcasts are
    /// refused.
    let adminToken: SecretDigest?

    init(fabric: Fabric, pool: IdentityPool, adminToken: String? = nil, logger: Logger) {
        self.fabric = fabric
        self.pool = pool
        self.adminToken = adminToken.map(SecretDigest.init(of:))
        self.logger = logger
        trust = TrustService(pool: pool, logger: logger)
    }

    /// Listens for the beacon at `address` (host:port): `poked` runs (on the fabric's loop: it
    /// must return at once) when it says a relayed handshake waits at the registry.
    func useBeacon(_ address: String, poked: @escaping @Sendable () -> Void) async throws {
        let (host, port) = try Host.split(address, key: "beacon")
        let beacon = try SocketAddress.makeAddressResolvingHost(host, port: port)
        self.beacon = beacon
        try await fabric.useBeacon(beacon)
        // The fabric hands on the beacon's own messages only: anyone could send a poke to make
        // the host poll.
        try await fabric.onBeaconMessage { message, _ in
            guard case .notify(BeaconMessage.notifyHandshakePending) = message else { return }
            poked()
        }
    }

    /// Tells the beacon that `nodes` are behind the shared socket (a discover each, asking for
    /// 0x09 relays that name their destination), and where each public identity on the
    /// network has its own socket (a discover from it): it can then poke them and relay frames
    /// to them. Repeated with the heartbeats, within the beacon's 300 s memory.
    func announce(_ nodes: [UInt32]) async {
        guard let beacon else { return }
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

    /// Connects the trust service to the fabric (once, before use).
    func wireTrust() async {
        await trust.wire(
            send: { [weak self] name, peer, message in
                guard let self else { return }
                try await self.sendHandshake(message, from: name, to: peer)
            },
            relate: { [weak self] name, peer, related in
                guard let self, let identity = try? await self.join(name) else { return }
                try? await self.fabric.relate(local: identity.node, remote: peer, related)
                let trusted = await self.pool.trust(of: name, peer: peer)?.state == .trusted
                try? await self.fabric.setTrusted(local: identity.node, remote: peer, trusted)
            })
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

    /// A handshake message to `peer`'s port 444, alone on its stream (1.18 reads one segment).
    private func sendHandshake(_ message: HandshakeMessage, from name: String, to peer: UInt32) async throws {
        let bytes = message.encoded()
        guard bytes.count <= StreamConnection.segmentSize else {
            throw ControlFailure(.invalidArgument, "the handshake message is \(bytes.count) bytes once encoded; 1.18 reads one segment (\(StreamConnection.segmentSize)): shorten the reason")
        }
        let identity = try await join(name)
        let target = Address(node: peer)
        let endpoint = try await endpoint(of: target, for: name)
        @Sendable func send() async throws -> StreamHandle {
            let stream = try await withTimeout(.seconds(15)) { [fabric] in
                try await fabric.dial(from: identity.node, to: target, port: HandshakeMessage.port, endpoint: endpoint)
            }
            try await stream.write(bytes)
            return stream
        }
        let first = try await send()
        // Delivery is confirmed in the background (the caller goes on, as with 1.18): a message
        // not acknowledged within a few seconds (lost while the tunnel re-keys, because the peer
        // restarted or we did) goes again on a new stream, where a late retransmission would
        // miss 1.18's 10 s wait for it.
        let logger = logger
        Task {
            var stream = first
            for attempt in 1...Self.handshakeAttempts {
                do {
                    let current = stream
                    try await withTimeout(Self.handshakeAcknowledgement) { try await current.flush() }
                    try? await stream.close()
                    return
                } catch {
                    await stream.abort()
                    let metadata: Logger.Metadata = [
                        "PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "attempt": "\(attempt)", "error": "\(error)",
                    ]
                    guard attempt < Self.handshakeAttempts else {
                        return logger.warning("handshake message never acknowledged; given up", metadata: metadata)
                    }
                    logger.info("handshake message not acknowledged; sending it again on a new stream", metadata: metadata)
                    do { stream = try await send() } catch {
                        return logger.warning("handshake message not sent again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                    }
                }
            }
        }
    }

    static let handshakeAttempts = 3
    static let handshakeAcknowledgement: Duration = .seconds(4)

    /// Reads one handshake message from a stream to port 444 of `name`: until it parses, the
    /// peer finishes, 4096 bytes or 10 s.
    private nonisolated func serveHandshake(_ stream: StreamHandle, for name: String) {
        let trust = trust
        Task {
            let bytes = await stream.readMessage(limit: HandshakeMessage.maxSize, timeout: .seconds(10)) {
                (try? HandshakeMessage(decoding: $0)) != nil
            }
            try? await stream.close()
            await trust.received(bytes, for: name, from: stream.key.remote.node)
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
        if let boundPort = bound.address.port { await pool.useSharedAddress("\(host):\(boundPort)") }
        logger.info("tunnel socket", metadata: ["address": "\(bound.address)"])
    }

    /// Serves the tunnel sockets systemd passed; the first is the shared one, and public
    /// identities bind their own sockets on its address.
    func start(adopting descriptors: [Int32]) async throws {
        for descriptor in descriptors {
            let adopted = try await fabric.adopt(descriptor: descriptor)
            if adopted.socket == 0, let host = adopted.address.ipAddress, let port = adopted.address.port {
                listenHost = host
                await pool.useSharedAddress(host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)")
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
            let port = bound.address.port ?? 0
            let address = "\(advertisedHost(bound: listenHost)):\(port)"
            if registering {
                try await pool.useOwnSocket(name, address: address, port: UInt16(port))
            } else {
                try await pool.noteOwnSocket(name, address: address, port: UInt16(port))
            }
        }
        try await fabric.add(identity, ownSocket: ownSocket) { [weak self] packet in
            guard packet.proto == .datagram, let self else { return }
            Task { await self.datagramArrived(packet, for: name) }
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
        }
        // Related now: it rests no more, and a peer that woke it is answered.
        try? await fabric.woke(identity.node)
        return identity
    }

    /// The services and trust of `name`, just added to the fabric as `identity`.
    private func serve(_ identity: TunnelIdentity, as name: String, record: IdentityRecord) async throws {
        try await fabric.listen(node: identity.node, port: HandshakeMessage.port) { [weak self] stream in
            self?.serveHandshake(stream, for: name)
        }
        try await fabric.listen(node: identity.node, port: DataExchangeFrame.port) { [weak self] stream in
            self?.serveDataExchange(stream, for: name)
        }
        try await fabric.listen(node: identity.node, port: EventStreamFrame.port) { [weak self] stream in
            self?.serveEventStream(stream, for: name)
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
        ownSockets[identity.node] = nil
        try? await fabric.remove(identity.node)
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

    /// The data-exchange service of `name` (port 1001): text, JSON and binary frames go to its
    /// inbox, FILE frames to its received files; each is answered with `ACK <TYPE> <n> bytes` (or
    /// `ERR ...`), as 1.18's; other kinds get an ERR. The stream stays open.
    private nonisolated func serveDataExchange(_ stream: StreamHandle, for name: String) {
        let pool = pool
        let logger = logger
        Task {
            var decoder = DataExchangeFrame.Decoder()
            let sender = stream.key.remote.description
            for await event in stream.events {
                guard case .data(let bytes) = event else { break }
                decoder.append(bytes)
                do {
                    while let frame = try decoder.next() {
                        let reply: String
                        do {
                            let (inner, messageID, replyTo) = try frame.untagged()
                            let now = Int64(Date().timeIntervalSince1970 * 1000)
                            if ![.text, .json, .binary, .file].contains(inner.kind) {
                                // 1.18's streamed files (7) and the rest: refused, so its sender
                                // falls back to a kind this side knows (FILE), as with old daemons.
                                reply = "ERR \(inner.kind) unsupported frame type"
                            } else if inner.kind == .file {
                                // Files are kept apart from messages; the ACK counts the file's bytes.
                                let (fileName, contents) = try inner.fileParts()
                                let safe = DataExchangeFrame.safeFileName(fileName) ?? "file"
                                try await pool.addFile(
                                    ReceivedFile(sender: sender, name: safe, size: contents.count, receivedAt: now), contents: contents, for: name)
                                reply = "ACK FILE \(contents.count) bytes"
                            } else {
                                try await pool.addMessage(
                                    InboxMessage(
                                        sender: sender, type: inner.kind.description, data: inner.payload, messageID: messageID, replyTo: replyTo,
                                        receivedAt: now),
                                    for: name)
                                reply = "ACK \(inner.kind) \(inner.payload.count) bytes"
                            }
                        } catch {
                            reply = "ERR \(frame.kind) save failed: \(error)"
                        }
                        try await stream.write(DataExchangeFrame(kind: .text, payload: Array(reply.utf8)).encoded())
                    }
                } catch {
                    logger.info("data exchange stream closed", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(sender)", "error": "\(error)"])
                    break
                }
            }
            try? await stream.close()
        }
    }

    // MARK: Event stream (1002)

    /// A subscriber of an identity's broker: its stream and topic.
    private struct Subscriber {
        let stream: StreamHandle
        let topic: String
    }

    /// Each identity's broker: its subscribers, by stream.
    private var subscribers: [String: [ObjectIdentifier: Subscriber]] = [:]

    /// The event-stream broker of `name` (port 1002, as 1.18's): the first event on a stream
    /// subscribes it to its topic (`*`: every topic); each later one is published to the
    /// subscribers of its topic and of `*`, never back to its sender (an event published to `*`
    /// reaches only `*` subscribers). The broker sends nothing else.
    private nonisolated func serveEventStream(_ stream: StreamHandle, for name: String) {
        Task { [weak self] in
            var decoder = EventStreamFrame.Decoder()
            var subscribed = false
            reading: for await event in stream.events {
                guard case .data(let bytes) = event else { break }
                decoder.append(bytes)
                do {
                    while let frame = try decoder.next() {
                        guard let self else { break reading }
                        if !subscribed {
                            subscribed = true
                            await self.subscribe(stream, to: frame.topic, on: name)
                        } else {
                            await self.publish(frame, from: stream, on: name)
                        }
                    }
                } catch {
                    self?.logger.info("event stream closed", metadata: ["identity": "\(name)", "peer": "\(stream.key.remote)", "error": "\(error)"])
                    break
                }
            }
            await self?.unsubscribe(stream, on: name)
            try? await stream.close()
        }
    }

    private func subscribe(_ stream: StreamHandle, to topic: String, on name: String) {
        subscribers[name, default: [:]][ObjectIdentifier(stream)] = Subscriber(stream: stream, topic: topic)
        logger.debug("subscribed", metadata: ["identity": "\(name)", "peer": "\(stream.key.remote)", "topic": "\(topic.prefix(64))"])
    }

    private func unsubscribe(_ stream: StreamHandle, on name: String) {
        subscribers[name]?[ObjectIdentifier(stream)] = nil
        if subscribers[name]?.isEmpty == true { subscribers[name] = nil }
    }

    /// Forwards `event` to `name`'s subscribers of its topic and of `*`, in the order published
    /// by this sender; a subscriber whose stream fails is dropped.
    private func publish(_ event: EventStreamFrame, from sender: StreamHandle, on name: String) async {
        let targets = (subscribers[name] ?? [:]).values.filter { subscriber in
            subscriber.stream !== sender
                && (subscriber.topic == EventStreamFrame.everything || (event.topic != EventStreamFrame.everything && subscriber.topic == event.topic))
        }
        guard !targets.isEmpty, let bytes = try? event.encoded() else { return }
        for target in targets {
            do { try await target.stream.write(bytes) } catch { unsubscribe(target.stream, on: name) }
        }
    }

    /// `subscribe TARGET TOPIC`: subscribes to `target`'s broker and collects events until
    /// `count` arrived or `timeout` passes.
    func subscribe(from name: String, to target: Address, topic: String, count: Int, timeout: Duration) async throws -> EventsReceived {
        let stream = try await dial(from: name, to: target, port: EventStreamFrame.port)
        try await stream.write(try EventStreamFrame(topic: topic).encoded())
        let events = await collect(within: timeout) { (add: @Sendable (EventsReceived.Event) -> Int) in
            var decoder = EventStreamFrame.Decoder()
            for await event in stream.events {
                guard case .data(let bytes) = event else { break }
                decoder.append(bytes)
                while let frame = try? decoder.next() {
                    let received = add(EventsReceived.Event(
                        topic: frame.topic, data: String(decoding: frame.payload, as: UTF8.self), bytes: frame.payload.count))
                    if received >= count { return }
                }
            }
        }
        try? await stream.close()
        return EventsReceived(target: target.description, topic: topic, events: events, timeout: events.count < count)
    }

    /// `publish TARGET TOPIC --data`: subscribes to the topic (a stream's first event always
    /// does), publishes one event, and closes once it is delivered to the broker.
    func publish(from name: String, to target: Address, topic: String, data: [UInt8]) async throws -> EventPublished {
        let stream = try await dial(from: name, to: target, port: EventStreamFrame.port)
        try await stream.write(try EventStreamFrame(topic: topic).encoded() + EventStreamFrame(topic: topic, payload: data).encoded())
        try await stream.close()
        return EventPublished(target: target.description, topic: topic, bytes: data.count)
    }

    /// `send-message`: one tagged frame to `target`'s port 1001, and its ACK.
    /// The reply's `target` is the address; the command puts back the target as it was named.
    func sendMessage(from name: String, to target: Address, kind: DataExchangeFrame.Kind, data: [UInt8], timeout: Duration) async throws -> MessageSent {
        let messageID = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let ack = try await exchange(from: name, to: target, DataExchangeFrame.tagged(DataExchangeFrame(kind: kind, payload: data), messageID: messageID), timeout: timeout)
        return MessageSent(
            target: target.description, to: target.description, type: kind.description.lowercased(), bytes: data.count, ack: ack,
            messageID: messageID)
    }

    /// `send-file`: one FILE frame to `target`'s port 1001, and its ACK.
    /// The reply's `target` is the address; the command puts back the target as it was named.
    func sendFile(from name: String, to target: Address, fileName: String, contents: [UInt8], timeout: Duration) async throws -> FileSent {
        let ack = try await exchange(from: name, to: target, DataExchangeFrame.file(name: fileName, contents: contents), timeout: timeout)
        return FileSent(target: target.description, to: target.description, name: fileName, bytes: contents.count, ack: ack)
    }

    /// One data-exchange frame to `target` and the text of its answer, which must be an ACK.
    private func exchange(from name: String, to target: Address, _ frame: DataExchangeFrame, timeout: Duration) async throws -> String {
        let identity = try await join(name)
        let endpoint = try await endpoint(of: target, for: name)
        let ack = try await withTimeout(timeout) { [fabric] () async throws -> String in
            let stream = try await fabric.dial(from: identity.node, to: target, port: DataExchangeFrame.port, endpoint: endpoint)
            try await stream.write(frame.encoded())
            var decoder = DataExchangeFrame.Decoder()
            for await event in stream.events {
                guard case .data(let bytes) = event else { break }
                decoder.append(bytes)
                if let reply = try decoder.next() {
                    try? await stream.close()
                    return String(decoding: reply.payload, as: UTF8.self)
                }
            }
            throw ControlFailure(.connectionFailed, "the peer closed the stream without an answer")
        }
        guard ack.hasPrefix("ACK") else { throw ControlFailure(.connectionFailed, "the peer refused it: \(ack.prefix(200))") }
        return ack
    }

    /// `send TARGET PORT --data`: a stream to `port`, the data, and one read of the answer (none
    /// if the peer sends nothing within `wait`).
    func send(from name: String, to target: Address, port: UInt16, data: [UInt8], wait: Duration) async throws -> StreamSent {
        let stream = try await dial(from: name, to: target, port: port)
        try await stream.write(data)
        let answer = try? await withTimeout(wait) { () async -> [UInt8]? in
            for await event in stream.events {
                if case .data(let bytes) = event { return bytes }
                break
            }
            return nil
        }
        try? await stream.close()
        return StreamSent(
            target: target.description, to: target.description, port: port, bytes: data.count,
            reply: (answer ?? nil).map { String(decoding: $0, as: UTF8.self) })
    }

    /// `recv PORT`: accepts up to `count` streams on `port` for `timeout` and reads once from
    /// each (what 1.18's recv does). Ports the host serves itself are refused.
    func receive(on name: String, port: UInt16, count: Int, timeout: Duration) async throws -> PortArrivals {
        let identity = try await join(name)
        guard try await !fabric.isListening(node: identity.node, port: port) else {
            throw ControlFailure(.alreadyExists, "port \(port) of \(name) is in use")
        }
        let (arrivals, continuation) = AsyncStream.makeStream(of: StreamHandle.self)
        try await fabric.listen(node: identity.node, port: port) { continuation.yield($0) }
        let messages = await collect(within: timeout) { (add: @Sendable (PortArrivals.Arrival) -> Int) in
            for await stream in arrivals {
                var data: [UInt8] = []
                for await event in stream.events {
                    if case .data(let bytes) = event { data = bytes }
                    break
                }
                try? await stream.close()
                let received = add(PortArrivals.Arrival(
                    from: stream.key.remote.description, port: stream.key.remotePort, bytes: data.count,
                    data: String(decoding: data, as: UTF8.self)))
                if received >= count { break }
            }
        }
        continuation.finish()
        try await fabric.unlisten(node: identity.node, port: port)
        return PortArrivals(kind: .streams, port: port, arrivals: messages, timeout: messages.count < count)
    }

    /// A datagram for `name`: to the `listen` waiting on its port, else dropped (as a closed UDP
    /// port drops it).
    private func datagramArrived(_ packet: Packet, for name: String) {
        datagramListeners[name]?[packet.destinationPort]?.yield(packet)
    }

    /// `listen PORT`: the datagrams that arrive on `port` of `name`, up to `count`, for `timeout`.
    func listenDatagrams(on name: String, port: UInt16, count: Int, timeout: Duration) async throws -> PortArrivals {
        _ = try await join(name)
        guard datagramListeners[name]?[port] == nil else { throw ControlFailure(.alreadyExists, "port \(port) of \(name) is in use") }
        let (packets, continuation) = AsyncStream.makeStream(of: Packet.self, bufferingPolicy: .bufferingNewest(1000))
        datagramListeners[name, default: [:]][port] = continuation
        defer {
            continuation.finish()
            datagramListeners[name]?[port] = nil
        }
        let received = await collect(within: timeout) { (add: @Sendable (PortArrivals.Arrival) -> Int) in
            for await packet in packets {
                let received = add(PortArrivals.Arrival(
                    from: packet.source.description, port: packet.sourcePort, bytes: packet.payload.count,
                    data: String(decoding: packet.payload, as: UTF8.self)))
                if received >= count { break }
            }
        }
        return PortArrivals(kind: .datagrams, port: port, arrivals: received, timeout: received.count < count)
    }

    /// `send-datagram TARGET PORT --data`: one datagram, no answer expected.
    func sendDatagram(from name: String, to target: Address, port: UInt16, data: [UInt8]) async throws -> DatagramSent {
        guard data.count <= 65_000 else { throw ControlFailure(.invalidArgument, "send-datagram: at most 65000 bytes") }
        let identity = try await join(name)
        let endpoint = try await endpoint(of: target, for: name)
        let packet = Packet(
            proto: .datagram, source: identity.address, destination: target, sourcePort: UInt16.random(in: 49152...65535),
            destinationPort: port, payload: data)
        try await fabric.send(packet, to: target.node, endpoint: endpoint)
        return DatagramSent(target: target.description, to: target.description, port: port, bytes: data.count)
    }

    /// `connections`: `name`'s streams (none if it never joined the network).
    func connections(of name: String) async throws -> ConnectionList {
        guard let identity = joined[name] else { return ConnectionList(connections: []) }
        return ConnectionList(connections: try await fabric.connections(of: identity.node).map { connection in
            ConnectionList.Connection(
                localPort: connection.localPort, remoteAddress: connection.remote.description, remotePort: connection.remotePort,
                state: connection.state, unacknowledgedBytes: connection.unacknowledgedBytes)
        })
    }

    /// `peers`: the nodes `name` has a tunnel with.
    func peers(of name: String) async throws -> PeerList {
        guard let identity = joined[name] else { return PeerList(peers: []) }
        return PeerList(peers: try await fabric.peers(of: identity.node).map { peer in
            PeerList.Peer(
                nodeID: peer.node, address: Address(node: peer.node).description, endpoint: peer.endpoint, trusted: peer.trusted,
                relayed: peer.relayed, lastHeardSeconds: (peer.secondsSinceHeard * 10).rounded() / 10)
        })
    }

    /// `bench TARGET [MB]`, as 1.18's: MB mebibytes to the target's echo port in 4096-byte
    /// writes, timed until every byte has come back.
    func bench(from name: String, to target: Address, megabytes: Int, timeout: Duration) async throws -> BenchReport {
        let identity = try await join(name)
        let endpoint = try await endpoint(of: target, for: name)
        let total = megabytes << 20
        let seconds = try await withTimeout(timeout) { [fabric] () async throws -> Double in
            let stream = try await fabric.dial(from: identity.node, to: target, port: Port.echo, endpoint: endpoint)
            let started = ContinuousClock.now
            // The echo is compared with what was sent, byte for byte, as it arrives.
            let reader = Task { () -> (received: Int, mismatch: Int?) in
                var received = 0
                for await event in stream.events {
                    guard case .data(let bytes) = event else { break }
                    if !BenchPattern.matches(bytes, at: received) { return (received, received) }
                    received += bytes.count
                    if received >= total { break }
                }
                return (received, nil)
            }
            var offset = 0
            while offset < total {
                let count = min(BenchPattern.chunk, total - offset)
                try await stream.write(BenchPattern.bytes(at: offset, count: count))
                offset += count
            }
            let (received, mismatch) = await reader.value
            try? await stream.close()
            if let mismatch { throw StreamError("the echo differs from what was sent within bytes \(mismatch)..<\(mismatch + BenchPattern.chunk * 4)") }
            guard received >= total else { throw StreamError("the echo stopped after \(received) of \(total) bytes") }
            return started.duration(to: .now).inSeconds
        }
        return BenchReport(
            target: target.description, to: target.description, bytes: total, seconds: (seconds * 1000).rounded() / 1000,
            megabytesPerSecond: (Double(total) / 1e6 / seconds * 100).rounded() / 100)
    }

    /// `pilotctl ping`, as 1.18 does it: each probe opens a stream to the target's echo port,
    /// writes `ping-<n>`, times the echo and closes.
    func ping(from name: String, target: Address, count: Int, timeout: Duration) async throws -> [PingReport.Probe] {
        let identity = try await join(name)
        let endpoint = try await endpoint(of: target, for: name)
        var results: [PingReport.Probe] = []
        for sequence in 0..<count {
            let probe = Array("ping-\(sequence)".utf8)
            do {
                // Run on the fabric's loop: no thread switch between the loop and this task, so
                // the time is the network's and the peer's.
                let (echoed, elapsed) = try await withTimeout(timeout) { [fabric] in
                    try await withTaskExecutorPreference(fabric.taskExecutor) {
                        let started = ContinuousClock.now
                        let stream = try await fabric.dial(from: identity.node, to: target, port: Port.echo, endpoint: endpoint)
                        try await stream.write(probe)
                        var received: [UInt8] = []
                        for await event in stream.events {
                            if case .data(let bytes) = event { received += bytes }
                            if received.count >= probe.count { break }
                        }
                        let elapsed = started.duration(to: .now)
                        try? await stream.close()
                        return (received, elapsed)
                    }
                }
                guard echoed == probe else { throw StreamError("the echo did not match what was sent") }
                let milliseconds = elapsed.inSeconds * 1000
                results.append(PingReport.Probe(sequence: sequence, bytes: probe.count, milliseconds: (milliseconds * 1000).rounded() / 1000))
            } catch {
                results.append(PingReport.Probe(sequence: sequence, error: "\(error)"))
            }
        }
        return results
    }

    /// A stream from `name` to `port` of `target` (joining the network first if need be), or
    /// an error within 15 s.
    private func dial(from name: String, to target: Address, port: UInt16) async throws -> StreamHandle {
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

/// The result of `body`, or a timeout error once `limit` has passed. Returns at the limit even
/// if `body` does not notice its cancellation (a dial waits on its own timers); it ends later.
/// What `body` hands to `add` until it returns or `limit` passes: on a timeout, what arrived
/// until then is kept (not lost with the task). `add` returns how many items there are so far.
func collect<T: Sendable>(
    within limit: Duration, _ body: @escaping @Sendable (_ add: @escaping @Sendable (T) -> Int) async -> Void
) async -> [T] {
    let items = NIOLockedValueBox<[T]>([])
    _ = try? await withTimeout(limit) {
        await body { item in items.withLockedValue { $0.append(item); return $0.count } }
    }
    return items.withLockedValue { $0 }
}

func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = TimeoutRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation, work: Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                race.settle(result)
            })
            Task {
                try? await Task.sleep(for: limit)
                race.settle(.failure(ControlFailure(.timeout, "no answer within \(limit)")))
            }
        }
    } onCancel: {
        // The caller went (its client hung up): the work stops instead of running to its limit.
        race.settle(.failure(CancellationError()))
    }
}

/// The one outcome of `withTimeout`: the work's result, the timeout or the caller's cancellation,
/// whichever comes first; the work is cancelled when it is not the first.
private final class TimeoutRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        /// Settled before `start` (cancelled at once): what to resume with then.
        var early: Result<T, any Error>?
        var settled = false
    }

    private let state = NIOLockedValueBox(State())

    func start(_ continuation: CheckedContinuation<T, any Error>, work: Task<Void, Never>) {
        let early = state.withLockedValue { state -> Result<T, any Error>? in
            state.continuation = continuation
            state.work = work
            return state.early
        }
        if let early {
            work.cancel()
            continuation.resume(with: early)
        }
    }

    func settle(_ result: Result<T, any Error>) {
        let (continuation, work) = state.withLockedValue { state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard !state.settled else { return (nil, nil) }
            state.settled = true
            guard let continuation = state.continuation else {
                state.early = result
                return (nil, nil)
            }
            state.continuation = nil
            return (continuation, state.work)
        }
        if case .failure = result { work?.cancel() }
        continuation?.resume(with: result)
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for figures and logs).
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// What `bench` sends: pseudo-random bytes repeating every 1,048,573 bytes (a prime, so the
/// pattern never lines up with segment or chunk sizes), checked on their way back.
enum BenchPattern {
    static let chunk = 4096
    private static let period = 1_048_573
    /// One period (SplitMix64's output, the low byte of each step).
    private static let block: [UInt8] = {
        var random = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)
        return (0..<period).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }()

    /// `count` (at most `chunk`) bytes of the stream from `offset`.
    static func bytes(at offset: Int, count: Int) -> [UInt8] {
        let start = offset % period
        return start + count <= period ? Array(block[start..<start + count]) : Array(block[start..<period] + block[0..<(start + count - period)])
    }

    /// Whether `received` is the stream's bytes from `offset`.
    static func matches(_ received: [UInt8], at offset: Int) -> Bool {
        var position = offset
        var index = 0
        while index < received.count {
            let start = position % period
            let count = min(received.count - index, period - start)
            guard received[index..<index + count].elementsEqual(block[start..<start + count]) else { return false }
            index += count
            position += count
        }
        return true
    }
}
