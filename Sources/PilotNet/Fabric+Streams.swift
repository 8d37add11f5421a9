import Logging
public import NIOCore
public import PilotWire

extension Fabric {
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

    /// The ports identity `node` listens on (its services' and any bound), in order.
    public func listeningPorts(of node: UInt32) async throws -> [UInt16] {
        try await loop.submit { [state] in (state.value.streams.listeners[node] ?? [:]).keys.sorted() }.get()
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
            connection.id = state.streams.takeID()
            let handle = StreamHandle(key: key, id: connection.id, fabric: self)
            state.streams.insert(PortTable.Entry(connection: connection, handle: handle, dialed: promise), for: key)
            state.gate.dialled(remote.node, from: node, now: .now())
            // The SYN goes out through the tunnel (after a key exchange if there is no session).
            for case .packet(let syn) in outputs {
                do { try route(syn, to: remote.node, endpoint: endpoint) } catch {
                    state.streams.remove(key)
                    handle.abandon()
                    promise.fail(error)
                }
            }
        }
        return try await promise.futureResult.get()
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

    /// A stream packet for identity `local`: to its connection, or a new one on a listening
    /// port, or answered with RST.
    func deliverStream(_ packet: Packet, to local: TunnelIdentity) {
        logger.trace("stream in", metadata: Self.traceMetadata(packet))
        let streams = state.value.streams
        let key = StreamConnection.Key(local: local.address, localPort: packet.destinationPort, remote: packet.source, remotePort: packet.sourcePort)
        if let entry = streams.entries[key] {
            // The window follows the reader: what it has not read (arrived in this batch or
            // before), or for the echo service what it has not yet sent back.
            let connection = entry.connection
            if let handle = entry.handle { connection.readerBacklog = readerBacklog(key, handle) }
            // An echo stream's share of the budget is reckoned from what the others hold now,
            // not at the last tick: streams filling at once cannot each take the whole rest.
            let heldBefore = entry.echoes ? connection.unacknowledgedBytes : 0
            if entry.echoes { connection.holdLimit = echoLimit(others: state.value.echoHeld - heldBefore) }
            handle(connection.receive(packet, now: .now()), for: key)
            if entry.echoes { state.value.echoHeld += connection.unacknowledgedBytes - heldBefore }
            // The reader is far behind: it says when it has caught up (or, if it caught up
            // meanwhile, the window is said to be open now).
            if connection.readerBacklog > ReadBacklog.farBehind, let handle = entry.handle, handle.windowNarrowed() {
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
        // handshake port and the ports the identity has made public (or, for a while after this
        // identity dialled it, to its data-exchange port: the reply window); otherwise silence,
        // as for a port behind a firewall.
        guard state.value.gate.admitsStream(packet.source.node, to: local.node, port: packet.destinationPort, now: .now()) else { return }
        let trusted = state.value.gate.trusts(local: local.node, remote: packet.source.node)
        guard streams.admitSyn(to: local.node, from: packet.source.node, trusted: trusted, now: .now()) else { return }
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
            streams.insert(PortTable.Entry(connection: connection, handle: nil), for: key)
            handle(outputs, for: key)
        case .accept(let acceptor):
            connection.id = streams.takeID()
            let handle = StreamHandle(key: key, id: connection.id, fabric: self)
            streams.insert(PortTable.Entry(connection: connection, handle: handle), for: key)
            self.handle(outputs, for: key)
            acceptor(handle)
        }
    }

    /// Does what a connection asked: packets into the tunnel, events to its handle.
    func handle(_ outputs: StreamConnection.Outputs, for key: StreamConnection.Key) {
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
                    // not one per segment. (Appended in place: `arrived[key, default:]` would
                    // allocate its default's closure for every segment.)
                    if let index = state.arrived.index(forKey: key) {
                        state.arrived.values[index].bytes += bytes
                    } else {
                        state.arrived[key] = (handle, bytes)
                    }
                } else {
                    handle.deliver(bytes)
                }
            case .finished:
                if entry.echoes { handle(entry.connection.close(now: .now()), for: key) }
                handOverArrived(key)
                entry.handle?.peerFinished()
            case .closed(let reason):
                state.pendingAcks[key] = nil
                handOverArrived(key)
                entry.handle?.markClosed()
                entry.dialed?.fail(StreamError(reason ?? "closed before it was accepted"))
                for writer in entry.writers { writer.promise.fail(StreamError(reason ?? "stream is closed")) }
                entry.handle?.closed(reason: reason)
                state.streams.remove(key)
            }
        }
    }

    func tickStreams() {
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

    /// What one echo stream may hold while the others hold `others`: the rest of the budget,
    /// between the floor and the limit of any stream.
    func echoLimit(others: Int) -> Int {
        min(StreamConnection.receiveBufferLimit, max(Self.echoFloor, echoBudget - others))
    }

    func sendReset(for packet: Packet, from local: TunnelIdentity) {
        state.value.streams.resetsSent += 1
        let reset = Packet(
            flags: [.rst, .ack], proto: .stream, source: local.address, destination: packet.source, sourcePort: packet.destinationPort,
            destinationPort: packet.sourcePort, sequence: 0, acknowledgment: packet.sequence &+ 1)
        try? route(reset, to: packet.source.node)
    }

    /// On the loop: what `key`'s reader has not read, counting what arrived for it in this
    /// batch of reads and is not handed over yet.
    func readerBacklog(_ key: StreamConnection.Key, _ handle: StreamHandle) -> Int {
        handle.unread + (state.value.arrived[key]?.bytes.count ?? 0)
    }

    /// A stream packet as `--log-level trace` shows it.
    static func traceMetadata(_ packet: Packet) -> Logger.Metadata {
        [
            "from": "\(packet.source):\(packet.sourcePort)", "to": "\(packet.destination):\(packet.destinationPort)",
            "flags": "\(packet.flags)", "seq": "\(packet.sequence)", "ack": "\(packet.acknowledgment)", "window": "\(packet.window)",
            "bytes": "\(packet.payload.count)",
        ]
    }

    /// Every identity of this fabric, added before or after, serves `port` on the loop itself:
    /// every byte a stream brings is sent back, and the stream is closed when the peer
    /// finishes. No task and no hop, so a probe costs only the loop's turn; the streams share
    /// the fabric's `echoBudget`. Which port, if any, is the services' business (`EchoService`).
    public func echo(port: UInt16) async throws {
        try await loop.submit { [state] in
            let state = state.value
            state.echoedPorts.insert(port)
            for node in state.receivers.keys { state.streams.listeners[node, default: [:]][port] = .echo }
        }.get()
    }
}
