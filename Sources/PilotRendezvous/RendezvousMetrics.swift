public import PilotMetrics
import CoreMetrics

/// pilot-rendezvous's Prometheus series (README, "Metrics"): registry requests by type and
/// outcome and their latency (counted as each ends), and at every scrape the registered nodes,
/// database errors and the beacon's load, read from the figures the registry and the beacon
/// already keep. Labels come from fixed sets: the nodes' number never makes a series.
public final class RendezvousMetrics: Sendable {
    /// The series, for the endpoint.
    public let registry = MetricsRegistry(help: RendezvousMetrics.help)
    /// For `RegistryServer.Configuration.metrics`.
    public let registryRequests: RegistryRequestMetrics

    /// What each series counts (its `# HELP` line; README, "Metrics", says more).
    static let help: [String: String] = [
        "pilot_rendezvous_registered_nodes": "Nodes the registry knows, online or not.",
        "pilot_rendezvous_database_errors_total": "Requests and the registry's own rounds (reaping, retiring, following other instances) that failed because its database refused a read or a write.",
        "pilot_rendezvous_beacon_relayed_packets_total": "Frames the beacon relayed.",
        "pilot_rendezvous_beacon_relayed_bytes_total": "Bytes of the frames the beacon relayed.",
        "pilot_rendezvous_beacon_punch_requests_total": "Hole punches the beacon coordinated.",
        "pilot_rendezvous_beacon_discovers_total": "Discover requests the beacon answered.",
        "pilot_rendezvous_beacon_notifies_total": "Pokes the beacon sent to nodes a relayed handshake waits for.",
        "pilot_rendezvous_beacon_drops_total": "Beacon messages dropped, by reason.",
        "pilot_rendezvous_beacon_peer_relays_forwarded_total": "Relayed frames sent on to the peer beacon that knows their destination.",
        "pilot_rendezvous_beacon_peer_punches_total": "Punch requests forwarded to a peer beacon, or answered for one.",
        "pilot_rendezvous_beacon_peer_syncs_total": "Node lists exchanged with peer beacons, by direction.",
        "pilot_rendezvous_beacon_peers": "Peer beacons now: those of --beacon-peers and those found in the database.",
    ].merging(RegistryRequestMetrics.help(prefix: "pilot_rendezvous")) { $1 }

    /// No series but the registry requests' yet (see `watch`).
    public init() {
        registryRequests = RegistryRequestMetrics(prefix: "pilot_rendezvous", factory: registry.factory)
    }

    /// Publishes `nodes`' and `beacon`'s figures at every scrape.
    public func watch(_ nodes: Registry, beacon: BeaconServer) {
        let factory = registry.factory
        func counter(_ name: String, _ dimensions: [(String, String)] = []) -> ScrapedCounter {
            ScrapedCounter(label: "pilot_rendezvous_" + name, dimensions: dimensions, factory: factory)
        }
        let registered = CoreMetrics.Gauge(label: "pilot_rendezvous_registered_nodes", factory: factory)
        let peerBeacons = CoreMetrics.Gauge(label: "pilot_rendezvous_beacon_peers", factory: factory)
        let databaseErrors = counter("database_errors_total")
        let relayedPackets = counter("beacon_relayed_packets_total")
        let relayedBytes = counter("beacon_relayed_bytes_total")
        let punchRequests = counter("beacon_punch_requests_total")
        let discovers = counter("beacon_discovers_total")
        let notifies = counter("beacon_notifies_total")
        let drops: [(ScrapedCounter, @Sendable (BeaconServer.Counters) -> Int)] = [
            (counter("beacon_drops_total", [("reason", "unknown_destination")]), { $0.relayDropped }),
            (counter("beacon_drops_total", [("reason", "rate_limited")]), { $0.rateLimited }),
            (counter("beacon_drops_total", [("reason", "malformed")]), { $0.malformed }),
            (counter("beacon_drops_total", [("reason", "punch_refused")]), { $0.punchesRefused }),
            (counter("beacon_drops_total", [("reason", "not_from_peer")]), { $0.notFromPeer }),
        ]
        // Peer beacons (`--beacon-peers`): what went to them, what came from them.
        let peers: [(ScrapedCounter, @Sendable (BeaconServer.Counters) -> Int)] = [
            (counter("beacon_peer_relays_forwarded_total"), { $0.relaysForwarded }),
            (counter("beacon_peer_punches_total", [("direction", "forwarded")]), { $0.punchesForwarded }),
            (counter("beacon_peer_punches_total", [("direction", "answered")]), { $0.punchesAnsweredForPeers }),
            (counter("beacon_peer_syncs_total", [("direction", "sent")]), { $0.syncsSent }),
            (counter("beacon_peer_syncs_total", [("direction", "received")]), { $0.syncsReceived }),
        ]
        registry.onScrape {
            registered.record(nodes.nodeCount)
            databaseErrors.publish(total: nodes.databaseErrors)
            peerBeacons.record(beacon.peers.count)
            let beaconCounters = beacon.counters
            relayedPackets.publish(total: beaconCounters.relayed)
            relayedBytes.publish(total: beaconCounters.relayedBytes)
            punchRequests.publish(total: beaconCounters.punches)
            discovers.publish(total: beaconCounters.discovers)
            notifies.publish(total: beaconCounters.notifies)
            for (counter, figure) in drops + peers { counter.publish(total: figure(beaconCounters)) }
        }
    }
}
