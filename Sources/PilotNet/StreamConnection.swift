public import NIOCore
public import PilotWire

/// One reliable stream between a local identity's port and a remote node's port, as 1.18 runs
/// it (PROTOCOL.md §3, PROTOCOL-1.18.md §2.2): ISN 0, 1152-byte segments, windows counted in
/// segments, cumulative ACKs with SACK blocks in an ACK's payload, retransmission on an RFC 6298
/// timer with backoff, fast retransmit on three duplicate ACKs, FIN sent only once everything is
/// acknowledged, a FIN answered once with FIN|ACK and a FIN|ACK never answered, TIME_WAIT.
///
/// No I/O and no clock of its own: packets, writes and time in; `StreamOutput`s out.
public final class StreamConnection {
    public enum State: Sendable, Equatable {
        case synSent, established, timeWait, closed
    }

    /// What the connection asks for after an event.
    public enum Output: Sendable, Equatable {
        case packet(Packet)
        /// Bytes that arrived in order.
        case data([UInt8])
        /// The peer finished sending (FIN): no more data.
        case finished
        /// The dial succeeded.
        case connected
        /// The connection is over: `reason` is nil for an orderly close.
        case closed(reason: String?)
    }

    public struct Key: Hashable, Sendable {
        public let local: Address
        public let localPort: UInt16
        public let remote: Address
        public let remotePort: UInt16

        public init(local: Address, localPort: UInt16, remote: Address, remotePort: UInt16) {
            self.local = local
            self.localPort = localPort
            self.remote = remote
            self.remotePort = remotePort
        }

        /// Two words instead of six fields: every packet of a stream looks its key up.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(UInt64(local.network) << 48 | UInt64(local.node) << 16 | UInt64(localPort))
            hasher.combine(UInt64(remote.network) << 48 | UInt64(remote.node) << 16 | UInt64(remotePort))
        }
    }

    public static let segmentSize = 1152
    public static let receiveSlots = 512
    /// The most a reader may leave unread: the window closes as its backlog nears this, and
    /// data past it is dropped (the sender's probes find the window open again once it reads).
    /// 2 MiB: at 250 MB/s, 8 ms of a reader's task waiting for a CPU (1 MiB shut the window of a
    /// reader that kept up, on a 2-vCPU machine whose loops were busy).
    public static let receiveBufferLimit = 2 << 20
    static let outOfOrderLimit = 128
    static let initialWindow = 10
    static let maxRetransmissions = 8
    static let synAttempts = 7
    static let timeWait: TimeAmount = .seconds(10)
    static let delayedAck: TimeAmount = .milliseconds(40)
    /// An established stream with nothing sent for this long gets an empty ACK (1.18: 30 s).
    static let keepalive: TimeAmount = .seconds(30)
    /// An established stream nothing arrived on for this long is over (1.18: 120 s); this
    /// also ends a stream whose peer's FIN was lost, which 1.18 never retransmits.
    static let idleTimeout: TimeAmount = .seconds(120)

    struct Segment {
        let sequence: UInt32
        let payload: [UInt8]
        var sentAt: NIODeadline?
        var transmissions = 0
        /// Of those, probes of a shut window: not losses, so not counted toward giving up.
        var probes = 0
        var sacked = false
        var end: UInt32 { sequence &+ UInt32(payload.count) }
    }

    public let key: Key
    public private(set) var state: State
    // Sending.
    private var sendNext: UInt32 = 1
    /// Segments written and not yet acknowledged are `segments[head...]`; those from
    /// `firstUnsent` on were never sent. Taking from the front moves `head` (the array is
    /// compacted now and then), so a long queue costs nothing per acknowledgement.
    private var segments: [Segment] = []
    private var head = 0
    private var firstUnsent = 0
    /// How many of the sent, unacknowledged segments the peer holds (SACK).
    private var sackedCount = 0
    private var queuedBytes = 0
    private var peerWindow = StreamConnection.receiveSlots
    private var congestionWindow = StreamConnection.initialWindow
    private var slowStartThreshold = StreamConnection.receiveSlots
    private var duplicateAcks = 0
    /// While recovering from a loss: the sequence that, once acknowledged, ends the episode.
    private var recoveryPoint: UInt32?
    private var lastAck: UInt32 = 0
    private var smoothedRTT: Double?
    private var rttVariance = 0.0
    private var retransmissionTimeout: TimeAmount = .seconds(1)
    /// The timeout the round-trip measurements give, before any backoff.
    private var measuredTimeout: TimeAmount = .seconds(1)
    private var closeRequested = false
    private var finSent = false
    /// The latest send time of any segment the peer has acknowledged or SACKed (RFC 8985's
    /// RACK): a hole sent well before it is lost, one sent after it is still on its way.
    private var deliveredSentAt: NIODeadline?
    /// When data was last sent, and whether a tail-loss probe is out since the last progress.
    private var lastDataSentAt: NIODeadline?
    private var probing = false
    // Receiving.
    /// Bytes handed to the reader and not yet read, as the fabric last looked.
    public var readerBacklog = 0
    /// The most this stream may hold (unread, or for an echo its echo not yet acknowledged):
    /// `receiveBufferLimit`, unless the fabric lowers it (its echo streams share a budget).
    public var holdLimit = StreamConnection.receiveBufferLimit
    /// An echo (the echo service): its backlog is what it has echoed and the peer has not yet
    /// acknowledged, counted here after each ACK, so a peer that does not read the echo stops
    /// sending.
    public var echoesBack = false
    /// The window the last packet advertised: a shut window (0) that has room again is said
    /// at the next tick, even if the update the reader's catching up sent was lost.
    private var lastAdvertisedWindow = UInt16(StreamConnection.receiveSlots)
    /// Segments sent again (lost, or probes of a shut window), and ACKs that said our window
    /// was shut: what an operator looks at when a stream is slower than the path.
    public private(set) var retransmitted = 0
    public private(set) var shutWindowsAdvertised = 0
    /// Bytes written that were still unacknowledged when the peer finished: a flush of them
    /// cannot succeed.
    public private(set) var unacknowledgedAtPeerFin = 0
    private var receiveNext: UInt32 = 0
    private var outOfOrder: [UInt32: [UInt8]] = [:]
    private var unacknowledgedSegments = 0
    private var ackDeadline: NIODeadline?
    private var peerFinished = false
    // Timers.
    private var synSentAt: NIODeadline?
    private var synAttemptsMade = 0
    private var timeWaitUntil: NIODeadline?
    private var lastReceived: NIODeadline
    /// When a packet last went out, as of the last tick (keepalives need no finer clock).
    private var lastSent: NIODeadline
    private var sentSinceTick = false

    private init(key: Key, state: State, now: NIODeadline) {
        self.key = key
        self.state = state
        lastReceived = now
        lastSent = now
    }

    /// Opens a stream: the SYN to send.
    public static func dial(_ key: Key, now: NIODeadline) -> (StreamConnection, [Output]) {
        let connection = StreamConnection(key: key, state: .synSent, now: now)
        connection.synSentAt = now
        connection.synAttemptsMade = 1
        return (connection, [.packet(connection.packet(flags: .syn, sequence: 0, acknowledgment: 0))])
    }

    /// Accepts a SYN on a listening port: established at once (as 1.18), the SYN|ACK to send.
    public static func accept(_ syn: Packet, local: Address, now: NIODeadline) -> (StreamConnection, [Output]) {
        let key = Key(local: local, localPort: syn.destinationPort, remote: syn.source, remotePort: syn.sourcePort)
        let connection = StreamConnection(key: key, state: .established, now: now)
        connection.receiveNext = syn.sequence &+ 1
        connection.peerWindow = Int(syn.window)
        return (connection, [.packet(connection.packet(flags: [.syn, .ack], sequence: 0, acknowledgment: connection.receiveNext))])
    }

    // MARK: Events

    public func receive(_ packet: Packet, now: NIODeadline) -> [Output] {
        guard state != .closed else { return [] }
        lastReceived = now
        if packet.flags.contains(.rst) {
            state = .closed
            return [.closed(reason: synSentAt != nil ? "connection refused" : "reset by peer")]
        }
        var outputs: [Output] = []
        if state == .synSent {
            guard packet.flags.contains(.syn), packet.flags.contains(.ack), packet.acknowledgment == 1 else { return [] }
            state = .established
            synSentAt = nil
            receiveNext = packet.sequence &+ 1
            peerWindow = Int(packet.window)
            outputs.append(.connected)
            outputs.append(.packet(self.packet(flags: .ack, sequence: sendNext, acknowledgment: receiveNext)))
            outputs += transmit(now: now)
            return outputs
        }
        if packet.flags.contains(.syn) {
            // Our SYN|ACK was lost: send it again.
            if !packet.flags.contains(.ack), state == .established, sendNext == 1 {
                outputs.append(.packet(self.packet(flags: [.syn, .ack], sequence: 0, acknowledgment: receiveNext)))
            }
            return outputs
        }
        guard state == .established else {
            // TIME_WAIT: a FIN may be repeated; anything else is late.
            return []
        }
        if packet.flags.contains(.ack) && !packet.flags.contains(.fin) {
            // An ACK that shuts or opens the window is news, not a duplicate (RFC 5681 §2). Any
            // other change of the window does not count: ours moves with every segment held
            // out of order, which is when duplicates matter.
            let windowMoved = (peerWindow == 0) != (packet.window == 0)
            peerWindow = Int(packet.window)
            if let blocks = Self.sackBlocks(packet.payload) {
                markSacked(blocks)
                outputs += acknowledge(packet.acknowledgment, pure: false, now: now)
                outputs += retransmitHoles(now: now)
                outputs += transmit(now: now)
                return outputs
            }
            outputs += acknowledge(packet.acknowledgment, pure: packet.payload.isEmpty && !windowMoved, now: now)
        }
        if !packet.payload.isEmpty && !packet.flags.contains(.fin) {
            outputs += accept(data: packet.payload, at: packet.sequence, now: now)
        }
        if packet.flags.contains(.fin) {
            outputs += receiveFin(packet, now: now)
            return outputs
        }
        outputs += transmit(now: now)
        outputs += finishIfDone(now: now)
        return outputs
    }

    /// Queues `bytes` and sends what the windows allow.
    public func write(_ bytes: [UInt8], now: NIODeadline) -> [Output] {
        guard state == .established || state == .synSent, !closeRequested else { return [] }
        var start = 0
        while start < bytes.count {
            var end = min(start + Self.segmentSize, bytes.count)
            // A segment must never begin like a SACK block list (the peer would read it as one).
            if bytes[start...].starts(with: Self.sackMagic), end - start > 4 { end = start + 4 }
            segments.append(Segment(sequence: sendNext, payload: Array(bytes[start..<end])))
            queuedBytes += end - start
            sendNext &+= UInt32(end - start)
            start = end
        }
        return state == .established ? transmit(now: now) : []
    }

    /// Closes this side: the FIN goes out once everything written is acknowledged.
    public func close(now: NIODeadline) -> [Output] {
        switch state {
        case .synSent:
            state = .closed
            return [.closed(reason: nil)]
        case .established:
            closeRequested = true
            return finishIfDone(now: now)
        case .timeWait, .closed:
            return []
        }
    }

    /// Aborts with a RST.
    public func reset() -> [Output] {
        guard state != .closed else { return [] }
        let wasOpen = state != .timeWait
        state = .closed
        // Out of TIME_WAIT: nothing to tell the peer, but the stream is over all the same.
        return wasOpen ? [.packet(packet(flags: .rst, sequence: sendNext, acknowledgment: receiveNext)), .closed(reason: "reset")] : [.closed(reason: nil)]
    }

    /// Retransmissions, delayed ACKs, SYN retries, the end of TIME_WAIT. Call every ~20 ms.
    public func tick(now: NIODeadline) -> [Output] {
        if sentSinceTick {
            sentSinceTick = false
            lastSent = now
        }
        switch state {
        case .closed:
            return []
        case .timeWait:
            if let until = timeWaitUntil, now >= until {
                state = .closed
                return [.closed(reason: nil)]
            }
            return []
        case .synSent:
            guard let sentAt = synSentAt, now - sentAt >= retransmissionTimeout else { return [] }
            guard synAttemptsMade < Self.synAttempts else {
                state = .closed
                return [.closed(reason: "dial timed out")]
            }
            synAttemptsMade += 1
            synSentAt = now
            retransmissionTimeout = min(retransmissionTimeout * 2, .seconds(8))
            return [.packet(packet(flags: .syn, sequence: 0, acknowledgment: 0))]
        case .established:
            if now - lastReceived >= Self.idleTimeout {
                state = .closed
                return [.closed(reason: "idle timeout")]
            }
            var outputs: [Output] = []
            if let deadline = ackDeadline, now >= deadline { outputs.append(sendAck()) }
            if now - lastSent >= Self.keepalive { outputs.append(sendAck()) }
            if lastAdvertisedWindow == 0, !peerFinished, advertisedWindow > 0, outputs.isEmpty { outputs.append(sendAck()) }
            // A tail-loss probe (RFC 8985 §7): when the flight has gone quiet for two round
            // trips and the peer's delayed-ACK time, the newest unacknowledged segment goes again;
            // the ACK it draws shows which segments are missing, long before the timer would.
            if !probing, inFlight > 0, let last = lastDataSentAt, now - last >= probeTimeout, now - last < retransmissionTimeout,
                let newest = (head..<firstUnsent).last(where: { !segments[$0].sacked })
            {
                probing = true
                outputs.append(send(newest, now: now))
            }
            if let index = oldestUnsacked, let sentAt = segments[index].sentAt, now - sentAt >= retransmissionTimeout {
                // With the peer's window shut this is a window probe: an unanswered probe means a
                // reader that has not caught up, not a dead path, so it never gives up (the idle
                // timeout ends a stream whose peer went silent).
                guard segments[index].transmissions - segments[index].probes <= Self.maxRetransmissions || peerWindow == 0 else {
                    return reset()
                }
                if peerWindow == 0 {
                    segments[index].probes += 1
                    // A probe of a shut window: no loss, so the congestion window stays; probed
                    // every second at most, so an open window is found soon after.
                    retransmissionTimeout = min(retransmissionTimeout * 2, .seconds(1))
                } else {
                    slowStartThreshold = max(inFlight / 2, 2)
                    congestionWindow = Self.initialWindow
                    retransmissionTimeout = min(retransmissionTimeout * 2, .seconds(10))
                }
                outputs.append(send(index, now: now))
            }
            return outputs
        }
    }

    public var isClosed: Bool { state == .closed }
    /// Bytes written and not yet acknowledged.
    public var unacknowledgedBytes: Int { queuedBytes }

    // MARK: Receiving

    private func accept(data: [UInt8], at sequence: UInt32, now: NIODeadline) -> [Output] {
        guard !peerFinished else { return [] }
        if sequence == receiveNext {
            guard backlog < holdLimit else {
                // The reader is this far behind: nothing more until it reads. The ACK says
                // the window is shut; the sender probes until it opens.
                return [sendAck()]
            }
            var delivered = data
            receiveNext &+= UInt32(data.count)
            while let next = outOfOrder.removeValue(forKey: receiveNext) {
                delivered += next
                receiveNext &+= UInt32(next.count)
            }
            unacknowledgedSegments += 1
            var outputs: [Output] = [.data(delivered)]
            if !outOfOrder.isEmpty || unacknowledgedSegments >= 2 {
                outputs.append(sendAck())
            } else if ackDeadline == nil {
                ackDeadline = now + Self.delayedAck
            }
            return outputs
        }
        if Self.isAfter(sequence, receiveNext) {
            if outOfOrder.count < Self.outOfOrderLimit { outOfOrder[sequence] = data }
        }
        // Out of order or a duplicate: tell the sender at once what we hold.
        return [sendAck()]
    }

    private func receiveFin(_ packet: Packet, now: NIODeadline) -> [Output] {
        var outputs: [Output] = []
        let wasFinished = peerFinished
        peerFinished = true
        outOfOrder = [:]
        if !wasFinished { outputs.append(.finished) }
        // A bare FIN is answered once with FIN|ACK; a FIN|ACK is never answered (two 1.18
        // daemons would otherwise answer each other forever).
        if !packet.flags.contains(.ack) && !finSent {
            finSent = true
            outputs.append(.packet(self.packet(flags: [.fin, .ack], sequence: sendNext, acknowledgment: packet.sequence &+ 1, window: 0)))
        }
        // As 1.18: the receive side closes and the connection waits out TIME_WAIT.
        state = .timeWait
        timeWaitUntil = now + Self.timeWait
        unacknowledgedAtPeerFin += queuedBytes
        segments = []
        (head, firstUnsent, sackedCount, queuedBytes) = (0, 0, 0, 0)
        return outputs
    }

    private func sendAck() -> Output {
        unacknowledgedSegments = 0
        ackDeadline = nil
        var payload: [UInt8] = []
        if !outOfOrder.isEmpty { payload = Self.sackPayload(outOfOrder) }
        return .packet(packet(flags: .ack, sequence: sendNext, acknowledgment: receiveNext, payload: payload))
    }

    // MARK: Sending

    private var inFlight: Int { firstUnsent - head - sackedCount }

    /// The first sent segment the peer does not hold.
    private var oldestUnsacked: Int? {
        (head..<firstUnsent).first { !segments[$0].sacked }
    }

    private func transmit(now: NIODeadline) -> [Output] {
        guard state == .established else { return [] }
        // 1.18 advertises its free receive slots; 0 means full (the old Go daemon read 0 as
        // "unlimited", and 1.18 wins). With a full peer one segment goes out as a probe.
        let limit = min(congestionWindow, max(peerWindow, 1))
        var outputs: [Output] = []
        while firstUnsent < segments.count && inFlight < limit {
            outputs.append(send(firstUnsent, now: now))
            firstUnsent += 1
        }
        return outputs
    }

    /// Two round trips (at least 10 ms) and the peer's delayed-ACK time.
    private var probeTimeout: TimeAmount {
        .nanoseconds(Int64(max(2 * (smoothedRTT ?? 0.5), 0.01) * 1e9)) + Self.delayedAck
    }

    private func send(_ index: Int, now: NIODeadline) -> Output {
        segments[index].sentAt = now
        lastDataSentAt = now
        if segments[index].transmissions > 0 { retransmitted += 1 }
        segments[index].transmissions += 1
        // The data carries the ACK: a pending delayed ACK is no longer needed.
        unacknowledgedSegments = 0
        ackDeadline = nil
        return .packet(packet(flags: .ack, sequence: segments[index].sequence, acknowledgment: receiveNext, payload: segments[index].payload))
    }

    private func acknowledge(_ ack: UInt32, pure: Bool, now: NIODeadline) -> [Output] {
        guard head < firstUnsent, ack != 0 else { return [] }
        if Self.isAfter(ack, segments[head].sequence) {
            var acked = 0
            while head < firstUnsent, !Self.isAfter(segments[head].end, ack) {
                let segment = segments[head]
                if segment.transmissions == 1, !segment.sacked, let sentAt = segment.sentAt { sampleRTT(now - sentAt) }
                noteDelivered(segment.sentAt)
                if segment.sacked { sackedCount -= 1 }
                queuedBytes -= segment.payload.count
                head += 1
                acked += 1
            }
            if head >= 4096 && head * 2 >= segments.count {
                segments.removeFirst(head)
                firstUnsent -= head
                head = 0
            }
            duplicateAcks = 0
            probing = false
            lastAck = ack
            // New data acknowledged: the path works, so the backoff ends (RFC 6298 §5.7), even
            // when only retransmitted segments were acknowledged and Karn's rule gives no sample.
            retransmissionTimeout = measuredTimeout
            if let point = recoveryPoint, !Self.isAfter(point, ack) { recoveryPoint = nil }
            if congestionWindow < slowStartThreshold {
                congestionWindow = min(congestionWindow + acked, Self.receiveSlots)
            } else if acked > 0 {
                congestionWindow = min(congestionWindow + max(1, acked / max(congestionWindow, 1)), Self.receiveSlots)
            }
            return []
        }
        guard pure, ack == lastAck, inFlight > 0 else { return [] }
        duplicateAcks += 1
        guard duplicateAcks == 3, let index = oldestUnsacked else { return [] }
        slowStartThreshold = max(inFlight / 2, 2)
        congestionWindow = slowStartThreshold + 3
        return [send(index, now: now)]
    }

    private func noteDelivered(_ sentAt: NIODeadline?) {
        guard let sentAt else { return }
        if deliveredSentAt.map({ sentAt > $0 }) ?? true { deliveredSentAt = sentAt }
    }

    /// The peer holds data past segments we sent a while ago: those are lost. A hole is sent
    /// again when a segment sent after its last transmission (by more than a quarter of a round
    /// trip, for reordering) has reached the peer, so a retransmission whose ACK was lost is not
    /// sent again and again (RFC 8985's rule; the retransmission timer covers a lost one). The
    /// window is halved once per loss episode.
    private func retransmitHoles(now: NIODeadline) -> [Output] {
        guard sackedCount > 0, let last = (head..<firstUnsent).last(where: { segments[$0].sacked }), let delivered = deliveredSentAt else {
            return []
        }
        let highest = segments[last].end
        let reorderWindow = TimeAmount.nanoseconds(Int64(max((smoothedRTT ?? 0.05) / 4, 0.001) * 1e9))
        var outputs: [Output] = []
        for index in head..<firstUnsent {
            let segment = segments[index]
            guard Self.isAfter(highest, segment.sequence) else { break }
            guard !segment.sacked, let sentAt = segment.sentAt, sentAt + reorderWindow < delivered else { continue }
            let inEpisode = recoveryPoint.map { Self.isAfter($0, segment.sequence) } ?? false
            if !inEpisode {
                recoveryPoint = sendNext
                slowStartThreshold = max(inFlight / 2, 2)
                congestionWindow = slowStartThreshold
            }
            outputs.append(send(index, now: now))
            if outputs.count >= congestionWindow { break }
        }
        return outputs
    }

    private func markSacked(_ blocks: [(UInt32, UInt32)]) {
        for index in head..<firstUnsent where !segments[index].sacked {
            let segment = segments[index]
            if blocks.contains(where: { !Self.isAfter($0.0, segment.sequence) && !Self.isAfter(segment.end, $0.1) }) {
                segments[index].sacked = true
                sackedCount += 1
                probing = false
                noteDelivered(segment.sentAt)
            }
        }
    }

    private func sampleRTT(_ sample: TimeAmount) {
        let seconds = Double(sample.nanoseconds) / 1e9
        if let smoothed = smoothedRTT {
            rttVariance = 0.75 * rttVariance + 0.25 * abs(smoothed - seconds)
            smoothedRTT = 0.875 * smoothed + 0.125 * seconds
        } else {
            smoothedRTT = seconds
            rttVariance = seconds / 2
        }
        let rto = (smoothedRTT ?? 1) + max(0.01, 4 * rttVariance)
        measuredTimeout = .nanoseconds(Int64(min(max(rto, 0.2), 10) * 1e9))
        retransmissionTimeout = measuredTimeout
    }

    private func finishIfDone(now: NIODeadline) -> [Output] {
        guard closeRequested, !finSent, head == segments.count, state == .established else { return [] }
        finSent = true
        state = .timeWait
        timeWaitUntil = now + Self.timeWait
        // As 1.18: FIN alone, ack 0, window 0. It acknowledges nothing, so an ACK still owed
        // (delayed) goes first: a peer that finds our FIN before its data acknowledged takes that
        // data for lost.
        let fin = Output.packet(packet(flags: .fin, sequence: sendNext, acknowledgment: 0, window: 0))
        return ackDeadline != nil || unacknowledgedSegments > 0 ? [sendAck(), fin] : [fin]
    }

    // MARK: Wire

    /// The receive window, in segments: free reorder slots, and no more than the room the
    /// reader's backlog leaves (0 when it holds `holdLimit`: 1.18 reads 0 as full).
    private var advertisedWindow: UInt16 {
        let room = max(0, holdLimit - backlog) / Self.segmentSize
        return UInt16(max(0, min(Self.receiveSlots - outOfOrder.count, room)))
    }

    /// Whether the last window advertised was 0: the reader's backlog decides when it opens.
    public var windowShut: Bool { lastAdvertisedWindow == 0 }

    /// What the window leaves room for: the reader's backlog, or an echo's unacknowledged echo.
    private var backlog: Int { echoesBack ? queuedBytes : readerBacklog }

    /// An ACK that tells the peer the window has opened again (the reader caught up); nothing
    /// when the stream no longer receives.
    public func windowUpdate() -> [Output] {
        guard state == .established, !peerFinished else { return [] }
        return [sendAck()]
    }

    private func packet(flags: PacketFlags, sequence: UInt32, acknowledgment: UInt32, window: UInt16? = nil, payload: [UInt8] = []) -> Packet {
        sentSinceTick = true
        let free = advertisedWindow
        if window == nil {
            if free == 0 && lastAdvertisedWindow != 0 { shutWindowsAdvertised += 1 }
            lastAdvertisedWindow = free
        }
        return Packet(
            flags: flags, proto: .stream, source: key.local, destination: key.remote, sourcePort: key.localPort,
            destinationPort: key.remotePort, sequence: sequence, acknowledgment: acknowledgment, window: window ?? free, payload: payload)
    }

    static let sackMagic: [UInt8] = Array("SACK".utf8)

    /// The SACK blocks an ACK's payload carries: "SACK", a count 1–4, then (left, right) pairs.
    static func sackBlocks(_ payload: [UInt8]) -> [(UInt32, UInt32)]? {
        guard payload.count >= 5, payload.starts(with: sackMagic) else { return nil }
        let count = Int(payload[4])
        guard (1...4).contains(count), payload.count >= 5 + 8 * count else { return nil }
        func word(_ offset: Int) -> UInt32 { payload[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        return (0..<count).map { (word(5 + 8 * $0), word(9 + 8 * $0)) }
    }

    /// Up to four merged blocks of what is held out of order, lowest first.
    static func sackPayload(_ held: [UInt32: [UInt8]]) -> [UInt8] {
        var blocks: [(UInt32, UInt32)] = []
        for (start, bytes) in held.sorted(by: { isAfter($1.key, $0.key) }) {
            let end = start &+ UInt32(bytes.count)
            if let last = blocks.last, last.1 == start { blocks[blocks.count - 1].1 = end } else { blocks.append((start, end)) }
        }
        var payload = sackMagic + [UInt8(min(blocks.count, 4))]
        for (left, right) in blocks.prefix(4) {
            for value in [left, right] { payload += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
        }
        return payload
    }

    /// Serial-number order: `a` comes after `b`.
    static func isAfter(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
}
