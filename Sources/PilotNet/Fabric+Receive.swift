import Logging
import NIOCore
import PilotCrypto
import PilotWire

extension Fabric {
    /// A datagram from `endpoint` on socket `socket`, read in a batch: what the tunnels make
    /// of it is done, and what that sends waits for the batch's end (`readComplete`).
    func received(_ bytes: ByteBufferView, from endpoint: SocketAddress, socket: Int) {
        let state = state.value
        state.reading = true
        var datagram = state.datagram
        state.datagram = []
        datagram.removeAll(keepingCapacity: true)
        if bytes.withContiguousStorageIfAvailable({ datagram.append(contentsOf: $0) }) == nil { datagram.append(contentsOf: bytes) }
        perform(state.table.receive(datagram, from: endpoint, socket: socket, now: .now()))
        state.datagram = datagram
    }

    func perform(_ actions: TunnelActions) {
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
            case let .resolveEndpoint(local, remote):
                resolveEndpoint(of: remote, asking: local)
            case let .exchangeFailed(local, remote, dropped):
                logger.notice("key exchange gave up", metadata: [
                    "PILOT_NODE": "\(local)", "PILOT_PEER": "\(remote)", "dropped": "\(dropped)"])
            case let .pathChanged(remote, relayed):
                logger.info(relayed ? "relaying through the beacon" : "direct path", metadata: ["PILOT_PEER": "\(remote)"])
                resumeStreams(to: remote)
            case let .fromBeacon(message, socket):
                state.beaconReceiver?(message, socket)
            case .wake(let local):
                state.wakesAsked[local] = .now()
                state.wakeReceiver?(local)
            case .timerDue:
                armDueTimer()
            }
        }
    }

    /// Streams to `remote`, whose path just changed, send what they lost on the old path now
    /// (`StreamConnection.pathChanged`) instead of when their backed-off timers say.
    func resumeStreams(to remote: UInt32) {
        let now = NIODeadline.now()
        for (key, entry) in state.value.streams.entries where key.remote.node == remote {
            let outputs = entry.connection.pathChanged(now: now)
            if !outputs.isEmpty { handle(outputs, for: key) }
        }
    }

    func lookUp(_ node: UInt32) {
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

    /// A direct upgrade of relayed `remote`: where the registry says it is, as `local` asks; the
    /// table sends the punch request, and the probe timer its probes.
    func resolveEndpoint(of remote: UInt32, asking local: UInt32) {
        let directory = directory
        let logger = logger
        let loop = loop
        Task { [self] in
            var endpoint: SocketAddress?
            do { endpoint = try await directory.endpoint(of: remote, asking: local) } catch {
                logger.debug("resolve for a direct upgrade failed", metadata: ["PILOT_NODE": "\(local)", "PILOT_PEER": "\(remote)", "error": "\(error)"])
            }
            loop.execute { [endpoint] in
                self.perform(self.state.value.table.endpointResolved(remote, endpoint: endpoint, now: .now()))
                self.armDueTimer()
            }
        }
    }

    /// Sets the timer for what the table has due next (`TunnelTable.nextDue`: upgrade probes,
    /// first exchanges that waited for their punch), unless one is set for that time or
    /// earlier: it fires every 200 ms while bursts of probes last, and not at all otherwise.
    func armDueTimer() {
        let state = state.value
        guard !state.stopped, let due = state.table.nextDue else { return }
        if let armed = state.dueTimer {
            if armed.deadline <= due { return }
            armed.task.cancel()
        }
        let task = loop.scheduleTask(deadline: due) { [self] in
            self.state.value.dueTimer = nil
            perform(self.state.value.table.sendDue(now: .now()))
            armDueTimer()
        }
        state.dueTimer = (due, task)
    }

    func deliver(_ packet: Packet, to local: UInt32) {
        let state = state.value
        if packet.proto == .stream {
            if let identity = state.table.identity(local) { deliverStream(packet, to: identity) }
            return
        }
        if packet.proto == .datagram && !admits(packet.source.node, to: local, port: packet.destinationPort) { return }
        if packet.proto == .control && packet.destinationPort == 0 && !packet.flags.contains(.ack) {
            // A keepalive: nothing to answer.
            if packet.sourcePort == 0 && packet.payload.isEmpty { return }
            // A ping: the pong echoes it (docs/PROTOCOL.md §3.9).
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

    /// A batch of reads on one of the sockets is over: what it made goes out.
    func readComplete() {
        let state = state.value
        // The batch's ACKs join what it made, still "reading" so that one flush sends them all.
        routePendingAcks()
        state.reading = false
        flushNow()
        for key in Array(state.arrived.keys) { handOverArrived(key) }
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
    func routePendingAcks() {
        let state = state.value
        let acks = state.pendingAcks
        state.pendingAcks = [:]
        for (key, ack) in acks { try? route(ack, to: key.remote.node) }
    }

    /// Gives `key`'s reader what arrived for it during this batch of reads.
    func handOverArrived(_ key: StreamConnection.Key) {
        guard let (handle, bytes) = state.value.arrived.removeValue(forKey: key) else { return }
        handle.deliver(bytes)
    }

    /// Socket `socket` is closed: nothing is sent on its descriptor again.
    func socketClosed(_ socket: Int) {
        let state = state.value
        state.descriptors[socket] = nil
        state.channels[socket] = nil
        state.outgoing[socket] = nil
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
            fabric.received(bytes, from: envelope.remoteAddress, socket: socket)
            return
        }
        // Coalesced by the kernel (UDP_GRO): datagrams of `size` bytes, the last maybe shorter.
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = min(start + size, bytes.endIndex)
            fabric.received(bytes[start..<end], from: envelope.remoteAddress, socket: socket)
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
