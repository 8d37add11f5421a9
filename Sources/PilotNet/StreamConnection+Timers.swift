public import NIOCore

extension StreamConnection {
    /// Retransmissions, delayed ACKs, SYN retries, the end of TIME_WAIT. Call every ~20 ms.
    public func tick(now: NIODeadline) -> Outputs {
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
                return Outputs(.closed(reason: nil))
            }
            return []
        case .synSent:
            guard let sentAt = synSentAt, now - sentAt >= retransmissionTimeout else { return [] }
            guard synAttemptsMade < Self.synAttempts else {
                state = .closed
                return Outputs(.closed(reason: "dial timed out"))
            }
            synAttemptsMade += 1
            synSentAt = now
            retransmissionTimeout = min(retransmissionTimeout * 2, .seconds(8))
            return Outputs(.packet(syn()))
        case .established:
            if now - lastReceived >= Self.idleTimeout {
                state = .closed
                return Outputs(.closed(reason: "idle timeout"))
            }
            var outputs = deliverHeldSegments()
            if let deadline = ackDeadline, now >= deadline, outputs.isEmpty { outputs.append(sendAck()) }
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
                    // Whatever was in flight with it is taken for lost too: the window sends it
                    // again as the ACKs come back (slow start from the oldest), instead of one
                    // segment per timeout; a whole window lost (a NAT that forgot the path, a
                    // receiver that dropped what it could not hold) comes back in round trips.
                    for later in index + 1..<firstUnsent where !segments[later].sacked && !segments[later].lost {
                        segments[later].lost = true
                        lostCount += 1
                    }
                }
                outputs.append(send(index, now: now))
            }
            return outputs
        }
    }

    /// The tunnel to the peer took another path (direct to relayed, or back): what was lost
    /// on the old one is sent again now on the new one, with the measured timeout instead of
    /// the backoff the dead path had built up (up to 10 s, so a stream would otherwise sit idle
    /// that long after its path came back). The new path gets the whole budget of
    /// retransmissions before the stream gives up: losses on the old one no longer count. The
    /// congestion state stays: the timer already cut it for those losses.
    public func pathChanged(now: NIODeadline) -> Outputs {
        guard state == .established, peerWindow > 0, let index = oldestUnsacked else { return [] }
        for unacknowledged in head..<firstUnsent { segments[unacknowledged].probes = segments[unacknowledged].transmissions }
        retransmissionTimeout = measuredTimeout
        guard let sentAt = segments[index].sentAt, now - sentAt >= measuredTimeout else { return [] }
        return Outputs(send(index, now: now))
    }
}
