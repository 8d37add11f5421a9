public import NIOCore
import PilotCrypto
import PilotWire

extension TunnelTable {
    /// One datagram from `endpoint`, arrived on socket `socket`.
    public func receive(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> TunnelActions {
        counters.framesIn += 1
        guard let first = bytes.first else {
            counters.malformed += 1
            return []
        }
        if first < TunnelFrame.beaconTypeLimit {
            return receiveFromBeacon(bytes, from: endpoint, socket: socket, now: now)
        }
        return receive(frame: bytes[...], arrival: Path(endpoint: endpoint, socket: socket), relayedFrom: nil, now: now)
    }

    /// A tunnel frame that arrived straight from `arrival.endpoint`, or through the beacon from
    /// node `relayedFrom`.
    func receive(frame bytes: ArraySlice<UInt8>, arrival: Path, relayedFrom: UInt32?, now: NIODeadline) -> TunnelActions {
        let frame: TunnelFrame
        do { frame = try TunnelFrame(decoding: bytes) } catch {
            counters.malformed += 1
            return []
        }
        // Whoever relays names the sender; the frame names it too, and they must agree.
        if let relayedFrom, let sender = frame.sender, sender != relayedFrom {
            counters.spoofed += 1
            return []
        }
        switch frame {
        case .authenticatedKeyExchange: counters.keyExchangesIn += 1
        case .keyExchange: counters.keyRequestsIn += 1
        case .plaintext: counters.plaintextDropped += 1
        case .punch: counters.punches += 1
        case .encrypted: break
        }
        return dispatch(frame, arrival: arrival, now: now)
    }

    /// A decoded frame to what handles its kind (PILT is ignored, as 1.18 with encryption on).
    func dispatch(_ frame: TunnelFrame, arrival: Path, now: NIODeadline) -> TunnelActions {
        switch frame {
        case .encrypted(let encrypted): receive(encrypted, arrival: arrival, now: now)
        case .authenticatedKeyExchange(let exchange): receive(exchange, arrival: arrival, now: now)
        case .keyExchange(let request): answerKeyRequest(request, arrival: arrival, now: now)
        case .plaintext, .punch: []
        }
    }

    /// Where `remote` is to be reached after an authenticated frame from it arrived by
    /// `arrival`: where it came from. A relayed copy does not displace a direct path heard
    /// from within `directPreference` (1.18 sends its PILAs both ways). Returns the path change
    /// to report, if the path turned relayed or direct.
    func learn(_ arrival: Path, for remote: UInt32, now: NIODeadline) -> TunnelActions {
        let old = paths[remote]
        if arrival.relayed {
            if let direct = heardDirectly[remote], now - direct < timing.directPreference, old?.relayed == false { return [] }
            paths[remote] = Path(endpoint: old?.endpoint, socket: arrival.socket, relayed: true)
        } else {
            heardDirectly[remote] = now
            unansweredDirect[remote] = nil
            paths[remote] = arrival
        }
        let turned = (old?.relayed ?? false) != arrival.relayed
        if old == nil || turned { pathSince[remote] = now }
        return turned ? [.pathChanged(remote: remote, relayed: arrival.relayed)] : []
    }

    /// The local identities a key exchange from `remote` on `socket` applies to.
    func recipients(of remote: UInt32, socket: Int) -> [UInt32] {
        var locals = related[remote] ?? []
        if let owner = socketOwners[socket] { locals.insert(owner) }
        return locals.filter { identities[$0] != nil && $0 != remote }.sorted()
    }

    /// Where an answer to something that arrived by `arrival` from `remote` goes.
    func reply(_ arrival: Path, for remote: UInt32) -> Path {
        arrival.relayed ? Path(endpoint: paths[remote]?.endpoint, socket: arrival.socket, relayed: true) : arrival
    }

    func receive(_ frame: EncryptedFrame, arrival: Path, now: NIODeadline) -> TunnelActions {
        let remote = frame.sender
        let epoch = Epoch(remote: remote, prefix: frame.nonce.prefix)
        var opened: (tunnel: Tunnel, count: Int)?
        if let local = epochs[epoch], let tunnel = tunnels[NodePair(local: local, remote: remote)] {
            opened = open(frame, on: tunnel).map { (tunnel, $0) }
        } else {
            for local in (related[remote] ?? []).sorted() {
                guard let tunnel = tunnels[NodePair(local: local, remote: remote)], let count = open(frame, on: tunnel) else { continue }
                epochs[epoch] = local
                tunnel.prefixes.insert(epoch.prefix)
                opened = (tunnel, count)
                break
            }
        }
        guard let (tunnel, count) = opened else {
            // The remote may hold a session from before a restart with an identity resting now.
            let woken = wakeResting(for: remote, holding: .encrypted(frame), arrival: arrival, now: now)
            return woken.actions + undecryptable(from: remote, arrival: arrival, now: now)
        }
        guard tunnel.window.accept(prefix: epoch.prefix, counter: frame.nonce.counter) == .accepted else {
            counters.replayed += 1
            return []
        }
        let packet: Packet
        do { packet = try Packet(decoding: self.opened[..<count]) } catch {
            counters.malformed += 1
            return []
        }
        // The sender stamps its own id; an empty keepalive of an old peer may carry 0.
        let isBareKeepalive = packet.proto == .control && packet.sourcePort == 0 && packet.destinationPort == 0 && packet.payload.isEmpty
        guard packet.source.node == remote || (isBareKeepalive && packet.source.node == 0) else {
            counters.spoofed += 1
            return []
        }
        let destination = packet.destination.node
        guard destination == tunnel.local || destination == 0 || destination == Address.broadcastNode else {
            counters.misrouted += 1
            return []
        }
        tunnel.lastReceived = now
        tunnel.traffic.packetsReceived += 1
        tunnel.traffic.bytesReceived += count
        // The remote may have moved (NAT rebinding), or lost or found a direct path: reply
        // the way it now comes.
        let changed = learn(arrival, for: remote, now: now)
        counters.delivered += 1
        return TunnelActions(.deliver(local: tunnel.local, packet)) + changed
    }

    /// `frame` opened on `tunnel` into `opened`: the plaintext's length, or nil when the tag
    /// does not check.
    func open(_ frame: EncryptedFrame, on tunnel: Tunnel) -> Int? {
        let needed = max(0, frame.sealed.count - TunnelCipher.tagSize)
        if opened.count < needed { opened = [UInt8](repeating: 0, count: needed) }
        let cipher = tunnel.cipher
        return frame.sealed.withUnsafeBytes { sealed in
            opened.withUnsafeMutableBytes { output in
                try? cipher.open(sealed, prefix: frame.nonce.prefix, counter: frame.nonce.counter, sender: frame.sender, into: output)
            }
        }
    }

    /// A PILS no session opens: the remote thinks it has a session we do not. Those of our
    /// identities with business with it answer with their PILA, at most once per 3 s.
    func undecryptable(from remote: UInt32, arrival: Path, now: NIODeadline) -> TunnelActions {
        let locals = recipients(of: remote, socket: arrival.socket)
        if locals.contains(where: { tunnels[NodePair(local: $0, remote: remote)] != nil }) {
            counters.authenticationFailed += 1
        } else {
            counters.noSession += 1
        }
        var actions: TunnelActions = []
        for local in locals {
            guard let identity = identities[local] else { continue }
            let pair = NodePair(local: local, remote: remote)
            if let last = lastNoSessionAnswer[pair], now - last < timing.noSessionAnswerInterval { continue }
            lastNoSessionAnswer[pair] = now
            let path = reply(arrival, for: remote)
            actions += emit(identity.authenticatedExchange, path, local: local, remote: remote)
            if tunnels[pair] == nil { actions += emit(identity.keyRequest, path, local: local, remote: remote) }
        }
        return actions
    }
}
