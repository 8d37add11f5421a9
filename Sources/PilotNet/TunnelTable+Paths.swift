import NIOCore
import PilotWire

extension TunnelTable {
    /// A beacon message: relayed frames and punch commands are the table's; the rest (discover
    /// replies, pokes) are handed on (`fromBeacon`). Only the beacon's own messages are heard:
    /// anyone can send these bytes, and the others are counted and dropped.
    func receiveFromBeacon(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> [TunnelAction] {
        guard let beacon, endpoint == beacon, let message = try? BeaconMessage(decoding: bytes[...]) else {
            counters.beacon += 1
            return []
        }
        let arrival = Path(endpoint: nil, socket: socket, relayed: true)
        switch message {
        case let .relayDeliver(source, frame):
            counters.relayedIn += 1
            return receive(frame: frame, arrival: arrival, relayedFrom: source, now: now)
        case let .relayDeliverTo(source, destination, frame):
            guard identities[destination] != nil || restingRelations[destination] != nil else {
                counters.misrouted += 1
                return []
            }
            counters.relayedIn += 1
            return receive(frame: frame, arrival: arrival, relayedFrom: source, now: now)
        case let .punchCommand(ip, port):
            // A peer is about to punch toward us: three PILPs to its endpoint open our side.
            guard let target = Self.socketAddress(ip: ip, port: port) else {
                counters.malformed += 1
                return []
            }
            counters.punchCommands += 1
            let punch = TunnelFrame.punch.encoded()
            counters.framesOut += 3
            return Array(repeating: .send(punch, to: target, socket: socket), count: 3)
        default:
            return [.fromBeacon(message, socket: socket)]
        }
    }

    static func socketAddress(ip: [UInt8], port: UInt16) -> SocketAddress? {
        switch ip.count {
        case 4: return try? SocketAddress(ipAddress: ip.map(String.init).joined(separator: "."), port: Int(port))
        case 16:
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(ip[$0]) << 8 | UInt16(ip[$0 + 1]), radix: 16) }
            return try? SocketAddress(ipAddress: groups.joined(separator: ":"), port: Int(port))
        default: return nil
        }
    }

    /// 1.18's blackhole rule: a remote that has had `blackholeWrites` frames straight to it and
    /// has said nothing directly for `blackholeSilence` since the first is reached through the
    /// beacon from now on; `probeDirectPaths` tries the direct path again in `directProbe`.
    func giveUpSilentDirectPaths(now: NIODeadline) -> [TunnelAction] {
        guard beacon != nil else { return [] }
        var actions: [TunnelAction] = []
        for (remote, record) in unansweredDirect where record.count >= timing.blackholeWrites && now - record.since >= timing.blackholeSilence {
            unansweredDirect[remote] = nil
            guard var path = paths[remote], !path.relayed else { continue }
            path.relayed = true
            paths[remote] = path
            lastDirectProbe[remote] = now
            counters.blackholes += 1
            actions.append(.pathChanged(remote: remote, relayed: true))
        }
        return actions
    }

    /// An empty keepalive straight to each relayed remote whose direct endpoint is known, every
    /// `directProbe`: if it gets through, the remote hears us directly and answers directly,
    /// and so do we once we hear it.
    func probeDirectPaths(now: NIODeadline) -> [TunnelAction] {
        var actions: [TunnelAction] = []
        for (remote, path) in paths where path.relayed {
            guard let endpoint = path.endpoint, now - (lastDirectProbe[remote] ?? .uptimeNanoseconds(0)) >= timing.directProbe,
                let local = related[remote]?.sorted().first(where: { tunnels[NodePair(local: $0, remote: remote)] != nil }),
                let tunnel = tunnels[NodePair(local: local, remote: remote)], let identity = identities[local]
            else { continue }
            lastDirectProbe[remote] = now
            guard let bytes = Self.keepalive(from: identity, to: remote) else { continue }
            // A probe may be lost: it does not stand in for the keepalive on the relayed path.
            let lastSent = tunnel.lastSent
            actions += seal(bytes, on: tunnel, path: Path(endpoint: endpoint, socket: path.socket), now: now)
            tunnel.lastSent = lastSent
        }
        return actions
    }

    /// An empty control packet (both ports 0), which the remote swallows: 1.18's keepalive.
    static func keepalive(from identity: TunnelIdentity, to remote: UInt32) -> [UInt8]? {
        try? Packet(proto: .control, source: identity.address, destination: Address(node: remote), sourcePort: 0, destinationPort: 0).encoded()
    }
}
