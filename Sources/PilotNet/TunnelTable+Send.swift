public import NIOCore
public import PilotWire
import PilotCrypto

extension TunnelTable {
    /// Sends `packet` from the local identity named by its source to `remote`: sealed at once
    /// on a session, else queued while a key exchange runs (with `endpoint`, where the registry
    /// says the remote is, and then with a punch request; or where the remote was last seen;
    /// or, knowing neither, through the beacon: a node that hides its endpoint).
    public func send(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil, now: NIODeadline) throws(TunnelError) -> TunnelActions {
        var actions: TunnelActions = []
        let local = packet.source.node
        // The source's node names the sending identity; its network part is the network the
        // packet is sent within (a broadcast's is the custom network's).
        guard let identity = identities[local] else { throw .unknownIdentity(local) }
        do { try packet.validate() } catch { throw .encoding("\(error)") }
        if paths[remote] == nil, endpoint != nil || beacon != nil { pathSince[remote] = now }
        if let endpoint {
            // A relayed path stays relayed (until the remote is heard directly); the endpoint is
            // what the next key exchange tries besides.
            paths[remote, default: Path(endpoint: endpoint, socket: 0)].endpoint = endpoint
        } else if paths[remote] == nil, beacon != nil {
            paths[remote] = Path(endpoint: nil, socket: 0, relayed: true)
            actions.append(.pathChanged(remote: remote, relayed: true))
        }
        guard let path = paths[remote] else { throw .noEndpoint(remote) }
        let pair = NodePair(local: local, remote: remote)
        if let tunnel = tunnels[pair] {
            return actions + seal(packet, on: tunnel, path: path, now: now)
        }
        let plaintext: [UInt8]
        do { plaintext = try packet.encoded() } catch { throw .encoding("\(error)") }
        var exchange = pending[pair] ?? Pending(nextAttempt: now)
        if exchange.queue.count >= timing.queueLimit {
            exchange.queue.removeFirst()
            counters.queueOverflow += 1
        }
        exchange.queue.append(plaintext)
        related[remote, default: []].insert(local)
        if exchange.attempts == 0 {
            exchange.attempts = 1
            exchange.nextAttempt = now + timing.retransmit
            // As 1.18 (`ensureTunnel`): with an endpoint the registry gave, a punch request
            // first. Unlike 1.18, the exchange then waits for the punch (`releasePunched`):
            // sent at once, it reaches the remote's NAT before the remote's PILPs have opened
            // it, is dropped there, and the remote hears only the relayed copy, which makes
            // 1.18 keep that peer on the relay until its own next upgrade round.
            pending[pair] = exchange
            if endpoint != nil, beacon != nil {
                actions += punchRequest(local: local, remote: remote, along: path)
                punchWaits[pair] = PunchWait(socket: sendingSocket(local, path), until: now + timing.punchWaitLimit)
                return actions + [.timerDue]
            }
            return actions + sendFirstExchange(pair, identity: identity, path: path)
        }
        pending[pair] = exchange
        return actions
    }

    /// The first exchange of `pair`: straight to the remote's endpoint, if one is known, and a
    /// copy through the beacon right after, so a remote that cannot be reached directly gets
    /// it without waiting for the retries to give up on it, and one that can again is tried
    /// directly again (a path once relayed is not relayed for good). The direct one goes
    /// first: arriving first, it gives the remote our endpoint before the relayed copy counts.
    func sendFirstExchange(_ pair: NodePair, identity: TunnelIdentity, path: Path) -> TunnelActions {
        var actions: TunnelActions = []
        if path.endpoint != nil {
            actions += emit(identity.authenticatedExchange, Path(endpoint: path.endpoint, socket: path.socket), local: pair.local, remote: pair.remote)
        }
        if beacon != nil {
            actions += emit(
                identity.authenticatedExchange, Path(endpoint: path.endpoint, socket: path.socket, relayed: true), local: pair.local, remote: pair.remote)
        }
        return actions
    }

    /// The beacon's punch command arrived on `socket`: the first exchanges waiting for a punch
    /// on that socket go `punchLead` from now, once the remote, which got its command at the
    /// same moment, has had time to send its PILPs and so open its NAT to us.
    func punchCommanded(on socket: Int, now: NIODeadline) -> TunnelActions {
        var moved = false
        for (pair, wait) in punchWaits where wait.socket == socket && wait.until > now + timing.punchLead {
            punchWaits[pair]?.until = now + timing.punchLead
            moved = true
        }
        return moved ? [.timerDue] : []
    }

    /// The first exchanges whose punch wait is over (`punchCommanded`, or `punchWaitLimit`
    /// without a command: the beacon does not know the remote).
    func releasePunched(now: NIODeadline) -> TunnelActions {
        var actions: TunnelActions = []
        for (pair, wait) in punchWaits where wait.until <= now {
            punchWaits[pair] = nil
            guard pending[pair] != nil, let identity = identities[pair.local], let path = paths[pair.remote] else { continue }
            actions += sendFirstExchange(pair, identity: identity, path: path)
        }
        return actions
    }

    func seal(_ plaintext: [UInt8], on tunnel: Tunnel, path: Path, now: NIODeadline) -> TunnelActions {
        seal(count: plaintext.count, on: tunnel, path: path, now: now) { output in
            plaintext.withUnsafeBytes { output.copyMemory(from: $0) }
        }
    }

    /// `packet` sealed on `tunnel`: encoded straight into the datagram, where it is sealed.
    func seal(_ packet: Packet, on tunnel: Tunnel, path: Path, now: NIODeadline) -> TunnelActions {
        seal(count: packet.encodedCount, on: tunnel, path: path, now: now) { output in try packet.encode(into: output) }
    }

    /// A datagram built in one buffer: `write` puts the `count` plaintext bytes where the
    /// ciphertext goes, and they are sealed there, in place (AES-GCM in libsodium reads each
    /// block before it writes it; `TunnelKeyTests` holds it to that).
    private func seal(
        count: Int, on tunnel: Tunnel, path: Path, now: NIODeadline, write: (UnsafeMutableRawBufferPointer) throws -> Void
    ) -> TunnelActions {
        let cipher = tunnel.cipher, sender = tunnel.local
        guard let frame = try? EncryptedFrame.datagram(
            sender: sender, noncePrefix: cipher.noncePrefix, sealedCount: count + TunnelCipher.tagSize,
            seal: { output in
                let plaintext = UnsafeMutableRawBufferPointer(rebasing: output[0..<count])
                try write(plaintext)
                return try cipher.seal(UnsafeRawBufferPointer(plaintext), sender: sender, into: output).counter
            })
        else {
            tunnel.traffic.sealFailures += 1
            return []
        }
        tunnel.lastSent = now
        tunnel.traffic.packetsSent += 1
        tunnel.traffic.bytesSent += count
        if beacon != nil, !path.relayed, paths[tunnel.remote]?.relayed == false {
            // On the remote's direct path (not a probe of a relayed one): does it still answer?
            // A record too old to have reached the count starts again: a keepalive long ago
            // and two frames now are not three frames over the silence.
            var record = unansweredDirect[tunnel.remote] ?? (0, now)
            if record.count < timing.blackholeWrites, now - record.since > timing.blackholeSilence { record = (0, now) }
            unansweredDirect[tunnel.remote] = (record.count + 1, record.since)
        }
        return emit(frame, path, local: tunnel.local, remote: tunnel.remote)
    }

    /// `frame` from `local` to `remote` along `path`. An identity with a socket of its own
    /// always sends from it; the others from the path's socket (the one the remote last
    /// reached, or the shared one). Relayed: wrapped in 0x05 to the beacon.
    func emit(_ frame: [UInt8], _ path: Path, local: UInt32, remote: UInt32) -> TunnelActions {
        let socket = sendingSocket(local, path)
        if path.relayed {
            guard let beacon, let wrapped = try? BeaconMessage.relay(source: local, destination: remote, frame: frame[...]).encoded() else {
                counters.relayUnavailable += 1
                return []
            }
            counters.framesOut += 1
            counters.relayedOut += 1
            return TunnelActions(.send(wrapped, to: beacon, socket: socket))
        }
        guard let endpoint = path.endpoint else {
            counters.relayUnavailable += 1
            return []
        }
        counters.framesOut += 1
        return TunnelActions(.send(frame, to: endpoint, socket: socket))
    }

    /// The socket `local` sends on along `path`: its own if it has one, else the path's.
    func sendingSocket(_ local: UInt32, _ path: Path) -> Int { identitySockets[local] ?? path.socket }
}
