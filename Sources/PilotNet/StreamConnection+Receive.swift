public import NIOCore
public import PilotWire

extension StreamConnection {
    /// A packet of this stream arrived: what it acknowledges, carries or ends, and what to send.
    public func receive(_ packet: Packet, now: NIODeadline) -> Outputs {
        guard state != .closed else { return [] }
        lastReceived = now
        if packet.flags.contains(.rst) {
            state = .closed
            return Outputs(.closed(reason: synSentAt != nil ? "connection refused" : "reset by peer"))
        }
        var outputs: Outputs = []
        if state == .synSent {
            guard packet.flags.contains(.syn), packet.flags.contains(.ack), packet.acknowledgment == 1 else { return [] }
            state = .established
            synSentAt = nil
            receiveNext = packet.sequence &+ 1
            peerWindow = min(Int(packet.window), Self.receiveSlots)
            peerIsPilotHost = packet.window == Self.pilotHostSynWindow
            outputs.append(.connected)
            outputs.append(.packet(self.packet(flags: .ack, sequence: sendNext, acknowledgment: receiveNext)))
            outputs += transmit(now: now)
            return outputs
        }
        if packet.flags.contains(.syn) {
            // Our SYN|ACK was lost: send it again.
            if !packet.flags.contains(.ack), state == .established, sendNext == 1 {
                outputs.append(.packet(synAck()))
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
            if let selective = try? SelectiveAck(decoding: packet.payload) {
                traffic.sacksReceived += 1
                markSacked(selective.blocks, above: packet.acknowledgment)
                outputs += acknowledge(packet.acknowledgment, pure: false, now: now)
                noteReneging(packet.acknowledgment)
                outputs += retransmitHoles(now: now)
                outputs += transmit(now: now)
                outputs += deliverHeldSegments()
                return outputs
            }
            outputs += acknowledge(packet.acknowledgment, pure: packet.payload.isEmpty && !windowMoved, now: now)
            noteReneging(packet.acknowledgment)
        }
        outputs += deliverHeldSegments()
        if !packet.payload.isEmpty && !packet.flags.contains(.fin) {
            traffic.segmentsReceived += 1
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

    func accept(data: [UInt8], at sequence: UInt32, now: NIODeadline) -> Outputs {
        guard !peerFinished else { return [] }
        if sequence == receiveNext {
            guard backlog < holdLimit else {
                // The reader is this far behind: nothing more until it reads. The ACK says
                // the window is shut; the sender probes until it opens.
                return Outputs(sendAck())
            }
            var delivered = data
            receiveNext &+= UInt32(data.count)
            takeHeldSegments(into: &delivered)
            unacknowledgedSegments += 1
            traffic.bytesReceived += delivered.count
            if !outOfOrder.isEmpty || unacknowledgedSegments >= 2 { return [.data(delivered), sendAck()] }
            if ackDeadline == nil { ackDeadline = now + Self.delayedAck }
            return Outputs(.data(delivered))
        }
        if Self.isAfter(sequence, receiveNext) {
            if outOfOrder.count < Self.outOfOrderLimit { outOfOrder[sequence] = data }
        }
        // Out of order or a duplicate: tell the sender at once what we hold.
        return Outputs(sendAck())
    }

    /// Segments held out of order that now follow `receiveNext`, appended to `delivered` while
    /// the backlog stays under `holdLimit`: a gap filled late does not deliver the whole reorder
    /// buffer past the limit at once. What stays waits for `deliverHeldSegments`.
    func takeHeldSegments(into delivered: inout [UInt8]) {
        while backlog + delivered.count < holdLimit, let next = outOfOrder.removeValue(forKey: receiveNext) {
            delivered += next
            receiveNext &+= UInt32(next.count)
        }
    }

    /// Held segments that the reader (or the echo's peer) has since made room for: delivered,
    /// and acknowledged at once. Called on every packet and tick of an established stream.
    func deliverHeldSegments() -> Outputs {
        guard !outOfOrder.isEmpty, !peerFinished, backlog < holdLimit, outOfOrder[receiveNext] != nil else { return [] }
        var delivered: [UInt8] = []
        takeHeldSegments(into: &delivered)
        traffic.bytesReceived += delivered.count
        return [.data(delivered), sendAck()]
    }

    func receiveFin(_ packet: Packet, now: NIODeadline) -> Outputs {
        var outputs: Outputs = []
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
        (head, firstUnsent, sackedCount, lostCount, queuedBytes) = (0, 0, 0, 0, 0)
        return outputs
    }

    func sendAck() -> Output {
        unacknowledgedSegments = 0
        ackDeadline = nil
        var payload: [UInt8] = []
        if let selective = selectiveAck() {
            payload = selective.encoded()
            traffic.sacksSent += 1
        }
        return .packet(packet(flags: .ack, sequence: sendNext, acknowledgment: receiveNext, payload: payload))
    }

    /// The receive window, in segments: free reorder slots, and no more than the room the
    /// reader's backlog leaves (0 when it holds `holdLimit`: 1.18 reads 0 as full).
    var advertisedWindow: UInt16 {
        let room = max(0, holdLimit - backlog) / Self.segmentSize
        return UInt16(max(0, min(Self.receiveSlots - outOfOrder.count, room)))
    }

    /// What the window leaves room for: the reader's backlog, or an echo's unacknowledged echo.
    var backlog: Int { echoesBack ? queuedBytes : readerBacklog }

    /// An ACK that tells the peer the window has opened again (the reader caught up); nothing
    /// when the stream no longer receives.
    public func windowUpdate() -> Outputs {
        guard state == .established, !peerFinished else { return [] }
        return Outputs(sendAck())
    }

    /// Up to four merged blocks of what is held out of order, lowest first; nil when nothing is.
    func selectiveAck() -> SelectiveAck? {
        guard !outOfOrder.isEmpty else { return nil }
        var blocks: [SelectiveAck.Block] = []
        for (start, bytes) in outOfOrder.sorted(by: { Self.isAfter($1.key, $0.key) }) {
            let end = start &+ UInt32(bytes.count)
            if let last = blocks.last, last.right == start { blocks[blocks.count - 1].right = end } else { blocks.append(.init(left: start, right: end)) }
        }
        return SelectiveAck(blocks: blocks)
    }
}
