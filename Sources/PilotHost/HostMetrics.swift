import CoreMetrics
import PilotMetrics
import PilotNet

/// pilot-host's Prometheus series (README, "Metrics"). Every one is host-wide, with labels
/// from fixed sets (path, direction, reason, outcome, registry request type): 100,000
/// identities make no more series than one. Per-identity series are there only when asked
/// for, for at most `metrics-per-identity` identities (`IdentitySeries`).
///
/// The data plane is read, not instrumented: at each scrape the collector asks the fabric's
/// loop once for what it already counts in plain integers (`TunnelCounters`, `TunnelTraffic`,
/// the stream counters) and publishes the totals; registry requests, which are few, are counted
/// as they end (`RegistryRequestMetrics`).
final class HostMetrics: Sendable {
    let registry = MetricsRegistry(help: HostMetrics.help)
    let registryRequests: RegistryRequestMetrics
    /// Nil: no per-identity series.
    private let identitySeries: IdentitySeries?

    /// `perIdentity`: how many identities get series of their own (0: none).
    init(perIdentity: Int = 0) {
        registryRequests = RegistryRequestMetrics(prefix: "pilot_host", factory: registry.factory)
        identitySeries = perIdentity > 0 ? IdentitySeries(limit: perIdentity, factory: registry.factory) : nil
    }

    /// What each series counts (its `# HELP` line; README, "Metrics", says more).
    static let help: [String: String] = [
        "pilot_host_identities": "Identities this host carries.",
        "pilot_host_identities_online": "Identities on the network now.",
        "pilot_host_tunnels": "Sessions with remote nodes, by path: direct or relay (through the beacon).",
        "pilot_host_streams": "Open streams.",
        "pilot_host_bytes_total": "Bytes of packets through the tunnels (before sealing, after opening), by direction.",
        "pilot_host_packets_total": "Packets through the tunnels, by direction.",
        "pilot_host_local_packets_total": "Packets between identities of this host (no tunnel).",
        "pilot_host_relayed_frames_total": "Tunnel frames through the beacon, by direction.",
        "pilot_host_key_exchange_frames_total": "Key exchange frames (PILK, PILA) received.",
        "pilot_host_key_exchanges_total": "Key exchanges by outcome: installed (a session made) or rejected (a key not the registry's).",
        "pilot_host_stream_retransmitted_segments_total": "Stream segments sent again.",
        "pilot_host_drops_total": "Frames and packets dropped, by reason.",
        "pilot_host_trust_handshakes_total": "Trust handshakes by outcome.",
        "pilot_host_identity_bytes_total": "Bytes through the tunnels of one identity (those given series of their own), by direction.",
        "pilot_host_identity_packets_total": "Packets through the tunnels of one identity (those given series of their own), by direction.",
    ].merging(RegistryRequestMetrics.help(prefix: "pilot_host")) { $1 }

    /// Frames and packets dropped, by reason: each reason a figure the fabric keeps.
    private static let drops: [(reason: String, figure: @Sendable (Figures) -> Int)] = [
        ("malformed", { $0.tunnels.malformed }),
        ("plaintext", { $0.tunnels.plaintextDropped }),
        ("no_session", { $0.tunnels.noSession }),
        ("authentication_failed", { $0.tunnels.authenticationFailed }),
        ("replayed", { $0.tunnels.replayed }),
        ("spoofed", { $0.tunnels.spoofed }),
        ("misrouted", { $0.tunnels.misrouted }),
        ("key_exchange_queue_full", { $0.tunnels.queueOverflow }),
        ("unsolicited_key_exchange", { $0.tunnels.unsolicited }),
        ("bad_beacon_message", { $0.tunnels.beacon }),
        ("no_relay", { $0.tunnels.relayUnavailable }),
        ("seal_failed", { $0.traffic.sealFailures }),
        ("untrusted", { $0.streams.untrustedDropped }),
        ("syn_rate_limited", { $0.streams.synsRateLimited }),
        ("stream_limit", { $0.streams.refusedAtLimit }),
        ("send_refused", { $0.sendRefused }),
        ("send_buffer_full", { $0.sendBacklogDropped }),
    ]

    /// What one scrape reads from the fabric.
    struct Figures: Sendable {
        var tunnels: TunnelCounters
        var traffic: TunnelTraffic
        var streams: Fabric.StreamCounters
        var paths: (direct: Int, relayed: Int)
        var sendRefused: Int
        var sendBacklogDropped: Int

        init(_ fabric: Fabric) async throws {
            tunnels = try await fabric.counters()
            traffic = try await fabric.totalTraffic()
            streams = try await fabric.streamCounters()
            paths = try await fabric.tunnelPaths()
            let failures = try await fabric.sendFailures()
            sendRefused = failures.refused.values.reduce(0, +)
            sendBacklogDropped = failures.backlogDropped
        }
    }

    /// Publishes `pool`'s, `presence`'s and `trust`'s figures at every scrape.
    func watch(pool: IdentityPool, presence: Presence, trust: TrustService) {
        let factory = registry.factory
        func counter(_ name: String, _ dimensions: [(String, String)] = []) -> ScrapedCounter {
            ScrapedCounter(label: "pilot_host_" + name, dimensions: dimensions, factory: factory)
        }
        func gauge(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
            CoreMetrics.Gauge(label: "pilot_host_" + name, dimensions: dimensions, factory: factory)
        }
        let identities = gauge("identities")
        let online = gauge("identities_online")
        let direct = gauge("tunnels", [("path", "direct")])
        let relayed = gauge("tunnels", [("path", "relay")])
        let streams = gauge("streams")
        let bytesIn = counter("bytes_total", [("direction", "in")])
        let bytesOut = counter("bytes_total", [("direction", "out")])
        let packetsIn = counter("packets_total", [("direction", "in")])
        let packetsOut = counter("packets_total", [("direction", "out")])
        let localPackets = counter("local_packets_total")
        let relayedIn = counter("relayed_frames_total", [("direction", "in")])
        let relayedOut = counter("relayed_frames_total", [("direction", "out")])
        let keyExchangeFrames = counter("key_exchange_frames_total")
        let sessionsInstalled = counter("key_exchanges_total", [("outcome", "installed")])
        let keyExchangesRejected = counter("key_exchanges_total", [("outcome", "rejected")])
        let retransmitted = counter("stream_retransmitted_segments_total")
        let drops = Self.drops.map { (counter("drops_total", [("reason", $0.reason)]), $0.figure) }
        let handshakes = HandshakeOutcome.allCases.map { ($0, counter("trust_handshakes_total", [("outcome", $0.rawValue)])) }
        let identitySeries = identitySeries
        registry.onScrape {
            if let identitySeries { await identitySeries.publish(from: presence.fabric, names: pool) }
            identities.record(await pool.count)
            let (joined, _, _) = await presence.load()
            online.record(joined)
            let outcomes = await trust.outcomes
            for (outcome, counter) in handshakes { counter.publish(total: outcomes[outcome] ?? 0) }
            // A fabric shut down (the host stopping) has no figures: the last ones stand.
            guard let figures = try? await Figures(presence.fabric) else { return }
            direct.record(figures.paths.direct)
            relayed.record(figures.paths.relayed)
            streams.record(figures.streams.open)
            bytesIn.publish(total: figures.traffic.bytesReceived)
            bytesOut.publish(total: figures.traffic.bytesSent)
            packetsIn.publish(total: figures.traffic.packetsReceived)
            packetsOut.publish(total: figures.traffic.packetsSent)
            localPackets.publish(total: figures.streams.localPackets)
            relayedIn.publish(total: figures.tunnels.relayedIn)
            relayedOut.publish(total: figures.tunnels.relayedOut)
            keyExchangeFrames.publish(total: figures.tunnels.keyExchangesIn)
            sessionsInstalled.publish(total: figures.tunnels.sessionsInstalled)
            keyExchangesRejected.publish(total: figures.tunnels.keyExchangesRejected)
            retransmitted.publish(total: figures.streams.retransmitted)
            for (counter, figure) in drops { counter.publish(total: figure(figures)) }
        }
    }
}
