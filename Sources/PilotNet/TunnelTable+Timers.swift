public import NIOCore

extension TunnelTable {
    /// Retransmits key exchanges (through the beacon from the `relayFromAttempt`th, with a
    /// punch request), gives up on dead ones, turns silent direct paths relayed and starts the
    /// direct upgrades of relayed ones, sends keepalives, forgets idle sessions. Call about once
    /// a second (and `sendDue` when `nextDue` says).
    public func tick(now: NIODeadline) -> TunnelActions {
        var actions: TunnelActions = []
        for (pair, var exchange) in pending where exchange.nextAttempt <= now {
            guard let identity = identities[pair.local], var path = paths[pair.remote], exchange.attempts < timing.attempts else {
                pending[pair] = nil
                unrelate(local: pair.local, remote: pair.remote, keepExplicit: true)
                actions.append(.exchangeFailed(local: pair.local, remote: pair.remote, dropped: exchange.queue.count))
                continue
            }
            exchange.attempts += 1
            exchange.nextAttempt = now + timing.retransmit
            pending[pair] = exchange
            // To the beacon, unless the remote was heard directly of late (by another of our
            // identities: the path is the remote's, and that one works).
            let heardOfLate = heardDirectly[pair.remote].map { now - $0 < timing.directPreference } ?? false
            if exchange.attempts >= timing.relayFromAttempt, !path.relayed, !heardOfLate, beacon != nil {
                path.relayed = true
                paths[pair.remote] = path
                pathSince[pair.remote] = now
                actions.append(.pathChanged(remote: pair.remote, relayed: true))
                // The beacon tells both sides where the other is; their PILPs may open a
                // direct path, which the first frame heard directly switches back to.
                actions += punchRequest(local: pair.local, remote: pair.remote, along: path)
            }
            // As 1.18: the PILA again, and a key request since we hold no session.
            actions += emit(identity.authenticatedExchange, path, local: pair.local, remote: pair.remote)
            actions += emit(identity.keyRequest, path, local: pair.local, remote: pair.remote)
        }
        actions += giveUpSilentDirectPaths(now: now)
        actions += startUpgrades(now: now)
        actions += sendDue(now: now)
        // A join that did not come back within the wait: its frames are dropped (the remote
        // sends again), and the next frame asks again.
        for (remote, frames) in held {
            let fresh = frames.filter { now - $0.at < timing.wakeWait }
            held[remote] = fresh.isEmpty ? nil : fresh
        }
        waking = waking.filter { now - $0.value < timing.wakeWait }
        for (pair, tunnel) in tunnels {
            if now - tunnel.lastReceived >= timing.idle {
                dropTunnel(pair)
                continue
            }
            guard now - tunnel.lastSent >= timing.keepalive, let identity = identities[pair.local], let path = paths[pair.remote] else { continue }
            if let bytes = Self.keepalive(from: identity, to: pair.remote) {
                let sent = seal(bytes, on: tunnel, path: path, now: now)
                counters.keepalivesSent += sent.isEmpty ? 0 : 1
                actions += sent
            }
        }
        return actions
    }
}
