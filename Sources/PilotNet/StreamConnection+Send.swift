public import NIOCore
import PilotWire

extension StreamConnection {
    /// Queues `bytes` and sends what the windows allow.
    public func write(_ bytes: [UInt8], now: NIODeadline) -> Outputs {
        guard state == .established || state == .synSent, !closeRequested else { return [] }
        bytes.withUnsafeBufferPointer { bytes in
            // "SACK", as one word: compared with each segment's first four bytes.
            let magic = SelectiveAck.magic.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            var start = 0
            while start < bytes.count {
                var end = min(start + Self.segmentSize, bytes.count)
                // A segment must never begin like a SACK block list (the peer would read it as one).
                if end - start > 4, UnsafeRawPointer(bytes.baseAddress! + start).loadUnaligned(as: UInt32.self) == magic { end = start + 4 }
                segments.append(Segment(sequence: sendNext, payload: Array(bytes[start..<end])))
                queuedBytes += end - start
                sendNext &+= UInt32(end - start)
                start = end
            }
        }
        return state == .established ? transmit(now: now) : []
    }

    /// Closes this side: the FIN goes out once everything written is acknowledged.
    public func close(now: NIODeadline) -> Outputs {
        switch state {
        case .synSent:
            state = .closed
            return Outputs(.closed(reason: nil))
        case .established:
            closeRequested = true
            return finishIfDone(now: now)
        case .timeWait, .closed:
            return []
        }
    }

    var inFlight: Int { firstUnsent - head - sackedCount - lostCount }

    /// Bytes sent and not acknowledged, and of those the ones in flight (not SACKed, not
    /// taken for lost): for a status listing, not the packet path.
    public var sentUnacknowledged: (bytes: Int, inFlight: Int) {
        segments[head..<firstUnsent].reduce(into: (0, 0)) { sum, segment in
            sum.0 += segment.payload.count
            if !segment.sacked && !segment.lost { sum.1 += segment.payload.count }
        }
    }

    /// The oldest byte not acknowledged and the next byte to send for the first time: for a
    /// status listing.
    public var sendingPosition: (unacknowledged: UInt32, next: UInt32) {
        (head < segments.count ? segments[head].sequence : sendNext, firstUnsent < segments.count ? segments[firstUnsent].sequence : sendNext)
    }

    /// Bytes from `first` up to, not including, `end` (sequence numbers, so `end` may wrap).
    public struct SequenceRange: Sendable, Equatable {
        /// The first byte.
        public var first: UInt32
        /// The first byte after.
        public var end: UInt32
    }

    /// What the peer SACKed, merged, lowest first: for a status listing, not the packet path.
    public var sackedRanges: [SequenceRange] {
        var ranges: [SequenceRange] = []
        for segment in segments[head..<firstUnsent] where segment.sacked {
            if let last = ranges.last, last.end == segment.sequence {
                ranges[ranges.count - 1].end = segment.end
            } else {
                ranges.append(SequenceRange(first: segment.sequence, end: segment.end))
            }
        }
        return ranges
    }

    /// The first sent segment the peer does not hold.
    var oldestUnsacked: Int? {
        (head..<firstUnsent).first { !segments[$0].sacked }
    }

    /// The most segments that may be unacknowledged, SACKed ones included: toward 1.18, what
    /// it can hold past a hole (`officialOutOfOrderLimit`) and what its reader's queue has
    /// room for when the hole fills (its window); toward pilot-host, no cap but the windows.
    var outstandingLimit: Int {
        peerIsPilotHost ? Int.max : min(Self.officialOutOfOrderLimit, max(peerWindow, 1))
    }

    func transmit(now: NIODeadline) -> Outputs {
        guard state == .established else { return [] }
        // 1.18 advertises its free receive slots; 0 means full (the old Go daemon read 0 as
        // "unlimited", and 1.18 wins). With a full peer one segment goes out as a probe.
        let limit = min(congestionWindow, max(peerWindow, 1))
        let outstanding = outstandingLimit
        var outputs: Outputs = []
        // What the timer took for lost goes first, oldest first.
        var index = head
        while lostCount > 0 && inFlight < limit && index < firstUnsent {
            if segments[index].lost { outputs.append(send(index, now: now)) }
            index += 1
        }
        while firstUnsent < segments.count && inFlight < limit && firstUnsent - head < outstanding {
            outputs.append(send(firstUnsent, now: now))
            firstUnsent += 1
        }
        return outputs
    }

    /// Two round trips (at least 10 ms) and the peer's delayed-ACK time.
    var probeTimeout: TimeAmount {
        .nanoseconds(Int64(max(2 * (smoothedRTT ?? 0.5), 0.01) * 1e9)) + Self.delayedAck
    }

    func send(_ index: Int, now: NIODeadline) -> Output {
        if segments[index].lost {
            segments[index].lost = false
            lostCount -= 1
        }
        segments[index].sentAt = now
        lastDataSentAt = now
        if segments[index].transmissions > 0 { retransmitted += 1 } else { traffic.bytesSent += segments[index].payload.count }
        traffic.segmentsSent += 1
        segments[index].transmissions += 1
        // The data carries the ACK: a pending delayed ACK is no longer needed.
        unacknowledgedSegments = 0
        ackDeadline = nil
        return .packet(packet(flags: .ack, sequence: segments[index].sequence, acknowledgment: receiveNext, payload: segments[index].payload))
    }

    func acknowledge(_ ack: UInt32, pure: Bool, now: NIODeadline) -> Outputs {
        guard head < firstUnsent, ack != 0 else { return [] }
        if Self.isAfter(ack, segments[head].sequence) {
            var acked = 0
            while head < firstUnsent, !Self.isAfter(segments[head].end, ack) {
                let segment = segments[head]
                if segment.transmissions == 1, !segment.sacked, let sentAt = segment.sentAt { sampleRTT(now - sentAt) }
                noteDelivered(segment.sentAt)
                if segment.sacked { sackedCount -= 1 }
                if segment.lost { lostCount -= 1 }
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
            lastProgress = now
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
        traffic.fastRetransmits += 1
        return Outputs(send(index, now: now))
    }

    func noteDelivered(_ sentAt: NIODeadline?) {
        guard let sentAt else { return }
        if deliveredSentAt.map({ sentAt > $0 }) ?? true { deliveredSentAt = sentAt }
    }

    /// The peer holds data past segments we sent a while ago: those are lost. A hole is sent
    /// again when a segment sent after its last transmission (by more than a quarter of a round
    /// trip, for reordering) has reached the peer, so a retransmission whose ACK was lost is not
    /// sent again and again (RFC 8985's rule; the retransmission timer covers a lost one). The
    /// window is halved once per loss episode.
    func retransmitHoles(now: NIODeadline) -> Outputs {
        guard sackedCount > 0, let last = (head..<firstUnsent).last(where: { segments[$0].sacked }), let delivered = deliveredSentAt else {
            return []
        }
        let highest = segments[last].end
        let reorderWindow = TimeAmount.nanoseconds(Int64(max((smoothedRTT ?? 0.05) / 4, 0.001) * 1e9))
        var outputs: Outputs = []
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
            traffic.fastRetransmits += 1
            outputs.append(send(index, now: now))
            if outputs.count >= congestionWindow { break }
        }
        return outputs
    }

    /// Marks the segments inside `blocks` as held by the peer; only those after its cumulative
    /// ACK `ack`: the segment the peer expects next is not held, whatever a block says.
    func markSacked(_ blocks: [SelectiveAck.Block], above ack: UInt32) {
        for index in head..<firstUnsent where !segments[index].sacked {
            let segment = segments[index]
            if Self.isAfter(segment.sequence, ack), blocks.contains(where: { !Self.isAfter($0.left, segment.sequence) && !Self.isAfter(segment.end, $0.right) }) {
                segments[index].sacked = true
                sackedCount += 1
                if segment.lost {
                    segments[index].lost = false
                    lostCount -= 1
                }
                probing = false
                noteDelivered(segment.sentAt)
            }
        }
    }

    /// The peer's cumulative ACK `ack` stops at a segment it SACKed: it holds it no more (1.18,
    /// when its reader's queue cannot take what a filled hole releases, keeps the rest out of
    /// order and waits for the segment it expects, which it will not take from there). The
    /// segment is taken for lost and sent again at once; left marked, it would never be
    /// retransmitted and the stream would stall until it gave up.
    func noteReneging(_ ack: UInt32) {
        guard head < firstUnsent, segments[head].sacked, segments[head].sequence == ack else { return }
        segments[head].sacked = false
        sackedCount -= 1
        segments[head].lost = true
        lostCount += 1
        reneged += 1
    }

    func sampleRTT(_ sample: TimeAmount) {
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

    func finishIfDone(now: NIODeadline) -> Outputs {
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

    func packet(flags: PacketFlags, sequence: UInt32, acknowledgment: UInt32, window: UInt16? = nil, payload: [UInt8] = []) -> Packet {
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
}
