public import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// The series of one process, in a swift-prometheus registry of its own (never the global
/// `MetricsSystem`: tests run a host and a rendezvous in one process).
///
/// Series are made with swift-metrics' types on `factory` (`Counter(label:dimensions:factory:)`,
/// `Gauge`, `Timer`, or `ScrapedCounter` for totals kept elsewhere). What the data plane counts
/// stays in its own plain integers: a collector registered with `onScrape` reads them and
/// publishes them just before each exposition, so that nothing on the packet path takes a lock
/// or allocates for metrics.
public final class MetricsRegistry: Sendable {
    /// swift-metrics' factory writing into this registry.
    public let factory: any MetricsFactory
    private let prometheus: PrometheusCollectorRegistry
    private let collectors = NIOLockedValueBox<[@Sendable () async -> Void]>([])

    /// Latency buckets of every `Timer` made on `factory`: 0.5 ms to 10 s, as registry requests
    /// over loopback and over a continent fall.
    public static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10),
    ]

    /// An empty registry; `help` says what each series (by name) counts, for its `# HELP` line.
    public init(help: [String: String] = [:]) {
        prometheus = PrometheusCollectorRegistry()
        factory = DescribedFactory(registry: prometheus, help: help, durationBuckets: Self.durationBuckets)
    }

    /// Runs `collect` before every exposition, in the order registered.
    public func onScrape(_ collect: @escaping @Sendable () async -> Void) {
        collectors.withLockedValue { $0.append(collect) }
    }

    /// Every series in Prometheus' text exposition format (version 0.0.4), after the collectors ran.
    public func exposition() async -> [UInt8] {
        for collect in collectors.withLockedValue({ $0 }) { await collect() }
        return prometheus.emitToBuffer()
    }
}
