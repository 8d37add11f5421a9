import FoundationEssentials
import PilotNet
import PilotWire

// 1.18's `info` and `health` of an identity: the keys an official daemon answers with, and the
// identity's own figures in them (docs/PROTOCOL.md §12.1, §12.2).

extension IdentityCommands {
    /// What 1.18 reports of a daemon that pilot-host has of an identity.
    struct ReferenceFigures {
        let pending: Int
        let peers: PeerList
        let streams: ConnectionList
        let traffic: TunnelTraffic
        /// The ports it listens on: its services' and any bound.
        let ports: Int
        let beacon: String

        /// Tunnel peers whose frames go through the beacon.
        var relayed: Int { peers.peers.filter(\.relayed).count }
    }

    /// The identity's figures: its tunnels (what they carried, none before it joined the
    /// network), its streams and ports (before it joined: the services it answers once called).
    func referenceFigures() async throws -> ReferenceFigures {
        var traffic = TunnelTraffic()
        var ports = await presence.servicePorts.count
        if let joined = await presence.joinedIdentity(name) {
            traffic = try await presence.fabric.traffic(of: joined.node)
            ports = try await presence.fabric.listeningPorts(of: joined.node).count
        }
        return ReferenceFigures(
            pending: await trust.pending(name).pending.count,
            peers: try await dataCommands.peers(of: name), streams: try await dataCommands.connections(of: name), traffic: traffic,
            ports: ports, beacon: await presence.beacon.map { IdentityDriverSession.hostPort($0) } ?? "")
    }

    /// 1.18's Info keys with this identity's figures. `connections` and `ports` are the
    /// caller's count when it gives one (a driver connection counts its own), else the
    /// identity's (its open streams, the ports it listens on). Plus ours: `name`, `tags`,
    /// `public`, `deregistered`, `registry` (the registry in use, of those configured).
    func referenceInfo(connections: Int? = nil, ports: Int? = nil) async throws -> [String: JSON] {
        guard let record = await pool.identity(named: name) else { throw PoolError.notFound(name) }
        let figures = try await referenceFigures()
        let open = figures.streams.connections.filter { $0.state == "ESTABLISHED" }.count
        let tunnels = Int64(figures.peers.peers.count)
        return [
            "node_id": .integer(Int64(record.nodeID)), "address": .string(Address(network: record.network, node: record.nodeID).description),
            "endpoint": .string(await pool.registeredAddress(of: name)), "hostname": .string(record.hostname ?? ""),
            "uptime_secs": .integer(Int64(Date().timeIntervalSince(started))), "connections": .integer(Int64(connections ?? open)),
            "ports": .integer(Int64(ports ?? figures.ports)), "peers": .integer(tunnels), "encrypted_peers": .integer(tunnels),
            "authenticated_peers": .integer(tunnels), "encrypt": .bool(true), "identity": .bool(true), "name": .string(name),
            "public_key": .string((try? await pool.signingKey(of: name).publicKey.base64) ?? ""), "email": .string(""),
            "bytes_sent": .integer(Int64(figures.traffic.bytesSent)), "bytes_recv": .integer(Int64(figures.traffic.bytesReceived)),
            "pkts_sent": .integer(Int64(figures.traffic.packetsSent)), "pkts_recv": .integer(Int64(figures.traffic.packetsReceived)),
            "tunnel_encryption_success": .integer(Int64(figures.traffic.packetsSent)),
            "tunnel_encryption_failure": .integer(Int64(figures.traffic.sealFailures)),
            "handshake_pending_count": .integer(Int64(figures.pending)), "version": .string(IdentityDriverSession.version),
            "networks": .array([]), "peer_list": figures.peers.json["peers"] ?? .array([]), "conn_list": .array(figures.streams.rows),
            "accept_queue_drops": .integer(0), "webhook_queue_dropped": .integer(0), "webhook_circuit_skips": .integer(0),
            "relay_peer_count": .integer(Int64(figures.relayed)), "beacon_addr": .string(figures.beacon), "motd": .string(""),
            "features": .array(["reply_window", "dial_awaits_key", "key_request", "dgram_confirm"].map(JSON.string)),
            "transport": .string("udp"), "tags": .array(record.tags.map(JSON.string)), "public": .bool(record.isPublic),
            "deregistered": .bool(await pool.isDeregistered(name)),
            "registry": .string(await pool.registry.inUse.description),
        ]
    }

    /// 1.18's health keys, Info's figures under them (`connections`: the asking driver
    /// connection's streams, else the identity's open streams), plus `version` and `name`.
    func health(connections: Int? = nil) async throws -> JSON {
        let info = try await referenceInfo(connections: connections)
        var health = info.filter { Self.healthKeys.contains($0.key) }
        health["status"] = "ok"
        health["uptime_seconds"] = info["uptime_secs"]
        return .object(health)
    }

    /// The keys Health shares with Info.
    static let healthKeys: Set = [
        "connections", "peers", "encrypted_peers", "authenticated_peers", "handshake_pending_count", "beacon_addr", "relay_peer_count",
        "bytes_sent", "bytes_recv", "accept_queue_drops", "webhook_queue_dropped", "webhook_circuit_skips", "version", "name",
    ]
}
