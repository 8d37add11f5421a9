public import NIOCore
import PilotWire

extension TunnelTable {
    /// A beacon message: relayed frames and punch commands are the table's; the rest (discover
    /// replies, pokes) are handed on (`fromBeacon`). Only the beacon's own messages are heard:
    /// anyone can send these bytes, and the others are counted and dropped.
    func receiveFromBeacon(_ bytes: [UInt8], from endpoint: SocketAddress, socket: Int, now: NIODeadline) -> TunnelActions {
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
            return TunnelActions(contentsOf: repeatElement(.send(punch, to: target, socket: socket), count: 3)) + punchCommanded(on: socket, now: now)
        default:
            return TunnelActions(.fromBeacon(message, socket: socket))
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
    /// beacon from now on; its next direct upgrade is `directProbe` later.
    func giveUpSilentDirectPaths(now: NIODeadline) -> TunnelActions {
        guard beacon != nil else { return [] }
        var actions: TunnelActions = []
        for (remote, record) in unansweredDirect where record.count >= timing.blackholeWrites && now - record.since >= timing.blackholeSilence {
            unansweredDirect[remote] = nil
            guard var path = paths[remote], !path.relayed else { continue }
            path.relayed = true
            paths[remote] = path
            pathSince[remote] = now
            lastUpgrade[remote] = now
            counters.blackholes += 1
            actions.append(.pathChanged(remote: remote, relayed: true))
            actions += rediscover(behind: remote, along: path)
        }
        return actions
    }

    /// A direct path to `remote` went silent: perhaps our own NAT gave our socket a new
    /// mapping, and the beacon would relay to us at the old one until our next announcement
    /// (up to 30 s). So each identity with a session with `remote` tells the beacon where it is
    /// now, from the socket it sends on (a discover, as the announcements: 0x08 from a shared
    /// socket, 0x01 from one of its own). The beacon's answer, the socket's mapping, goes up
    /// (`fromBeacon`), and a new mapping is registered.
    func rediscover(behind remote: UInt32, along path: Path) -> TunnelActions {
        guard let beacon else { return [] }
        var actions: TunnelActions = []
        for local in (related[remote] ?? []).sorted() where tunnels[NodePair(local: local, remote: remote)] != nil {
            let ownSocket = identitySockets[local]
            let message: BeaconMessage = ownSocket == nil ? .discoverExtended(node: local) : .discover(node: local)
            guard let bytes = try? message.encoded() else { continue }
            counters.rediscovers += 1
            actions.append(.send(bytes, to: beacon, socket: ownSocket ?? path.socket))
        }
        return actions
    }

    /// A punch request (0x03) from `local` for `remote`, to the beacon from the socket `local`
    /// sends on along `path`: the beacon sends each side the other's endpoint (0x04), and their
    /// PILPs open both NATs for the frames that follow.
    func punchRequest(local: UInt32, remote: UInt32, along path: Path) -> TunnelActions {
        guard let beacon, let request = try? BeaconMessage.punchRequest(requester: local, target: remote).encoded() else { return [] }
        counters.punchRequests += 1
        return TunnelActions(.send(request, to: beacon, socket: sendingSocket(local, path)))
    }

    /// Starts the direct upgrades that are due (1.18's `tryDirectUpgrade`): each relayed remote
    /// with a session, every `directProbe`, is looked up at the registry (`resolveEndpoint`), as
    /// the identity that holds the session; `endpointResolved` goes on from there. Bounded:
    /// `upgradesPerTick` started per call and `upgradesAtOnce` under way; the remotes left
    /// over are due still and go at the next ticks, so thousands of relayed remotes are spread
    /// over seconds, never asked for at once. An answer that never comes frees its place after
    /// `upgradeResolveWait`.
    func startUpgrades(now: NIODeadline) -> TunnelActions {
        for (remote, upgrade) in upgrades where upgrade.endpoint == nil && upgrade.due <= now { upgrades[remote] = nil }
        guard beacon != nil else { return [] }
        var actions: TunnelActions = []
        for (remote, path) in paths where path.relayed && upgrades[remote] == nil {
            guard actions.count < timing.upgradesPerTick, upgrades.count < timing.upgradesAtOnce else { break }
            guard now - (lastUpgrade[remote] ?? .uptimeNanoseconds(0)) >= timing.directProbe,
                let local = related[remote]?.sorted().first(where: { tunnels[NodePair(local: $0, remote: remote)] != nil })
            else { continue }
            lastUpgrade[remote] = now
            upgrades[remote] = Upgrade(local: local, due: now + timing.upgradeResolveWait)
            counters.upgrades += 1
            actions.append(.resolveEndpoint(local: local, remote: remote))
        }
        return actions
    }

    /// What prefer-direct (1.18's 0x2D) found of `local`'s session with `remote`, and whether
    /// it started a direct upgrade.
    public struct DirectPreference: Sendable, Equatable {
        /// `local` held a session with `remote`.
        public var hadTunnel: Bool
        /// Frames to `remote` went through the beacon.
        public var wasRelayed: Bool
        /// A direct upgrade is under way: started now, or already (its probes then go on).
        public var upgrading: Bool

        /// A report of what was found.
        public init(hadTunnel: Bool, wasRelayed: Bool, upgrading: Bool) {
            self.hadTunnel = hadTunnel
            self.wasRelayed = wasRelayed
            self.upgrading = upgrading
        }
    }

    /// prefer-direct for `local` and `remote`: a relayed path is tried directly now, not at its
    /// next `directProbe`, as `startUpgrades` would (the caller hands the registry's answer to
    /// `endpointResolved`). Nothing is pinned to the beacon here, so a direct path or no session
    /// leaves nothing to do.
    public func preferDirect(local: UInt32, remote: UInt32, now: NIODeadline) -> DirectPreference {
        let hadTunnel = tunnels[NodePair(local: local, remote: remote)] != nil
        let relayed = paths[remote]?.relayed ?? false
        guard hadTunnel, relayed else { return DirectPreference(hadTunnel: hadTunnel, wasRelayed: relayed, upgrading: false) }
        if upgrades[remote] == nil {
            lastUpgrade[remote] = now
            upgrades[remote] = Upgrade(local: local, due: now + timing.upgradeResolveWait)
            counters.upgrades += 1
        }
        return DirectPreference(hadTunnel: true, wasRelayed: true, upgrading: true)
    }

    /// The registry's answer to `resolveEndpoint` for `remote`: where it is, or nil (it is
    /// relay-only, or the registry could not be asked), in which case the endpoint known from
    /// before, if any, is tried. The endpoint becomes the path's (the next key exchange tries it
    /// too), a punch request goes to the beacon, and `probe` sends the sealed probes from
    /// `upgradeProbeSpacing` on (`nextDue` says when).
    public func endpointResolved(_ remote: UInt32, endpoint: SocketAddress?, now: NIODeadline) -> TunnelActions {
        guard var upgrade = upgrades[remote], upgrade.endpoint == nil else { return [] }
        // Heard directly meanwhile: the path it came by is better than the registry's word.
        guard var path = paths[remote], path.relayed, let target = endpoint ?? path.endpoint,
            tunnels[NodePair(local: upgrade.local, remote: remote)] != nil
        else {
            upgrades[remote] = nil
            return []
        }
        path.endpoint = target
        paths[remote] = path
        upgrade.endpoint = target
        upgrade.probesLeft = timing.upgradeProbes
        upgrade.due = now + timing.upgradeProbeSpacing
        upgrades[remote] = upgrade
        return punchRequest(local: upgrade.local, remote: remote, along: path)
    }

    /// When `sendDue` has something to send next (an upgrade probe, or a first exchange that
    /// waited for its punch), nil when nothing waits.
    public var nextDue: NIODeadline? {
        let probe = upgrades.values.lazy.filter { $0.endpoint != nil }.map(\.due).min()
        let exchange = punchWaits.values.lazy.map(\.until).min()
        return [probe, exchange].compactMap { $0 }.min()
    }

    /// What is due: first exchanges whose punch wait is over, and upgrade probes.
    public func sendDue(now: NIODeadline) -> TunnelActions {
        releasePunched(now: now) + probe(now: now)
    }

    /// The upgrade probes that are due: an empty keepalive, sealed, straight to the endpoint
    /// the registry gave. All of them go even once the path turned direct: a 1.18 peer moves
    /// back to direct only after three frames heard directly. A probe may be lost: it does not
    /// stand in for the keepalive on the relayed path.
    func probe(now: NIODeadline) -> TunnelActions {
        var actions: TunnelActions = []
        for (remote, var upgrade) in upgrades where upgrade.due <= now {
            guard let endpoint = upgrade.endpoint else { continue }
            let pair = NodePair(local: upgrade.local, remote: remote)
            guard let tunnel = tunnels[pair], let identity = identities[upgrade.local], let socket = paths[remote]?.socket,
                let bytes = Self.keepalive(from: identity, to: remote)
            else {
                upgrades[remote] = nil
                continue
            }
            let lastSent = tunnel.lastSent
            actions += seal(bytes, on: tunnel, path: Path(endpoint: endpoint, socket: socket), now: now)
            tunnel.lastSent = lastSent
            counters.upgradeProbes += 1
            upgrade.probesLeft -= 1
            upgrade.due = now + timing.upgradeProbeSpacing
            upgrades[remote] = upgrade.probesLeft > 0 ? upgrade : nil
        }
        return actions
    }

    /// An empty control packet (both ports 0), which the remote swallows: 1.18's keepalive.
    static func keepalive(from identity: TunnelIdentity, to remote: UInt32) -> [UInt8]? {
        try? Packet(proto: .control, source: identity.address, destination: Address(node: remote), sourcePort: 0, destinationPort: 0).encoded()
    }
}
