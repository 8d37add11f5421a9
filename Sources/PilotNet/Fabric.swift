public import Logging
public import NIOCore
import NIOPosix
public import PilotCrypto
public import PilotWire

/// Where the data plane learns a remote node's Ed25519 key (the registry, in pilot-host).
public protocol PeerDirectory: Sendable {
    /// The key the registry holds for `node`, or nil when it knows no such node.
    func signingKey(of node: UInt32) async throws -> Ed25519PublicKey?
}

/// The shared UDP sockets and the tunnel table behind them, on one event loop. Datagrams are
/// read in batches; each goes through `TunnelTable` and what it decides is done here: frames
/// sent, registry keys fetched, packets handed to the identity they are for. Control pings to
/// an identity are answered here; keepalives are swallowed.
public final class Fabric: Sendable {
    /// Receives the packets for one identity, on the fabric's event loop: return quickly.
    public typealias Receiver = @Sendable (Packet) -> Void
    /// Receives the beacon's messages (PROTOCOL-1.18.md §3.3) that are not the tunnels' (pokes,
    /// discover replies), with the socket they came in on, on the fabric's event loop: return
    /// quickly. Only those from the beacon's address (`useBeacon`) get here.
    public typealias BeaconReceiver = @Sendable (BeaconMessage, _ socket: Int) -> Void
    /// Receives the node id of a resting identity (see `rest`) that a peer wants, on the
    /// fabric's event loop: return at once; add the identity, relate it, then call `woke`.
    public typealias WakeReceiver = @Sendable (UInt32) -> Void

    private let loop: any EventLoop
    private let directory: any PeerDirectory
    private let logger: Logger
    private let state: NIOLoopBoundBox<State>
    private let echoBudget: Int

    /// What the echo streams of a fabric may hold in all. A public identity's echo port is open
    /// to strangers: 1024 streams whose echo is never acknowledged, each holding
    /// `StreamConnection.receiveBufferLimit`, would be 2 GiB. Past the budget each echo stream
    /// keeps `echoFloor` (a ping still gets through), so the most held is about the budget plus
    /// a floor per stream (64 MiB at the per-port limit).
    public static let defaultEchoBudget = 64 << 20
    static let echoFloor = 64 << 10

    struct Pair: Hashable {
        let local: UInt32
        let remote: UInt32
    }

    /// Loop-confined state.
    final class State {
        let table: TunnelTable
        var channels: [Int: any Channel] = [:]
        var nextSocket = 0
        var receivers: [UInt32: Receiver] = [:]
        var beaconReceiver: BeaconReceiver?
        var wakeReceiver: WakeReceiver?
        /// When each resting identity was asked for: the time to its answer is logged.
        var wakesAsked: [UInt32: NIODeadline] = [:]
        var ticker: RepeatedTask?
        var streamTicker: RepeatedTask?
        let streams = StreamTable()
        /// The trust gate: pairs (local, remote) that are trusted, and each identity's public ports.
        var trusted: Set<Pair> = []
        var publicPorts: [UInt32: Set<UInt16>] = [:]
        var untrustedDropped = 0
        /// Each socket's descriptor, sent on by `sender` beside the NIO channel that reads it.
        var descriptors: [Int: Int32] = [:]
        let sender = DatagramSender()
        /// Datagrams waiting to be sent, by socket: sent together at the end of a batch of reads
        /// or of whatever made them; left here while a socket's send buffer is full.
        var outgoing: [Int: [(bytes: [UInt8], endpoint: SocketAddress)]] = [:]
        /// Datagrams the kernel refused (no route, a firewall...), by errno, and datagrams
        /// dropped because a send buffer stayed full; when the last warning was logged.
        var sendErrors: [Int32: Int] = [:]
        var sendBacklogDropped = 0
        var lastSendWarning: NIODeadline?
        /// Inside a batch of reads (between the first channelRead and channelReadComplete).
        var reading = false
        /// The last pure ACK of each stream made during this batch of reads, sent when it ends.
        var pendingAcks: [StreamConnection.Key: Packet] = [:]
        /// Stream bytes that arrived during this batch of reads, by stream, for its reader.
        var arrived: [StreamConnection.Key: (handle: StreamHandle, bytes: [UInt8])] = [:]
        /// Packets between identities of this fabric, delivered without a tunnel.
        var localPackets = 0
        /// What the echo streams hold in all (echoes not yet acknowledged), as of the last tick.
        var echoHeld = 0
        /// Runs of datagrams the kernel coalesced (UDP_GRO), and the datagrams in them.
        var coalescedRuns = 0
        var coalescedDatagrams = 0
        var stopped = false
        let busyPoll: BusyPoll?

        init(table: TunnelTable, busyPoll: BusyPoll?) {
            self.table = table
            self.busyPoll = busyPoll
        }
    }

    /// With a `busyPoll` window, the loop keeps looking at its sockets for that long after
    /// each burst of traffic before its thread may sleep (see `BusyPoll`); zero: it sleeps at once.
    public init(
        group: any EventLoopGroup, directory: any PeerDirectory, timing: TunnelTable.Timing = .init(), busyPoll: TimeAmount = .zero,
        echoBudget: Int = Fabric.defaultEchoBudget, logger: Logger
    ) {
        self.echoBudget = echoBudget
        loop = group.next()
        taskExecutor = LoopTaskExecutor(loop: loop)
        self.directory = directory
        self.logger = logger
        state = NIOLoopBoundBox.makeBoxSendingValue(
            State(table: TunnelTable(timing: timing), busyPoll: BusyPoll(window: busyPoll)), eventLoop: loop)
    }

    /// Runs a task's jobs on this fabric's event loop, for `withTaskExecutorPreference`: a task
    /// that drives streams of this fabric and only awaits (never blocks) then hands bytes to the
    /// loop and is woken by it without a thread switch either way. An echo round trip costs two
    /// thread wakes so, the two loops', instead of four.
    public let taskExecutor: any TaskExecutor

    /// Binds a UDP socket; returns its number (for `add(_:ownSocket:)`) and its address. The
    /// first socket bound (or adopted) is number 0, the shared one.
    ///
    /// Up to `readBatch` datagrams are read per system call, each at most `largestDatagram`
    /// long (longer ones arrive cut short, and fail to open). NIO keeps a receive buffer of
    /// their product per socket once it has read; a host with thousands of sockets of its own
    /// should give those far less than the shared socket's. With 64 KiB slots the kernel may
    /// coalesce a sender's datagrams (UDP_GRO, where it can): then 4 slots (256 KiB), each a run
    /// of up to about 53 segments.
    ///
    /// The kernel buffers are `bufferBytes` each way (forced past the sysctl caps when the
    /// process may): 4 MiB for a shared socket by default; a window in flight (512 segments)
    /// needs about 640 KiB, which is what one identity's socket carries.
    public func bind(
        host: String, port: Int, largestDatagram: Int = 65536, readBatch: Int = 16, bufferBytes: Int = UDPBuffers.wanted
    ) async throws -> (socket: Int, address: SocketAddress) {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        return try await open(
            descriptor: try Self.boundSocket(address), largestDatagram: largestDatagram, readBatch: readBatch, bufferBytes: bufferBytes)
    }

    /// A non-blocking UDP socket bound to `address` (made here, not by NIO, so that the fabric
    /// holds its descriptor to send on: see `DatagramSender`).
    private static func boundSocket(_ address: SocketAddress) throws -> Int32 {
        let family = address.protocol.rawValue
        let descriptor = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        guard address.withSockAddr({ Glibc.bind(descriptor, $0, socklen_t($1)) }) == 0 else {
            let error = errno
            close(descriptor)
            throw IOError(errnoCode: error, reason: "bind \(address)")
        }
        return descriptor
    }

    /// The longest run of datagrams the kernel coalesces for one read (UDP_GRO): a socket whose
    /// read slots are this long gets them coalesced.
    static let coalescedLimit = 65536
    static let coalescedReadBatch = 4

    /// UDP_GRO with the run's datagram size: the kernel may hand over a run of one sender's
    /// datagrams as one buffer, up to 64 KiB, which each slot of the read has room for. On
    /// loopback a run sent with segmentation offload then arrives as sent, never cut into
    /// datagrams and queued one by one; `FabricInbound` cuts it. A socket that refuses (a
    /// filter, an odd socket from systemd) is served without: never coalescing without sizes.
    private func coalesce(_ channel: any Channel, socket: Int) async {
        do {
            // Sizes first: no run is ever read without its size.
            try await channel.setOption(.datagramReceiveSegmentSize, value: true).get()
            try await channel.setOption(.datagramReceiveOffload, value: true).get()
        } catch {
            logger.notice("datagrams are read one by one: the socket refuses UDP_GRO", metadata: ["PILOT_SOCKET": "\(socket)", "error": "\(error)"])
        }
    }

    /// Serves an already bound UDP socket (one passed by systemd's socket activation); the
    /// fabric owns it from now on.
    public func adopt(descriptor: Int32) async throws -> (socket: Int, address: SocketAddress) {
        try await open(descriptor: descriptor, largestDatagram: 65536, readBatch: 16, bufferBytes: UDPBuffers.wanted)
    }

    private func open(
        descriptor: Int32, largestDatagram: Int, readBatch: Int, bufferBytes: Int
    ) async throws -> (socket: Int, address: SocketAddress) {
        let number = try await loop.submit { [state] in
            let state = state.value
            defer { state.nextSocket += 1 }
            return state.nextSocket
        }.get()
        let coalesces = largestDatagram >= Self.coalescedLimit && System.supportsUDPReceiveOffload
        // Coalesced, a read's slot may hold a run of up to 53 segments. NIO makes up to 4 reads
        // before it says the batch is over (when the batch's stream bytes go to their readers):
        // 4 slots keep a batch near 850 segments at most, well inside a reader's 2 MiB.
        let slots = coalesces ? min(readBatch, Self.coalescedReadBatch) : readBatch
        let bootstrap = DatagramBootstrap(group: loop)
            // NIO splits one buffer of this capacity among the datagrams of a read.
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: largestDatagram * slots))
            .channelOption(.datagramVectorReadMessageCount, value: slots)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FabricInbound(fabric: self, socket: number))
                }
            }
        // NIO owns the descriptor from here, and closes it if it cannot set the channel up.
        let channel = try await bootstrap.withBoundSocket(descriptor).get()
        guard let address = channel.localAddress else {
            try? await channel.close()
            throw TunnelError.encoding("socket \(number) has no local address")
        }
        if coalesces { await coalesce(channel, socket: number) }
        // Bursts of a full window (512 segments of 1222 bytes) must not overflow the buffers.
        await UDPBuffers.ensure(on: channel, wanted: bufferBytes, logger: logger, metadata: ["PILOT_SOCKET": "\(number)"])
        try await loop.submit { [state, loop] in
            let state = state.value
            state.channels[number] = channel
            state.descriptors[number] = descriptor
            state.busyPoll?.watch(descriptor)
            if state.ticker == nil {
                state.ticker = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
                    self.perform(self.state.value.table.tick(now: .now()))
                }
                state.streamTicker = loop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { [self] _ in
                    self.tickStreams()
                }
            }
        }.get()
        return (number, address)
    }

    /// The beacon that relays frames for nodes that cannot reach each other and coordinates
    /// hole punching (nil: none). Its relay deliveries and punch commands are obeyed, from its
    /// address only.
    public func useBeacon(_ endpoint: SocketAddress?) async throws {
        try await loop.submit { [state] in state.value.table.useBeacon(endpoint) }.get()
    }

    /// Hands the beacon's messages that are not the tunnels' to `receiver` (one receiver; nil:
    /// none).
    public func onBeaconMessage(_ receiver: BeaconReceiver?) async throws {
        try await loop.submit { [state] in state.value.beaconReceiver = receiver }.get()
    }

    /// Hands the node ids of resting identities that peers want to `receiver` (one receiver;
    /// nil: none, and such frames are dropped).
    public func onWake(_ receiver: WakeReceiver?) async throws {
        try await loop.submit { [state] in state.value.wakeReceiver = receiver }.get()
    }

    /// Identities not on the fabric (not added: they join when first needed), each with the
    /// remote nodes it has business with: a key exchange, or a frame of a session from before
    /// a restart, from one of those asks for it (`onWake`) instead of being dropped. An empty
    /// set forgets the identity.
    public func rest(_ identities: [(local: UInt32, remotes: Set<UInt32>)]) async throws {
        try await loop.submit { [state] in
            for (local, remotes) in identities { state.value.table.rest(local, relatedTo: remotes) }
        }.get()
    }

    /// `node` has been added and related (woken, or joined for its own use): it rests no more,
    /// and the frames that asked for it are answered now.
    public func woke(_ node: UInt32) async throws {
        try await loop.submit { [self, state] in
            let state = state.value
            perform(state.table.woke(node, now: .now()))
            if let asked = state.wakesAsked.removeValue(forKey: node) {
                logger.info("resting identity joined for a peer and answered", metadata: [
                    "PILOT_NODE": "\(node)", "microseconds": "\((NIODeadline.now() - asked).nanoseconds / 1000)"])
            }
        }.get()
    }

    /// Sends `messages` to the beacon at `endpoint` from socket `socket` (0: the shared one),
    /// in one batch.
    public func sendBeacon(_ messages: [BeaconMessage], to endpoint: SocketAddress, socket: Int = 0) async throws {
        let datagrams = try messages.map { try $0.encoded() }
        try await loop.submit { [self] in
            self.perform(datagrams.map { .send($0, to: endpoint, socket: socket) })
        }.get()
    }

    /// Runs `body` every `interval` on the loop that carries the traffic (a watchdog ping: if
    /// the loop wedges, the pings stop). Cancel the returned task to stop.
    public func onLoop(every interval: TimeAmount, _ body: @escaping @Sendable () -> Void) -> RepeatedTask {
        loop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in body() }
    }

    /// Tunnels (sessions with remote nodes) and open streams, for a status line.
    public func load() async throws -> (tunnels: Int, streams: Int) {
        try await loop.submit { [state] in (state.value.table.sessionCount, state.value.streams.entries.count) }.get()
    }

    /// Closes every open stream in order (FIN once what was written is acknowledged) and waits
    /// until all have sent their FIN or `limit` passes; returns how many had not.
    @discardableResult
    public func closeStreams(within limit: Duration) async -> Int {
        let deadline = ContinuousClock.now + limit
        func open() async -> Int {
            (try? await loop.submit { [state] in
                state.value.streams.entries.values.filter { [.established, .synSent].contains($0.connection.state) }.count
            }.get()) ?? 0
        }
        _ = try? await loop.submit { [self] in
            for (key, entry) in state.value.streams.entries where !entry.connection.isClosed {
                handle(entry.connection.close(now: .now()), for: key)
            }
        }.get()
        var remaining = await open()
        while remaining > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
            remaining = await open()
        }
        return remaining
    }

    /// Serves `identity`: its datagrams and control packets go to `receiver`, its streams to the
    /// ports it listens on (echo, port 7, always). With `ownSocket`, key exchanges from anyone
    /// arriving on that socket are for it (an identity that accepts strangers).
    public func add(_ identity: TunnelIdentity, ownSocket: Int? = nil, receiver: @escaping Receiver) async throws {
        try await loop.submit { [state] in
            let state = state.value
            state.receivers[identity.node] = receiver
            state.table.add(identity, ownSocket: ownSocket)
            state.streams.listeners[identity.node, default: [:]][Self.echoPort] = .echo
        }.get()
    }

    static let echoPort: UInt16 = 7

    /// Accepts streams to `port` of identity `node`; each is handed to `accept`.
    public func listen(node: UInt32, port: UInt16, accept: @escaping @Sendable (StreamHandle) -> Void) async throws {
        try await loop.submit { [state] in state.value.streams.listeners[node, default: [:]][port] = .accept(accept) }.get()
    }

    /// Stops accepting streams on `port` of `node` (open ones go on).
    public func unlisten(node: UInt32, port: UInt16) async throws {
        try await loop.submit { [state] in state.value.streams.listeners[node]?[port] = nil }.get()
    }

    /// Whether `node` accepts streams on `port`.
    public func isListening(node: UInt32, port: UInt16) async throws -> Bool {
        try await loop.submit { [state] in state.value.streams.listeners[node]?[port] != nil }.get()
    }

    /// Opens a stream from identity `node` to `port` of `remote` (reached at `endpoint`, or where
    /// it was last seen); returns once the remote accepted it.
    public func dial(from node: UInt32, to remote: Address, port: UInt16, endpoint: SocketAddress? = nil) async throws -> StreamHandle {
        let promise = loop.makePromise(of: StreamHandle.self)
        loop.execute { [self] in
            let state = state.value
            guard let identity = state.table.identity(node) else {
                promise.fail(TunnelError.unknownIdentity(node))
                return
            }
            let key = StreamConnection.Key(
                local: identity.address, localPort: state.streams.ephemeralPort(for: node), remote: remote, remotePort: port)
            let (connection, outputs) = StreamConnection.dial(key, now: .now())
            let handle = StreamHandle(key: key, fabric: self)
            state.streams.insert(StreamTable.Entry(connection: connection, handle: handle, dialed: promise), for: key)
            // The SYN goes out through the tunnel (after a key exchange if there is no session).
            for case .packet(let syn) in outputs {
                do { try route(syn, to: remote.node, endpoint: endpoint) } catch {
                    state.streams.remove(key)
                    handle.continuation.finish()
                    promise.fail(error)
                }
            }
        }
        return try await promise.futureResult.get()
    }

    /// A stream packet as `--log-level trace` shows it.
    private static func traceMetadata(_ packet: Packet) -> Logger.Metadata {
        [
            "from": "\(packet.source):\(packet.sourcePort)", "to": "\(packet.destination):\(packet.destinationPort)",
            "flags": "\(packet.flags)", "seq": "\(packet.sequence)", "ack": "\(packet.acknowledgment)", "window": "\(packet.window)",
            "bytes": "\(packet.payload.count)",
        ]
    }

    /// On the loop: what `key`'s reader has not read, counting what arrived for it in this
    /// batch of reads and is not handed over yet.
    private func readerBacklog(_ key: StreamConnection.Key, _ handle: StreamHandle) -> Int {
        handle.unread + (state.value.arrived[key]?.bytes.count ?? 0)
    }

    /// `key`'s reader caught up after its window was narrowed: the peer hears the window is
    /// open (else a sender facing a shut window would wait for its next probe).
    func reopenWindow(_ key: StreamConnection.Key) {
        loop.execute { [self] in
            let state = state.value
            guard let entry = state.streams.entries[key], let handle = entry.handle else { return }
            entry.connection.readerBacklog = readerBacklog(key, handle)
            self.handle(entry.connection.windowUpdate(), for: key)
        }
    }

    /// Queues `bytes` handed over by `handle` (it counted them), on the loop, without waiting.
    func streamWriteNow(_ key: StreamConnection.Key, _ bytes: [UInt8], from handle: StreamHandle) {
        loop.execute { [self] in
            guard let entry = state.value.streams.entries[key], !entry.connection.isClosed else {
                handle.writeState.withLockedValue { $0.handedOver -= bytes.count }
                return
            }
            self.handle(entry.connection.write(bytes, now: .now()), for: key)
            // Handed over and now held: one update, so no writer sees the bytes in neither.
            noteUnacknowledged(key, handedOver: bytes.count)
        }
    }

    /// Tells `key`'s handle how much its connection holds unacknowledged, so that its writer
    /// knows whether it may hand over more without asking.
    private func noteUnacknowledged(_ key: StreamConnection.Key, handedOver: Int = 0) {
        guard let entry = state.value.streams.entries[key], let handle = entry.handle else { return }
        let unacknowledged = entry.connection.unacknowledgedBytes
        handle.writeState.withLockedValue {
            $0.unacknowledged = unacknowledged
            $0.handedOver -= handedOver
        }
    }

    /// Queues `bytes`; returns once less than `StreamTable.writeLimit` waits to be acknowledged,
    /// so a fast writer is held back instead of queueing without bound.
    func streamWrite(_ key: StreamConnection.Key, _ bytes: [UInt8]) async throws {
        let drained = try await loop.submit { [self] () throws -> EventLoopFuture<Void>? in
            let streams = state.value.streams
            guard let entry = streams.entries[key], !entry.connection.isClosed else { throw StreamError("stream is closed") }
            handle(entry.connection.write(bytes, now: .now()), for: key)
            noteUnacknowledged(key)
            guard var current = streams.entries[key], current.connection.unacknowledgedBytes > StreamTable.writeLimit else { return nil }
            let promise = loop.makePromise(of: Void.self)
            current.writers.append(StreamTable.Waiter(unacknowledged: StreamTable.writeLimit / 2, promise: promise))
            streams.entries[key] = current
            return promise.futureResult
        }.get()
        try await drained?.get()
    }

    /// Returns once `key`'s peer has acknowledged everything written to it.
    func streamFlush(_ key: StreamConnection.Key) async throws {
        let flushed = try await loop.submit { [self] () throws -> EventLoopFuture<Void>? in
            let streams = state.value.streams
            guard var entry = streams.entries[key], !entry.connection.isClosed else { throw StreamError("stream is closed") }
            guard entry.connection.unacknowledgedBytes > 0 else {
                // Nothing is waiting: all was acknowledged, or the peer finished first.
                let lost = entry.connection.unacknowledgedAtPeerFin
                if lost > 0 { throw StreamError.peerFinished(unacknowledged: lost) }
                return nil
            }
            let promise = loop.makePromise(of: Void.self)
            entry.writers.append(StreamTable.Waiter(unacknowledged: 0, promise: promise))
            streams.entries[key] = entry
            return promise.futureResult
        }.get()
        try await flushed?.get()
    }

    /// `streamAbort` without waiting (from a handle whose reader is gone).
    func abortSoon(_ key: StreamConnection.Key) {
        loop.execute { [self] in reset(key) }
    }

    func streamAbort(_ key: StreamConnection.Key) async {
        _ = try? await loop.submit { [self] in reset(key) }.get()
    }

    /// On the loop: ends `key` with a reset.
    private func reset(_ key: StreamConnection.Key) {
        guard let entry = state.value.streams.entries[key] else { return }
        handle(entry.connection.reset(), for: key)
    }

    /// Lets waiting writers of `key` go on once its queue has drained far enough for each.
    private func releaseWriters(_ key: StreamConnection.Key) {
        let streams = state.value.streams
        guard var entry = streams.entries[key], !entry.writers.isEmpty else { return }
        let unacknowledged = entry.connection.unacknowledgedBytes
        let released = entry.writers.filter { unacknowledged <= $0.unacknowledged }
        guard !released.isEmpty else { return }
        entry.writers.removeAll { unacknowledged <= $0.unacknowledged }
        streams.entries[key] = entry
        // The peer finished with bytes of ours unacknowledged: they were not all received.
        let lost = entry.connection.unacknowledgedAtPeerFin
        for writer in released {
            if writer.unacknowledged == 0, lost > 0 {
                writer.promise.fail(StreamError.peerFinished(unacknowledged: lost))
            } else {
                writer.promise.succeed()
            }
        }
    }

    func streamClose(_ key: StreamConnection.Key) async throws {
        try await loop.submit { [self] in
            guard let entry = state.value.streams.entries[key] else { return }
            entry.handle?.writeState.withLockedValue { $0.closed = true }
            handle(entry.connection.close(now: .now()), for: key)
        }.get()
    }

    private func tickStreams() {
        flushUnlessReading()
        let state = state.value
        let streams = state.streams
        let now = NIODeadline.now()
        state.echoHeld = streams.entries.values.reduce(0) { $0 + ($1.echoes ? $1.connection.unacknowledgedBytes : 0) }
        for (key, entry) in streams.entries {
            if entry.echoes { entry.connection.holdLimit = echoLimit(others: state.echoHeld - entry.connection.unacknowledgedBytes) }
            // A shut window opens when the reader has caught up: the tick says so if the
            // reader's own word was lost.
            if entry.connection.windowShut, let handle = entry.handle { entry.connection.readerBacklog = readerBacklog(key, handle) }
            let outputs = entry.connection.tick(now: now)
            if !outputs.isEmpty { handle(outputs, for: key) }
        }
    }

    /// A stream packet for identity `local`: to its connection, or a new one on a listening
    /// port, or answered with RST.
    private func deliverStream(_ packet: Packet, to local: TunnelIdentity) {
        logger.trace("stream in", metadata: Self.traceMetadata(packet))
        let streams = state.value.streams
        let key = StreamConnection.Key(local: local.address, localPort: packet.destinationPort, remote: packet.source, remotePort: packet.sourcePort)
        if let entry = streams.entries[key] {
            // The window follows the reader: what it has not read (arrived in this batch or
            // before), or for the echo service what it has not yet sent back.
            let connection = entry.connection
            if let handle = entry.handle { connection.readerBacklog = readerBacklog(key, handle) }
            handle(connection.receive(packet, now: .now()), for: key)
            // The reader is far behind: it says when it has caught up (or, if it caught up
            // meanwhile, the window is said to be open now).
            if connection.readerBacklog > ReadBacklog.farBehind, let handle = entry.handle, handle.backlog.narrowed() {
                connection.readerBacklog = readerBacklog(key, handle)
                self.handle(connection.windowUpdate(), for: key)
            }
            noteUnacknowledged(key)
            releaseWriters(key)
            return
        }
        guard packet.flags == .syn else {
            // Late packets of a forgotten connection are dropped; a FIN|ACK is never answered.
            if !packet.flags.contains(.rst) && !packet.flags.contains(.fin) { sendReset(for: packet, from: local) }
            return
        }
        // The trust gate: a node this identity does not trust may open streams only to the
        // handshake port and the ports the identity has made public; otherwise silence, as
        // for a port behind a firewall.
        guard admits(packet.source.node, to: local.node, port: packet.destinationPort) else { return }
        guard streams.admitSyn(to: local.node, from: packet.source.node, now: .now()) else { return }
        guard let listener = streams.listeners[local.node]?[packet.destinationPort],
            streams.hasRoom(node: local.node, port: packet.destinationPort)
        else {
            sendReset(for: packet, from: local)
            return
        }
        let (connection, outputs) = StreamConnection.accept(packet, local: local.address, now: .now())
        switch listener {
        case .echo:
            connection.echoesBack = true
            connection.holdLimit = echoLimit(others: state.value.echoHeld)
            streams.insert(StreamTable.Entry(connection: connection, handle: nil), for: key)
            handle(outputs, for: key)
        case .accept(let acceptor):
            let handle = StreamHandle(key: key, fabric: self)
            streams.insert(StreamTable.Entry(connection: connection, handle: handle), for: key)
            self.handle(outputs, for: key)
            acceptor(handle)
        }
    }

    /// What one echo stream may hold while the others hold `others`: the rest of the budget,
    /// between the floor and the limit of any stream.
    private func echoLimit(others: Int) -> Int {
        min(StreamConnection.receiveBufferLimit, max(Self.echoFloor, echoBudget - others))
    }

    private func sendReset(for packet: Packet, from local: TunnelIdentity) {
        state.value.streams.resetsSent += 1
        let reset = Packet(
            flags: [.rst, .ack], proto: .stream, source: local.address, destination: packet.source, sourcePort: packet.destinationPort,
            destinationPort: packet.sourcePort, sequence: 0, acknowledgment: packet.sequence &+ 1)
        try? route(reset, to: packet.source.node)
    }

    /// Does what a connection asked: packets into the tunnel, events to its handle.
    private func handle(_ outputs: [StreamConnection.Output], for key: StreamConnection.Key) {
        let state = state.value
        for output in outputs {
            guard var entry = state.streams.entries[key] else { return }
            switch output {
            case .packet(let packet):
                logger.trace("stream out", metadata: Self.traceMetadata(packet))
                if state.reading, packet.flags == .ack, packet.payload.isEmpty {
                    // A pure cumulative ACK made while a batch of reads is handled: the batch's
                    // last one says all the earlier ones say; it goes out when the batch ends.
                    state.pendingAcks[key] = packet
                } else if packet.flags.contains(.ack) {
                    // Anything else with the ACK flag carries the acknowledgment too: a pending
                    // ACK would only repeat it (and a repeat reads as a duplicate ACK).
                    state.pendingAcks[key] = nil
                    try? route(packet, to: key.remote.node)
                } else if packet.flags.contains(.fin) {
                    // A bare FIN acknowledges nothing: the pending ACK goes before it.
                    if let pending = state.pendingAcks.removeValue(forKey: key) { try? route(pending, to: key.remote.node) }
                    try? route(packet, to: key.remote.node)
                } else {
                    // A RST ends the stream: an ACK before it would tell the peer nothing.
                    state.pendingAcks[key] = nil
                    try? route(packet, to: key.remote.node)
                }
            case .connected:
                if let handle = entry.handle { entry.dialed?.succeed(handle) }
                entry.dialed = nil
                state.streams.entries[key] = entry
            case .data(let bytes):
                if entry.echoes { handle(entry.connection.write(bytes, now: .now()), for: key) }
                guard let handle = entry.handle else { continue }
                if state.reading {
                    // Gathered until the batch of reads ends: one wake of the reader per batch,
                    // not one per segment.
                    state.arrived[key, default: (handle, [])].bytes += bytes
                } else {
                    handle.deliver(bytes)
                }
            case .finished:
                if entry.echoes { handle(entry.connection.close(now: .now()), for: key) }
                handOverArrived(key)
                entry.handle?.continuation.yield(.finished)
            case .closed(let reason):
                state.pendingAcks[key] = nil
                handOverArrived(key)
                entry.handle?.writeState.withLockedValue { $0.closed = true }
                entry.dialed?.fail(StreamError(reason ?? "closed before it was accepted"))
                for writer in entry.writers { writer.promise.fail(StreamError(reason ?? "stream is closed")) }
                entry.handle?.continuation.yield(.closed(reason: reason))
                entry.handle?.continuation.finish()
                state.streams.remove(key)
            }
        }
    }

    public func remove(_ node: UInt32) async throws {
        try await loop.submit { [self, state] in
            let state = state.value
            state.receivers[node] = nil
            state.streams.listeners[node] = nil
            state.publicPorts[node] = nil
            state.trusted = state.trusted.filter { $0.local != node }
            for (key, entry) in state.streams.entries where key.local.node == node {
                self.handle(entry.connection.reset(), for: key)
                state.streams.remove(key)
            }
            state.table.remove(node)
        }.get()
    }

    /// `local` has business with `remote` (trust, a handshake): key exchanges from it apply.
    public func relate(local: UInt32, remote: UInt32, _ related: Bool = true) async throws {
        try await loop.submit { [state] in
            if related {
                state.value.table.relate(local: local, remote: remote)
            } else {
                state.value.table.forgetRelation(local: local, remote: remote)
            }
        }.get()
    }

    /// Sends `packet` (its source is the sending identity) to node `remote`, over its session or
    /// after a key exchange with `endpoint` (or where `remote` was last seen).
    public func send(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil) async throws {
        try await loop.submit { [self] in try route(packet, to: remote, endpoint: endpoint) }.get()
    }

    /// On the loop: `packet` to node `remote`. An identity of this fabric gets it directly (it
    /// never leaves the process, so there is nothing to encrypt), on the next turn of the loop
    /// so no caller is re-entered; any other node through its tunnel.
    private func route(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil) throws {
        let state = state.value
        if state.table.identity(remote) != nil {
            guard state.table.identity(packet.source.node) != nil else {
                throw TunnelError.sourceNotLocal(packet.source)
            }
            state.localPackets += 1
            loop.execute { [self] in deliver(packet, to: remote) }
            return
        }
        perform(try state.table.send(packet, to: remote, endpoint: endpoint, now: .now()))
    }

    public func counters() async throws -> TunnelCounters {
        try await loop.submit { [state] in state.value.table.counters }.get()
    }

    /// One of an identity's streams, as `pilotctl connections` lists it.
    public struct ConnectionInfo: Sendable, Equatable {
        public var localPort: UInt16
        public var remote: Address
        public var remotePort: UInt16
        public var state: String
        public var unacknowledgedBytes: Int
    }

    /// One of an identity's tunnel peers, as `pilotctl peers` lists it.
    public struct PeerInfo: Sendable, Equatable {
        public var node: UInt32
        public var endpoint: String
        public var secondsSinceHeard: Double
        public var trusted: Bool
        /// Frames go through the beacon.
        public var relayed: Bool
    }

    public func connections(of node: UInt32) async throws -> [ConnectionInfo] {
        try await loop.submit { [state] in
            state.value.streams.entries.filter { $0.key.local.node == node }.map { key, entry in
                ConnectionInfo(
                    localPort: key.localPort, remote: key.remote, remotePort: key.remotePort, state: "\(entry.connection.state)",
                    unacknowledgedBytes: entry.connection.unacknowledgedBytes)
            }.sorted { ($0.localPort, $0.remote.node, $0.remotePort) < ($1.localPort, $1.remote.node, $1.remotePort) }
        }.get()
    }

    public func peers(of node: UInt32) async throws -> [PeerInfo] {
        try await loop.submit { [state] in
            let state = state.value
            let now = NIODeadline.now()
            return state.table.sessions(of: node).map { session in
                PeerInfo(
                    node: session.remote, endpoint: session.endpoint.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "",
                    secondsSinceHeard: Double((now - session.lastReceived).nanoseconds) / 1e9,
                    trusted: state.trusted.contains(Pair(local: node, remote: session.remote)), relayed: session.relayed)
            }
        }.get()
    }

    /// What the stream layer counted: SYNs dropped by the rate limits, streams refused at the
    /// connection limits, RSTs sent for ports nobody listens on, packets delivered in-process.
    public struct StreamCounters: Sendable, Equatable {
        public var open: Int
        public var synsRateLimited: Int
        public var refusedAtLimit: Int
        public var resetsSent: Int
        public var localPackets: Int
        /// SYNs and datagrams from nodes the identity does not trust, to ports it has not opened.
        public var untrustedDropped: Int
        /// Over every stream so far: segments sent again (window probes included), and times a
        /// stream's window shut because its reader fell `StreamConnection.receiveBufferLimit`
        /// behind (for an echo stream: its echo went unacknowledged that long).
        public var retransmitted: Int
        public var shutWindows: Int
        /// What the echo streams held at the last tick (see `defaultEchoBudget`).
        public var echoHeld: Int
    }

    public func streamCounters() async throws -> StreamCounters {
        try await loop.submit { [state] in
            let state = state.value
            return StreamCounters(
                open: state.streams.entries.count, synsRateLimited: state.streams.synsRateLimited,
                refusedAtLimit: state.streams.refusedAtLimit, resetsSent: state.streams.resetsSent, localPackets: state.localPackets,
                untrustedDropped: state.untrustedDropped,
                retransmitted: state.streams.entries.values.reduce(state.streams.retransmittedByClosed) { $0 + $1.connection.retransmitted },
                shutWindows: state.streams.entries.values.reduce(state.streams.shutWindowsByClosed) { $0 + $1.connection.shutWindowsAdvertised },
                echoHeld: state.echoHeld)
        }.get()
    }

    /// Runs of datagrams the kernel handed over coalesced (UDP_GRO, on sockets bound with
    /// 64 KiB read slots), and how many datagrams they held.
    public func coalescedReads() async throws -> (runs: Int, datagrams: Int) {
        try await loop.submit { [state] in (state.value.coalescedRuns, state.value.coalescedDatagrams) }.get()
    }

    /// Datagrams the kernel refused to send, by errno (each skipped: the socket serves on), and
    /// datagrams dropped because a send buffer stayed full.
    public func sendFailures() async throws -> (refused: [Int32: Int], backlogDropped: Int) {
        try await loop.submit { [state] in (state.value.sendErrors, state.value.sendBacklogDropped) }.get()
    }

    public func hasSession(local: UInt32, remote: UInt32) async throws -> Bool {
        try await loop.submit { [state] in state.value.table.hasSession(local: local, remote: remote) }.get()
    }

    /// Closes every socket and stops the timer.
    public func shutdown() async {
        let channels = try? await loop.submit { [state] () -> [any Channel] in
            let state = state.value
            state.stopped = true
            state.busyPoll?.close()
            state.ticker?.cancel()
            state.ticker = nil
            state.streamTicker?.cancel()
            state.streamTicker = nil
            for entry in state.streams.entries.values {
                entry.handle?.writeState.withLockedValue { $0.closed = true }
                entry.dialed?.fail(StreamError("the fabric is shut down"))
                for writer in entry.writers { writer.promise.fail(StreamError("the fabric is shut down")) }
                entry.handle?.continuation.finish()
            }
            state.streams.entries = [:]
            state.arrived = [:]
            state.descriptors = [:]
            defer { state.channels = [:] }
            return Array(state.channels.values)
        }.get()
        for channel in channels ?? [] { try? await channel.close() }
    }

    // MARK: On the loop

    func received(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int) {
        state.value.reading = true
        perform(state.value.table.receive(bytes, from: endpoint, socket: socket, now: .now()))
    }

    private func perform(_ actions: [TunnelAction]) {
        let state = state.value
        guard !state.stopped else { return }
        // Datagrams are queued now and sent when this is done, or, inside a batch of reads, when
        // the batch ends: together, with one sendmmsg per socket.
        defer { flushUnlessReading() }
        for action in actions {
            switch action {
            case let .send(bytes, endpoint, socket):
                guard state.descriptors[socket] != nil else { continue }
                state.outgoing[socket, default: []].append((bytes, endpoint))
            case let .deliver(local, packet):
                deliver(packet, to: local)
            case .lookUpKey(let node):
                lookUp(node)
            case let .exchangeFailed(local, remote, dropped):
                logger.notice("key exchange gave up", metadata: [
                    "PILOT_NODE": "\(local)", "PILOT_PEER": "\(remote)", "dropped": "\(dropped)"])
            case let .pathChanged(remote, relayed):
                logger.info(relayed ? "relaying through the beacon" : "direct path", metadata: ["PILOT_PEER": "\(remote)"])
            case let .fromBeacon(message, socket):
                state.beaconReceiver?(message, socket)
            case .wake(let local):
                state.wakesAsked[local] = .now()
                state.wakeReceiver?(local)
            }
        }
    }

    /// Whether `remote` may open a stream or send a datagram to `port` of `local`.
    private func admits(_ remote: UInt32, to local: UInt32, port: UInt16) -> Bool {
        let state = state.value
        if port == Self.handshakePort || state.trusted.contains(Pair(local: local, remote: remote))
            || state.publicPorts[local]?.contains(port) == true
        {
            return true
        }
        state.untrustedDropped += 1
        return false
    }

    /// The trust handshake's port: open to everyone, so that trust can be asked for.
    static let handshakePort: UInt16 = 444

    /// `local` trusts `remote` (or no longer does): its streams and datagrams pass the gate.
    public func setTrusted(local: UInt32, remote: UInt32, _ trusted: Bool) async throws {
        try await loop.submit { [state] in
            if trusted {
                state.value.trusted.insert(Pair(local: local, remote: remote))
            } else {
                state.value.trusted.remove(Pair(local: local, remote: remote))
            }
        }.get()
    }

    /// The ports of `local` that nodes it does not trust may reach (besides 444).
    public func setPublicPorts(local: UInt32, _ ports: Set<UInt16>) async throws {
        try await loop.submit { [state] in state.value.publicPorts[local] = ports }.get()
    }

    /// Datagrams queued while a batch of reads is handled go out together when the batch ends
    /// (`readComplete`); any others (a user's, a timer's) go out at once, without waiting for
    /// another turn of the loop.
    private func flushUnlessReading() {
        let state = state.value
        guard !state.outgoing.isEmpty, !state.reading else { return }
        flushNow()
    }

    private func flushNow() {
        let state = state.value
        let waiting = state.outgoing
        state.outgoing = [:]
        var sent = 0
        for (socket, var datagrams) in waiting {
            guard let descriptor = state.descriptors[socket] else { continue }
            let outcome = state.sender.send(datagrams, on: descriptor)
            sent += outcome.sent
            for failure in outcome.failed { state.sendErrors[failure.errno, default: 0] += 1 }
            if let blocked = outcome.blockedFrom {
                // The send buffer is full: the rest waits for the next flush (at most a tick),
                // the oldest dropped beyond a bound, as the network would.
                datagrams.removeFirst(blocked)
                let excess = datagrams.count - Self.sendBacklogLimit
                if excess > 0 {
                    datagrams.removeFirst(excess)
                    state.sendBacklogDropped += excess
                }
                state.outgoing[socket] = datagrams
            }
            if !outcome.failed.isEmpty { warnAboutSendErrors(example: outcome.failed[0]) }
        }
        if sent > 0 { keepPolling() }
    }

    /// Datagrams went out: with busy polling, the loop looks at its sockets for a while yet,
    /// for the answer. (A batch of reads that sent nothing does not count as a burst: a resting
    /// loop's probes would otherwise fall, one in two, where no answer is awaited.)
    private func keepPolling() {
        guard let poll = state.value.busyPoll, poll.extend() else { return }
        loop.execute { [self] in pollOnce() }
    }

    private func pollOnce() {
        guard !state.value.stopped, let poll = state.value.busyPoll, poll.look() else { return }
        loop.execute { [self] in pollOnce() }
    }

    static let sendBacklogLimit = 8192

    /// Says, at most every 10 s, that the kernel refuses datagrams (an endpoint without a
    /// route, a firewall rule): the socket serves on, but the operator should know.
    private func warnAboutSendErrors(example: (errno: Int32, endpoint: SocketAddress)) {
        let state = state.value
        let now = NIODeadline.now()
        if let last = state.lastSendWarning, now - last < .seconds(10) { return }
        state.lastSendWarning = now
        let counts = state.sendErrors.sorted { $0.key < $1.key }.map { "\(String(cString: strerror($0.key))): \($0.value)" }
        logger.warning("datagrams refused by the kernel; the socket serves on", metadata: [
            "example": "\(example.endpoint): \(String(cString: strerror(example.errno)))", "totals": "\(counts.joined(separator: ", "))",
        ])
    }

    /// Socket `socket` is closed: nothing is sent on its descriptor again.
    func socketClosed(_ socket: Int) {
        let state = state.value
        state.descriptors[socket] = nil
        state.channels[socket] = nil
        state.outgoing[socket] = nil
    }

    /// A run of datagrams the kernel coalesced is handled: its ACKs go out now, not when the
    /// batch of reads ends. A batch of such runs can hold a whole window; acknowledged only at
    /// its end, the sender would stop and wait for each window instead of sending on.
    func runComplete(datagrams: Int) {
        let state = state.value
        state.coalescedRuns += 1
        state.coalescedDatagrams += datagrams
        // What the run made besides (SACKs in a loss, echoed data) goes with them.
        guard !state.pendingAcks.isEmpty || !state.outgoing.isEmpty else { return }
        routePendingAcks()
        flushNow()
    }

    /// Queues the pending ACKs of the batch so far for the next flush.
    private func routePendingAcks() {
        let state = state.value
        let acks = state.pendingAcks
        state.pendingAcks = [:]
        for (key, ack) in acks { try? route(ack, to: key.remote.node) }
    }

    /// A batch of reads on one of the sockets is over: what it made goes out.
    func readComplete() {
        let state = state.value
        // The batch's ACKs join what it made, still "reading" so that one flush sends them all.
        routePendingAcks()
        state.reading = false
        flushNow()
        for key in Array(state.arrived.keys) { handOverArrived(key) }
    }

    /// Gives `key`'s reader what arrived for it during this batch of reads.
    private func handOverArrived(_ key: StreamConnection.Key) {
        guard let (handle, bytes) = state.value.arrived.removeValue(forKey: key) else { return }
        handle.deliver(bytes)
    }

    private func deliver(_ packet: Packet, to local: UInt32) {
        let state = state.value
        if packet.proto == .stream {
            if let identity = state.table.identity(local) { deliverStream(packet, to: identity) }
            return
        }
        if packet.proto == .datagram && !admits(packet.source.node, to: local, port: packet.destinationPort) { return }
        if packet.proto == .control && packet.destinationPort == 0 && !packet.flags.contains(.ack) {
            // A keepalive: nothing to answer.
            if packet.sourcePort == 0 && packet.payload.isEmpty { return }
            // A ping: the pong echoes it (PROTOCOL-1.18.md §2.3).
            guard let identity = state.table.identity(local) else { return }
            let pong = Packet(
                flags: .ack, proto: .control, source: identity.address, destination: packet.source, sourcePort: 0,
                destinationPort: packet.sourcePort, sequence: packet.sequence, acknowledgment: packet.sequence &+ 1,
                payload: packet.payload)
            try? route(pong, to: packet.source.node)
            return
        }
        state.receivers[local]?(packet)
    }

    private func lookUp(_ node: UInt32) {
        let directory = directory
        let logger = logger
        let loop = loop
        Task { [self] in
            var key: Ed25519PublicKey?
            do { key = try await directory.signingKey(of: node) } catch {
                logger.warning("registry key lookup failed", metadata: ["PILOT_PEER": "\(node)", "error": "\(error)"])
            }
            loop.execute { [key] in self.perform(self.state.value.table.keyLookedUp(node, key: key, now: .now())) }
        }
    }
}

/// Reads datagrams of one socket into the fabric.
final class FabricInbound: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    private let fabric: Fabric
    private let socket: Int

    init(fabric: Fabric, socket: Int) {
        self.fabric = fabric
        self.socket = socket
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let bytes = envelope.data.readableBytesView
        guard let size = envelope.metadata?.segmentSize, size > 0, bytes.count > size else {
            fabric.received(Array(bytes), from: envelope.remoteAddress, socket: socket)
            return
        }
        // Coalesced by the kernel (UDP_GRO): datagrams of `size` bytes, the last maybe shorter.
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = min(start + size, bytes.endIndex)
            fabric.received(Array(bytes[start..<end]), from: envelope.remoteAddress, socket: socket)
            start = end
        }
        fabric.runComplete(datagrams: (bytes.count + size - 1) / size)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        fabric.readComplete()
    }

    /// NIO has closed the socket (at shutdown, or after a fatal read error): called in the same
    /// turn of the loop, before anything else could send on its descriptor, which may be reused.
    func channelInactive(context: ChannelHandlerContext) {
        fabric.socketClosed(socket)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and the like surface here; the socket serves on.
    }
}

/// A task executor that runs every job on one event loop.
final class LoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
