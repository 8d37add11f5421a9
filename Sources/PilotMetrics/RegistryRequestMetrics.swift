public import CoreMetrics
import NIOConcurrencyHelpers
public import PilotWire

/// Registry requests counted by type and outcome, and timed: the same series on both ends of
/// the registry protocol, `PREFIX_registry_requests_total{type,outcome}` and
/// `PREFIX_registry_request_duration_seconds` (a histogram). Types outside
/// `RegistryMessage.requestTypes` count as `other`, so there are at most 28 × `Outcome` series.
/// The requests inside a `batch` are counted too, each by its own type and by what its own reply
/// says, as `PREFIX_registry_batch_items_total{type,outcome}` (the batch itself is one request
/// above).
public final class RegistryRequestMetrics: Sendable {
    /// How a request ended.
    public enum Outcome: String, Sendable, CaseIterable {
        /// Answered with a reply that is not an error.
        case ok
        /// Answered with `{"type":"error"}`.
        case error
        /// Refused unanswered by a rate limit.
        case rateLimited = "rate_limited"
        /// Not answered: the connection failed or the server stopped.
        case failed
    }

    private let prefix: String
    private let factory: any MetricsFactory
    private let duration: CoreMetrics.Timer
    private let counters = NIOLockedValueBox<[String: CoreMetrics.Counter]>([:])

    /// The series named `prefix`_registry_..., in `factory`'s registry.
    public init(prefix: String, factory: any MetricsFactory) {
        self.prefix = prefix
        self.factory = factory
        duration = CoreMetrics.Timer(label: prefix + "_registry_request_duration_seconds", factory: factory)
    }

    /// Counts `request` as ending in `outcome` after `nanoseconds`; for a batch answered with
    /// `reply`, each of its requests as well.
    public func record(_ request: RegistryMessage, _ outcome: Outcome, nanoseconds: Int64, reply: RegistryMessage? = nil) {
        counter("_registry_requests_total", request.typeLabel, outcome).increment()
        duration.recordNanoseconds(nanoseconds)
        guard request.type == "batch", let items = request["requests"]?.arrayValue else { return }
        let replies = reply?["replies"]?.arrayValue ?? []
        for (index, item) in items.enumerated() {
            let type = item["type"]?.stringValue.map { RegistryMessage.requestTypes.contains($0) ? $0 : "other" } ?? "other"
            // An item without its reply (a batch refused whole, or unanswered) ends as the batch did.
            let itemOutcome = index < replies.count ? (replies[index]["type"] == "error" ? .error : .ok) : outcome
            counter("_registry_batch_items_total", type, itemOutcome).increment()
        }
    }

    /// The counter `prefix``name`{type, outcome}, made at its first use.
    private func counter(_ name: String, _ type: String, _ outcome: Outcome) -> CoreMetrics.Counter {
        counters.withLockedValue { counters in
            let key = name + " " + type + " " + outcome.rawValue
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(label: prefix + name, dimensions: [("type", type), ("outcome", outcome.rawValue)], factory: factory)
            counters[key] = counter
            return counter
        }
    }

    /// The `# HELP` texts of these series, for `MetricsRegistry(help:)`.
    public static func help(prefix: String) -> [String: String] {
        [
            prefix + "_registry_requests_total": "Registry requests by type (a batch once, as batch) and outcome: ok, error, rate_limited, failed.",
            prefix + "_registry_request_duration_seconds": "Time from a registry request to its reply.",
            prefix + "_registry_batch_items_total": "Requests inside registry batches, by their own type and their own reply's outcome.",
        ]
    }

    /// The outcome a reply says.
    public static func outcome(of reply: RegistryMessage) -> Outcome {
        reply.type == "error" ? .error : .ok
    }
}
