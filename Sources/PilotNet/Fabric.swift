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

    private let loop: any EventLoop
    private let directory: any PeerDirectory
    private let logger: Logger
    private let state: NIOLoopBoundBox<State>

    /// Loop-confined state.
    final class State {
        let table: TunnelTable
        var channels: [Int: any Channel] = [:]
        var nextSocket = 0
        var receivers: [UInt32: Receiver] = [:]
        var identities: [UInt32: TunnelIdentity] = [:]
        var ticker: RepeatedTask?
        var stopped = false

        init(table: TunnelTable) { self.table = table }
    }

    public init(group: any EventLoopGroup, directory: any PeerDirectory, timing: TunnelTable.Timing = .init(), logger: Logger) {
        loop = group.next()
        self.directory = directory
        self.logger = logger
        state = NIOLoopBoundBox.makeBoxSendingValue(State(table: TunnelTable(timing: timing)), eventLoop: loop)
    }

    /// Binds a UDP socket; returns its number (for `add(_:ownSocket:)`) and its address. The
    /// first socket bound is number 0, the shared one.
    public func bind(host: String, port: Int) async throws -> (socket: Int, address: SocketAddress) {
        let number = try await loop.submit { [state] in
            let state = state.value
            defer { state.nextSocket += 1 }
            return state.nextSocket
        }.get()
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .channelOption(.datagramVectorReadMessageCount, value: 16)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FabricInbound(fabric: self, socket: number))
                }
            }
            .bind(host: host, port: port).get()
        guard let address = channel.localAddress else {
            try? await channel.close()
            throw TunnelError.encoding("socket \(host):\(port) has no local address")
        }
        try await loop.submit { [state, loop] in
            let state = state.value
            state.channels[number] = channel
            if state.ticker == nil {
                state.ticker = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
                    self.perform(self.state.value.table.tick(now: .now()))
                }
            }
        }.get()
        return (number, address)
    }

    /// Serves `identity`: its packets go to `receiver`. With `ownSocket`, key exchanges from
    /// anyone arriving on that socket are for it (an identity that accepts strangers).
    public func add(_ identity: TunnelIdentity, ownSocket: Int? = nil, receiver: @escaping Receiver) async throws {
        try await loop.submit { [state] in
            let state = state.value
            state.identities[identity.node] = identity
            state.receivers[identity.node] = receiver
            state.table.add(identity, ownSocket: ownSocket)
        }.get()
    }

    public func remove(_ node: UInt32) async throws {
        try await loop.submit { [state] in
            let state = state.value
            state.identities[node] = nil
            state.receivers[node] = nil
            state.table.remove(node)
        }.get()
    }

    /// `local` has business with `remote` (trust, a handshake): key exchanges from it apply.
    public func relate(local: UInt32, remote: UInt32) async throws {
        try await loop.submit { [state] in state.value.table.relate(local: local, remote: remote) }.get()
    }

    /// Sends `packet` (its source is the sending identity) to node `remote`, over its session or
    /// after a key exchange with `endpoint` (or where `remote` was last seen).
    public func send(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil) async throws {
        let actions = try await loop.submit { [state] () throws -> [TunnelAction] in
            try state.value.table.send(packet, to: remote, endpoint: endpoint, now: .now())
        }.get()
        try await loop.submit { [self] in perform(actions) }.get()
    }

    public func counters() async throws -> TunnelCounters {
        try await loop.submit { [state] in state.value.table.counters }.get()
    }

    public func hasSession(local: UInt32, remote: UInt32) async throws -> Bool {
        try await loop.submit { [state] in state.value.table.hasSession(local: local, remote: remote) }.get()
    }

    /// Closes every socket and stops the timer.
    public func shutdown() async {
        let channels = try? await loop.submit { [state] () -> [any Channel] in
            let state = state.value
            state.stopped = true
            state.ticker?.cancel()
            state.ticker = nil
            defer { state.channels = [:] }
            return Array(state.channels.values)
        }.get()
        for channel in channels ?? [] { try? await channel.close() }
    }

    // MARK: On the loop

    func received(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int) {
        perform(state.value.table.receive(bytes, from: endpoint, socket: socket, now: .now()))
    }

    private func perform(_ actions: [TunnelAction]) {
        let state = state.value
        guard !state.stopped else { return }
        for action in actions {
            switch action {
            case let .send(bytes, endpoint, socket):
                guard let channel = state.channels[socket] else { continue }
                var buffer = channel.allocator.buffer(capacity: bytes.count)
                buffer.writeBytes(bytes)
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: endpoint, data: buffer), promise: nil)
            case let .deliver(local, packet):
                deliver(packet, to: local)
            case .lookUpKey(let node):
                lookUp(node)
            case let .exchangeFailed(local, remote, dropped):
                logger.notice("key exchange gave up", metadata: [
                    "PILOT_NODE": "\(local)", "PILOT_PEER": "\(remote)", "dropped": "\(dropped)"])
            }
        }
    }

    private func deliver(_ packet: Packet, to local: UInt32) {
        let state = state.value
        if packet.proto == .control && packet.destinationPort == 0 && !packet.flags.contains(.ack) {
            // A keepalive: nothing to answer.
            if packet.sourcePort == 0 && packet.payload.isEmpty { return }
            // A ping: the pong echoes it (PROTOCOL-1.18.md §2.3).
            guard let identity = state.identities[local] else { return }
            let pong = Packet(
                flags: .ack, proto: .control, source: identity.address, destination: packet.source, sourcePort: 0,
                destinationPort: packet.sourcePort, sequence: packet.sequence, acknowledgment: packet.sequence &+ 1,
                payload: packet.payload)
            if let actions = try? state.table.send(pong, to: packet.source.node, now: .now()) { perform(actions) }
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
        fabric.received(Array(envelope.data.readableBytesView), from: envelope.remoteAddress, socket: socket)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and the like surface here; the socket serves on.
    }
}
