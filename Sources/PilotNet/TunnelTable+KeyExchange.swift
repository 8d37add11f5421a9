public import NIOCore
public import PilotCrypto
import PilotWire

extension TunnelTable {
    func receive(_ exchange: AuthenticatedKeyExchange, arrival: Path, now: NIODeadline) -> TunnelActions {
        let woken = wakeResting(for: exchange.node, holding: .authenticatedKeyExchange(exchange), arrival: arrival, now: now)
        guard !recipients(of: exchange.node, socket: arrival.socket).isEmpty || woken.held else {
            counters.unsolicited += 1
            return []
        }
        // A held exchange has its sender's key looked up now: it is at hand when the exchange
        // is taken again.
        return woken.actions + verify(exchange, arrival: arrival, now: now)
    }

    func verify(_ exchange: AuthenticatedKeyExchange, arrival: Path, now: NIODeadline) -> TunnelActions {
        if let known = signingKeys[exchange.node] {
            // A PILA with another key than the registry's: the node may have rotated its key.
            // Fetch it again, but not more than once per negative-cache period.
            let stale = known.key.bytes != exchange.ed25519 && now - known.fetched >= timing.negativeKeyCache
            if !stale { return apply(exchange, registryKey: known.key, arrival: arrival, now: now) }
        }
        if let missing = missingKeys[exchange.node], now - missing < timing.negativeKeyCache {
            counters.keyExchangesRejected += 1
            return []
        }
        // The latest exchange, but a direct arrival is kept over its relayed copy (1.18 sends
        // the first PILA both ways): the remote was heard directly, so it is answered directly.
        var heardBy = arrival
        if arrival.relayed, let earlier = awaitingKey[exchange.node]?[arrival.socket]?.1, !earlier.relayed { heardBy = earlier }
        awaitingKey[exchange.node, default: [:]][arrival.socket] = (exchange, heardBy)
        guard keyLookups.insert(exchange.node).inserted else { return [] }
        return TunnelActions(.lookUpKey(exchange.node))
    }

    /// The registry's answer for `node`: its Ed25519 key, or nil when it has none. A key that
    /// differs from the one PILA frames carry rejects them.
    public func keyLookedUp(_ node: UInt32, key: Ed25519PublicKey?, now: NIODeadline) -> TunnelActions {
        keyLookups.remove(node)
        let waiting = awaitingKey.removeValue(forKey: node)
        guard let key else {
            missingKeys[node] = now
            counters.keyExchangesRejected += waiting?.count ?? 0
            return []
        }
        signingKeys[node] = (key, now)
        missingKeys[node] = nil
        return (waiting ?? [:]).sorted { $0.key < $1.key }.reduce(into: TunnelActions()) { actions, entry in
            let pending = entry.value
            actions += apply(pending.0, registryKey: key, arrival: pending.1, now: now)
        }
    }

    /// Forgets the cached registry key of `node` (it rotated its key).
    public func forgetKey(of node: UInt32) { signingKeys[node] = nil }

    func apply(_ exchange: AuthenticatedKeyExchange, registryKey: Ed25519PublicKey, arrival: Path, now: NIODeadline) -> TunnelActions {
        guard exchange.ed25519 == registryKey.bytes,
            registryKey.isValidSignature(exchange.signature, for: exchange.signedMessage)
        else {
            counters.keyExchangesRejected += 1
            return []
        }
        let remote = exchange.node
        var actions = learn(arrival, for: remote, now: now)
        for local in recipients(of: remote, socket: arrival.socket) {
            guard let identity = identities[local], let reply = paths[remote] else { continue }
            let pair = NodePair(local: local, remote: remote)
            if let tunnel = tunnels[pair], tunnel.remoteExchangeKey == exchange.x25519 {
                // The same key again: the session stands. Answer only if the remote seems to
                // have lost it (nothing from it for a while), at most once a second.
                if now - tunnel.lastReceived >= timing.answerSilence, now - tunnel.lastAnswered >= timing.answerInterval {
                    tunnel.lastAnswered = now
                    actions += emit(identity.authenticatedExchange, reply, local: local, remote: remote)
                }
                continue
            }
            let tunnel: Tunnel
            do {
                let shared = try identity.exchangeKey.sharedSecret(with: exchange.x25519)
                tunnel = try Tunnel(
                    local: local, remote: remote, remoteExchangeKey: exchange.x25519,
                    key: TunnelKeyDerivation.hkdf.key(fromSharedSecret: shared), now: now)
            } catch {
                counters.keyExchangesRejected += 1
                continue
            }
            if tunnels[pair] != nil { dropTunnel(pair) }
            tunnels[pair] = tunnel
            related[remote, default: []].insert(local)
            counters.sessionsInstalled += 1
            tunnel.lastAnswered = now
            actions += emit(identity.authenticatedExchange, reply, local: local, remote: remote)
            // What waited for the key goes out now, in order.
            punchWaits[pair] = nil
            for packet in pending.removeValue(forKey: pair)?.queue ?? [] {
                actions += seal(packet, on: tunnel, path: reply, now: now)
            }
        }
        return actions
    }

    func answerKeyRequest(_ request: KeyExchange, arrival: Path, now: NIODeadline) -> TunnelActions {
        let remote = request.node
        let woken = wakeResting(for: remote, holding: .keyExchange(request), arrival: arrival, now: now)
        let locals = recipients(of: remote, socket: arrival.socket)
        guard !locals.isEmpty else {
            if !woken.held { counters.unsolicited += 1 }
            return woken.actions
        }
        // A PILK installs nothing (it is unauthenticated): it asks for our PILA.
        var actions: TunnelActions = []
        for local in locals {
            guard let identity = identities[local] else { continue }
            let pair = NodePair(local: local, remote: remote)
            let last = tunnels[pair]?.lastAnswered ?? lastNoSessionAnswer[pair] ?? .uptimeNanoseconds(0)
            guard now - last >= timing.answerInterval else { continue }
            if let tunnel = tunnels[pair] { tunnel.lastAnswered = now } else { lastNoSessionAnswer[pair] = now }
            // Unauthenticated: it changes no path; the answer goes back the way it came.
            actions += emit(identity.authenticatedExchange, reply(arrival, for: remote), local: local, remote: remote)
        }
        return woken.actions + actions
    }
}
