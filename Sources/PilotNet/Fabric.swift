public import Logging
public import NIOCore
import NIOPosix
public import PilotCrypto
public import PilotWire

/// Where the data plane learns a remote node's Ed25519 key and its endpoint (the registry, in
/// pilot-host).
public protocol PeerDirectory: Sendable {
    /// The key the registry holds for `node`, or nil when it knows no such node.
    func signingKey(of node: UInt32) async throws -> Ed25519PublicKey?

    /// Where `node`'s tunnel endpoint is, as the registry answers local identity `local` (a
    /// signed `resolve`), or nil for a node registered relay-only. Asked every 15 s for each
    /// relayed remote, to try it directly again (docs/PROTOCOL.md §5.7).
    func endpoint(of node: UInt32, asking local: UInt32) async throws -> SocketAddress?
}

extension PeerDirectory {
    /// No registry to ask: a relayed remote is tried at the endpoint it was last seen at, if any.
    public func endpoint(of node: UInt32, asking local: UInt32) async throws -> SocketAddress? { nil }
}

/// The shared UDP sockets and the tunnel table behind them, on one event loop. Datagrams are
/// read in batches; each goes through `TunnelTable` and what it decides is done here: frames
/// sent, registry keys fetched, packets handed to the identity they are for. Control pings to
/// an identity are answered here; keepalives are swallowed.
public final class Fabric: Sendable {
    /// Receives the packets for one identity, on the fabric's event loop: return quickly.
    public typealias Receiver = @Sendable (Packet) -> Void

    /// Receives the beacon's messages (docs/PROTOCOL.md §9) that are not the tunnels' (pokes,
    /// discover replies), with the socket they came in on, on the fabric's event loop: return
    /// quickly. Only those from the beacon's address (`useBeacon`) get here.
    public typealias BeaconReceiver = @Sendable (BeaconMessage, _ socket: Int) -> Void

    /// Receives the node id of a resting identity (see `rest`) that a peer wants, on the
    /// fabric's event loop: return at once; add the identity, relate it, then call `woke`.
    public typealias WakeReceiver = @Sendable (UInt32) -> Void

    let loop: any EventLoop
    let directory: any PeerDirectory
    let logger: Logger
    let state: NIOLoopBoundBox<State>
    let echoBudget: Int

    /// What the echo streams of a fabric may hold in all. A public identity's echo port is open
    /// to strangers: 1024 streams whose echo is never acknowledged, each holding
    /// `StreamConnection.receiveBufferLimit`, would be 2 GiB. Past the budget each echo stream
    /// keeps `echoFloor` (a ping still gets through), so the most held is about the budget plus
    /// a floor per stream (64 MiB at the per-port limit).
    public static let defaultEchoBudget = 64 << 20

    static let echoFloor = 64 << 10

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
        /// The timer of what the table has due next (`TunnelTable.nextDue`), and its deadline.
        var dueTimer: (deadline: NIODeadline, task: Scheduled<Void>)?
        let streams = PortTable()
        var gate = TrustGate()
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
        /// The array each datagram read is copied into for the tunnels, kept for the next one:
        /// no allocation per datagram unless something the tunnels did still holds the last.
        var datagram: [UInt8] = []
        /// The last pure ACK of each stream made during this batch of reads, sent when it ends.
        var pendingAcks: [StreamConnection.Key: Packet] = [:]
        /// Stream bytes that arrived during this batch of reads, by stream, for its reader.
        var arrived: [StreamConnection.Key: (handle: StreamHandle, bytes: [UInt8])] = [:]
        /// Packets between identities of this fabric, delivered without a tunnel.
        var localPackets = 0
        /// What the echo streams hold in all (echoes not yet acknowledged), as of the last tick.
        var echoHeld = 0
        /// Ports every identity serves by echoing on the loop (`echo(port:)`).
        var echoedPorts: Set<UInt16> = []
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
    static func boundSocket(_ address: SocketAddress) throws -> Int32 {
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
    func coalesce(_ channel: any Channel, socket: Int) async {
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

    func open(
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
                    let now = NIODeadline.now()
                    self.perform(self.state.value.table.tick(now: now))
                    self.state.value.gate.closeReplyWindows(now: now)
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
    /// a restart, from one of those asks for it (`onWake`) instead of being dropped. None
    /// forgets the identity.
    public func rest(_ identities: [(local: UInt32, remotes: [UInt32])]) async throws {
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

    /// Runs `body` every `interval` on the loop that carries the traffic (a watchdog ping: if
    /// the loop wedges, the pings stop). Cancel the returned task to stop.
    public func onLoop(every interval: TimeAmount, _ body: @escaping @Sendable () -> Void) -> RepeatedTask {
        loop.scheduleRepeatedTask(initialDelay: .zero, delay: interval) { _ in body() }
    }

    /// Serves `identity`: its datagrams and control packets go to `receiver`, its streams to the
    /// ports it listens on (and the fabric's echoed ports, see `echo(port:)`). With `ownSocket`, key exchanges from anyone
    /// arriving on that socket are for it (an identity that accepts strangers).
    public func add(_ identity: TunnelIdentity, ownSocket: Int? = nil, receiver: @escaping Receiver) async throws {
        try await loop.submit { [state] in
            let state = state.value
            state.receivers[identity.node] = receiver
            state.table.add(identity, ownSocket: ownSocket)
            for port in state.echoedPorts { state.streams.listeners[identity.node, default: [:]][port] = .echo }
        }.get()
    }

    /// Takes identity `node` off the fabric: its streams are reset, its ports, trust and tunnels forgotten.
    public func remove(_ node: UInt32) async throws {
        try await loop.submit { [self, state] in
            let state = state.value
            state.receivers[node] = nil
            state.streams.listeners[node] = nil
            state.gate.forget(node)
            for (key, entry) in state.streams.entries where key.local.node == node {
                self.handle(entry.connection.reset(), for: key)
                state.streams.remove(key)
            }
            state.table.remove(node)
        }.get()
    }

    /// Closes socket `socket` (one bound for an identity of its own, after the identity left);
    /// datagrams still queued for it are dropped. The shared socket (0) is closed only by
    /// `shutdown`.
    public func closeSocket(_ socket: Int) async {
        guard socket != 0 else { return }
        let channel = try? await loop.submit { [state] () -> (any Channel)? in
            let state = state.value
            state.descriptors[socket] = nil
            state.outgoing[socket] = nil
            return state.channels.removeValue(forKey: socket)
        }.get()
        // Closing the descriptor takes it out of the busy-poll set too.
        if let channel { try? await channel.close() }
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

    /// `identity` replaces the one of its node (`TunnelIdentity.resigned`): its sessions,
    /// streams and ports stay; exchanges from now on are its.
    public func resign(_ identity: TunnelIdentity) async throws {
        try await loop.submit { [state] in state.value.table.replace(identity) }.get()
    }

    /// prefer-direct for identity `local` and node `remote` (`TunnelTable.preferDirect`): a
    /// relayed session is tried directly at once, at `endpoint` (where the registry says
    /// `remote` is; nil: where it was last seen directly).
    public func preferDirect(local: UInt32, remote: UInt32, endpoint: SocketAddress?) async throws -> TunnelTable.DirectPreference {
        try await loop.submit { [self] in
            let now = NIODeadline.now()
            let found = state.value.table.preferDirect(local: local, remote: remote, now: now)
            if found.upgrading {
                perform(state.value.table.endpointResolved(remote, endpoint: endpoint, now: now))
                armDueTimer()
            }
            return found
        }.get()
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
            state.dueTimer?.task.cancel()
            state.dueTimer = nil
            for entry in state.streams.entries.values {
                entry.handle?.markClosed()
                entry.dialed?.fail(StreamError("the fabric is shut down"))
                for writer in entry.writers { writer.promise.fail(StreamError("the fabric is shut down")) }
                entry.handle?.abandon()
            }
            state.streams.entries = [:]
            state.arrived = [:]
            state.descriptors = [:]
            defer { state.channels = [:] }
            return Array(state.channels.values)
        }.get()
        for channel in channels ?? [] { try? await channel.close() }
    }
}
