import FoundationEssentials
import Logging
import PilotCrypto
import PilotNet
import PilotServices
import PilotWire

/// The commands of an identity's socket that use the network: streams and datagrams to any
/// port, messages, files and events to a peer's services, and `ping`, `bench`, `connections`,
/// `peers` (broadcasts: `DataCommands+Broadcast.swift`). Each joins the identity to the network
/// first if it was not, and returns the reply the command answers with.
struct DataCommands: Sendable {
    let presence: Presence
    let pool: IdentityPool
    let datagrams: DatagramPorts
    /// The token a broadcast must carry (`admin-token-file`), as its digest; nil: broadcasts are
    /// refused.
    let adminToken: SecretDigest?
    let logger: Logger

    /// The commands of `presence`'s identities; broadcasts need `adminToken`.
    init(presence: Presence, pool: IdentityPool, datagrams: DatagramPorts, adminToken: String?, logger: Logger) {
        self.presence = presence
        self.pool = pool
        self.datagrams = datagrams
        self.adminToken = adminToken.map(SecretDigest.init(of:))
        self.logger = logger
    }

    // MARK: Streams and datagrams to any port

    /// `send TARGET PORT --data`: a stream to `port`, the data, and one read of the answer (none
    /// if the peer sends nothing within `wait`).
    func send(from name: String, to target: Address, port: UInt16, data: [UInt8], wait: Duration) async throws -> StreamSent {
        let stream = try await presence.dial(from: name, to: target, port: port)
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
        let identity = try await presence.join(name)
        guard try await !presence.fabric.isListening(node: identity.node, port: port) else {
            throw ControlFailure(.alreadyExists, "port \(port) of \(name) is in use")
        }
        let (arrivals, continuation) = AsyncStream.makeStream(of: StreamHandle.self)
        try await presence.fabric.listen(node: identity.node, port: port) { continuation.yield($0) }
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
        try await presence.fabric.unlisten(node: identity.node, port: port)
        return PortArrivals(kind: .streams, port: port, arrivals: messages, timeout: messages.count < count)
    }

    /// `listen PORT`: the datagrams that arrive on `port` of `name`, up to `count`, for `timeout`.
    func listenDatagrams(on name: String, port: UInt16, count: Int, timeout: Duration) async throws -> PortArrivals {
        _ = try await presence.join(name)
        guard let packets = datagrams.listen(name, port: port) else { throw ControlFailure(.alreadyExists, "port \(port) of \(name) is in use") }
        defer { datagrams.stop(name, port: port) }
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
        let identity = try await presence.join(name)
        let endpoint = try await presence.endpoint(of: target, for: name)
        let packet = Packet(
            proto: .datagram, source: identity.address, destination: target, sourcePort: UInt16.random(in: 49152...65535),
            destinationPort: port, payload: data)
        try await presence.fabric.send(packet, to: target.node, endpoint: endpoint)
        return DatagramSent(target: target.description, to: target.description, port: port, bytes: data.count)
    }

    // MARK: Services of a peer

    /// `send-message`: one tagged frame to `target`'s port 1001, and its ACK.
    /// The reply's `target` is the address; the command puts back the target as it was named.
    func sendMessage(
        from name: String, to target: Address, kind: DataExchangeFrame.Kind, data: [UInt8], replyTo: String? = nil, timeout: Duration
    ) async throws -> MessageSent {
        // 32 lower-case hex digits, as 1.18's message ids.
        let messageID = (0..<16).map { _ in
            let byte = UInt8.random(in: 0...255)
            return String(byte >> 4, radix: 16) + String(byte & 0xF, radix: 16)
        }.joined()
        let frame = DataExchangeFrame.tagged(DataExchangeFrame(kind: kind, payload: data), messageID: messageID, replyTo: replyTo)
        let ack = try await exchange(from: name, to: target, frame, timeout: timeout)
        return MessageSent(
            target: target.description, to: target.description, type: kind.description.lowercased(), bytes: data.count, ack: ack,
            messageID: messageID, replyTo: replyTo)
    }

    /// `send-file`: one FILE frame to `target`'s port 1001, and its ACK.
    /// The reply's `target` is the address; the command puts back the target as it was named.
    func sendFile(from name: String, to target: Address, fileName: String, contents: [UInt8], timeout: Duration) async throws -> FileSent {
        let ack = try await exchange(from: name, to: target, DataExchangeFrame.file(name: fileName, contents: contents), timeout: timeout)
        return FileSent(target: target.description, to: target.description, name: fileName, bytes: contents.count, ack: ack)
    }

    /// One data-exchange frame to `target` and the text of its answer, which must be an ACK.
    private func exchange(from name: String, to target: Address, _ frame: DataExchangeFrame, timeout: Duration) async throws -> String {
        let identity = try await presence.join(name)
        let endpoint = try await presence.endpoint(of: target, for: name)
        return try await withTimeout(timeout) { [fabric = presence.fabric] () async throws -> String in
            let stream = try await fabric.dial(from: identity.node, to: target, port: DataExchangeService.port, endpoint: endpoint)
            return try await DataExchangeService.exchange(frame, over: stream)
        }
    }

    /// `subscribe TARGET TOPIC`: subscribes to `target`'s broker and collects events until
    /// `count` arrived or `timeout` passes.
    func subscribe(from name: String, to target: Address, topic: String, count: Int, timeout: Duration) async throws -> EventsReceived {
        let stream = try await presence.dial(from: name, to: target, port: EventStreamService.port)
        let events = await collect(within: timeout) { (add: @Sendable (EventsReceived.Event) -> Int) in
            try? await EventStreamService.subscribe(over: stream, to: topic) { frame in
                add(EventsReceived.Event(topic: frame.topic, data: String(decoding: frame.payload, as: UTF8.self), bytes: frame.payload.count)) < count
            }
        }
        try? await stream.close()
        return EventsReceived(target: target.description, topic: topic, events: events, timeout: events.count < count)
    }

    /// `publish TARGET TOPIC --data`: subscribes to the topic (a stream's first event always
    /// does), publishes one event, and closes once it is delivered to the broker.
    func publish(from name: String, to target: Address, topic: String, data: [UInt8]) async throws -> EventPublished {
        let stream = try await presence.dial(from: name, to: target, port: EventStreamService.port)
        try await EventStreamService.publish(over: stream, topic: topic, payload: data)
        return EventPublished(target: target.description, topic: topic, bytes: data.count)
    }

    // MARK: Measures and state

    /// `pilotctl ping`, as 1.18 does it: each probe opens a stream to the target's echo port,
    /// writes `ping-<n>`, times the echo and closes.
    func ping(from name: String, target: Address, count: Int, timeout: Duration) async throws -> [PingReport.Probe] {
        let identity = try await presence.join(name)
        let endpoint = try await presence.endpoint(of: target, for: name)
        var results: [PingReport.Probe] = []
        for sequence in 0..<count {
            let probe = Array("ping-\(sequence)".utf8)
            do {
                // Run on the fabric's loop: no thread switch between the loop and this task, so
                // the time is the network's and the peer's.
                let (echoed, elapsed) = try await withTimeout(timeout) { [fabric = presence.fabric] in
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

    /// `traceroute TARGET`, as 1.18's: a stream to the target's echo port, timed until it is
    /// set up, then three round trips of 7 bytes on it; and the path frames take (`direct`,
    /// `relay`, or `local`: another identity of this host).
    func traceroute(from name: String, to target: Address, timeout: Duration) async throws -> TracerouteReport {
        let identity = try await presence.join(name)
        let endpoint = try await presence.endpoint(of: target, for: name)
        let (setup, samples) = try await withTimeout(timeout) { [fabric = presence.fabric] () async throws -> (Duration, [Duration]) in
            try await withTaskExecutorPreference(fabric.taskExecutor) {
                let started = ContinuousClock.now
                let stream = try await fabric.dial(from: identity.node, to: target, port: Port.echo, endpoint: endpoint)
                let setup = started.duration(to: .now)
                var samples: [Duration] = []
                var events = stream.events.makeAsyncIterator()
                for index in 0..<3 {
                    let probe = Array("trace-\(index)".utf8)
                    let sent = ContinuousClock.now
                    try await stream.write(probe)
                    var received = 0
                    while received < probe.count {
                        guard case .data(let bytes) = await events.next() else { throw StreamError("the echo stream ended") }
                        received += bytes.count
                    }
                    samples.append(sent.duration(to: .now))
                }
                try? await stream.close()
                return (setup, samples)
            }
        }
        let peer = try await presence.fabric.peers(of: identity.node).first { $0.node == target.node }
        let path = peer.map { $0.relayed ? "relay" : "direct" } ?? "local"
        func milliseconds(_ duration: Duration) -> Double { (duration.inSeconds * 1_000_000).rounded() / 1000 }
        return TracerouteReport(
            target: target.description, to: target.description, setupMilliseconds: milliseconds(setup),
            samples: samples.map { TracerouteReport.Sample(bytes: 7, milliseconds: milliseconds($0)) }, path: path)
    }

    /// `bench TARGET [MB]`, as 1.18's: MB mebibytes to the target's echo port in 4096-byte
    /// writes, timed until every byte has come back.
    func bench(from name: String, to target: Address, megabytes: Int, timeout: Duration) async throws -> BenchReport {
        let identity = try await presence.join(name)
        let endpoint = try await presence.endpoint(of: target, for: name)
        let total = megabytes << 20
        let (seconds, sendSeconds, received) = try await withTimeout(timeout) { [fabric = presence.fabric] () async throws -> (Double, Double, Int) in
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
            let sent = started.duration(to: .now).inSeconds
            let (received, mismatch) = await reader.value
            try? await stream.close()
            if let mismatch { throw StreamError("the echo differs from what was sent within bytes \(mismatch)..<\(mismatch + BenchPattern.chunk * 4)") }
            guard received >= total else { throw StreamError("the echo stopped after \(received) of \(total) bytes") }
            return (started.duration(to: .now).inSeconds, sent, received)
        }
        return BenchReport(
            target: target.description, to: target.description, bytes: total, receivedBytes: received, seconds: (seconds * 1000).rounded() / 1000,
            sendMilliseconds: Int((sendSeconds * 1000).rounded()), megabytesPerSecond: (Double(total) / 1e6 / seconds * 100).rounded() / 100)
    }

    /// `disconnect`: closes `name`'s stream `connection` (its `id` in `connections`).
    func disconnect(_ name: String, connection: Int) async throws {
        guard let identity = await presence.joinedIdentity(name), await presence.fabric.closeStream(of: identity.node, id: connection) else {
            throw ControlFailure(.notFound, "disconnect: \(name) has no stream \(connection) (see pilotctl connections)")
        }
    }

    /// `connections`: `name`'s streams (none if it never joined the network).
    func connections(of name: String) async throws -> ConnectionList {
        guard let identity = await presence.joinedIdentity(name) else { return ConnectionList(connections: []) }
        return ConnectionList(connections: try await presence.fabric.connections(of: identity.node).map { connection in
            let figures = connection.figures, traffic = figures.traffic
            let counted: [String: Int] = [
                "id": figures.id, "bytes_sent": traffic.bytesSent, "bytes_recv": traffic.bytesReceived, "segs_sent": traffic.segmentsSent,
                "segs_recv": traffic.segmentsReceived, "sack_sent": traffic.sacksSent, "sack_recv": traffic.sacksReceived,
                "fast_retx": traffic.fastRetransmits, "retransmits": figures.retransmitted, "dup_acks": figures.duplicateAcks,
                "cong_win": figures.congestionWindow, "ssthresh": figures.slowStartThreshold, "peer_recv_win": figures.peerWindow,
                "recv_win": figures.receiveWindow, "unacked": figures.sentUnacknowledged, "in_flight": figures.inFlight,
                "ooo_buf": figures.outOfOrder, "srtt_ms": Int((figures.smoothedRTT * 1000).rounded()),
                "rttvar_ms": Int((figures.rttVariance * 1000).rounded()),
                "snd_una": Int(figures.sendUnacknowledged), "snd_nxt": Int(figures.sendNext), "rcv_nxt": Int(figures.receiveNext),
                "sacked_segs": figures.sackedSegments, "lost_segs": figures.lostSegments, "reneged": figures.reneged,
                "outstanding_limit": figures.outstandingLimit ?? 0, "since_progress_ms": Int((figures.secondsSinceProgress * 1000).rounded()),
            ]
            return ConnectionList.Connection(
                localPort: connection.localPort, remoteAddress: connection.remote.description, remotePort: connection.remotePort,
                state: connection.state, unacknowledgedBytes: connection.unacknowledgedBytes, figures: counted.mapValues(Int64.init),
                inRecovery: figures.inRecovery, sacked: figures.sackedRanges.map { "\($0.first)-\($0.end)" },
                peerIsPilotHost: figures.peerIsPilotHost)
        })
    }

    /// `peers`: the nodes `name` has a tunnel with.
    func peers(of name: String) async throws -> PeerList {
        guard let identity = await presence.joinedIdentity(name) else { return PeerList(peers: []) }
        return PeerList(peers: try await presence.fabric.peers(of: identity.node).map { peer in
            PeerList.Peer(
                nodeID: peer.node, address: Address(node: peer.node).description, endpoint: peer.endpoint, trusted: peer.trusted,
                relayed: peer.relayed, lastHeardSeconds: (peer.secondsSinceHeard * 10).rounded() / 10,
                pathSeconds: (peer.secondsOnPath * 10).rounded() / 10)
        })
    }
}
