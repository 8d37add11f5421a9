public import CoreMetrics
import NIOConcurrencyHelpers

/// A Prometheus counter whose total is kept elsewhere (an event loop's plain integers, a
/// registry's tally) and published at scrape time: each `publish(total:)` adds what the total
/// grew by since the last. The series never goes down: a total that shrinks (its keeper
/// restarted) is counted from its new value on.
public final class ScrapedCounter: Sendable {
    private let counter: CoreMetrics.Counter
    private let published = NIOLockedValueBox(0)

    /// The counter `label` with `dimensions`, in `factory`'s registry.
    public init(label: String, dimensions: [(String, String)] = [], factory: any MetricsFactory) {
        counter = CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory)
    }

    /// Publishes `total`, the keeper's figure now.
    public func publish(total: Int) {
        published.withLockedValue { last in
            if total > last { counter.increment(by: Int64(total - last)) }
            last = total
        }
    }

    /// Removes the series from the registry (a per-identity series whose identity left).
    public func destroy() {
        counter.destroy()
    }
}
