import CoreMetrics
import NIOConcurrencyHelpers
import PilotMetrics
import PilotNet

/// The per-identity series, asked for with `metrics-per-identity = N`:
/// `pilot_host_identity_bytes_total{identity,direction}` and
/// `pilot_host_identity_packets_total{identity,direction}` of the N identities (at most 1000)
/// whose tunnels carried the most bytes at the scrape. An identity that drops out of the N
/// loses its series; one that comes in gets them with its whole total. So at most 4 × N series,
/// however many identities the host has.
final class IdentitySeries: Sendable {
    private let limit: Int
    private let factory: any MetricsFactory
    /// The series published, by node: the identity's name and its four counters.
    private let published = NIOLockedValueBox<[UInt32: (name: String, counters: [ScrapedCounter])]>([:])

    init(limit: Int, factory: any MetricsFactory) {
        self.limit = limit
        self.factory = factory
    }

    /// Publishes the busiest identities' traffic, named as `names` knows them.
    func publish(from fabric: Fabric, names: IdentityPool) async {
        guard let traffic = try? await fabric.trafficByIdentity() else { return }
        let busiest = traffic.filter { $0.value.bytesSent + $0.value.bytesReceived > 0 }
            .sorted { $0.value.bytesSent + $0.value.bytesReceived > $1.value.bytesSent + $1.value.bytesReceived }
            .prefix(limit)
        var named: [(node: UInt32, name: String, traffic: TunnelTraffic)] = []
        for (node, figures) in busiest {
            if let name = await names.identity(withNode: node)?.name { named.append((node, name, figures)) }
        }
        published.withLockedValue { published in
            let keep = Dictionary(named.map { ($0.node, $0.name) }, uniquingKeysWith: { first, _ in first })
            for (node, series) in published where keep[node] != series.name {
                series.counters.forEach { $0.destroy() }
                published[node] = nil
            }
            for (node, name, figures) in named {
                let counters = published[node]?.counters ?? makeCounters(name)
                published[node] = (name, counters)
                for (counter, total) in zip(counters, [figures.bytesReceived, figures.bytesSent, figures.packetsReceived, figures.packetsSent]) {
                    counter.publish(total: total)
                }
            }
        }
    }

    /// Bytes in, bytes out, packets in, packets out.
    private func makeCounters(_ name: String) -> [ScrapedCounter] {
        [("bytes", "in"), ("bytes", "out"), ("packets", "in"), ("packets", "out")].map { what, direction in
            ScrapedCounter(
                label: "pilot_host_identity_\(what)_total", dimensions: [("identity", name), ("direction", direction)], factory: factory)
        }
    }
}
