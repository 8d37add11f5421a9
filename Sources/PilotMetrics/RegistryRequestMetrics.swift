public import CoreMetrics
import NIOConcurrencyHelpers
public import PilotWire

/// Registry requests counted by type and outcome, and timed: the same series on both ends of
/// the registry protocol, `PREFIX_registry_requests_total{type,outcome}` and
/// `PREFIX_registry_request_duration_seconds` (a histogram). Types outside
/// `RegistryMessage.requestTypes` count as `other`, so there are at most 28 × `Outcome` series.
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

    /// Counts `request` as ending in `outcome` after `nanoseconds`.
    public func record(_ request: RegistryMessage, _ outcome: Outcome, nanoseconds: Int64) {
        let type = request.typeLabel
        let counter = counters.withLockedValue { counters in
            let key = type + " " + outcome.rawValue
            if let counter = counters[key] { return counter }
            let counter = CoreMetrics.Counter(
                label: prefix + "_registry_requests_total", dimensions: [("type", type), ("outcome", outcome.rawValue)], factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment()
        duration.recordNanoseconds(nanoseconds)
    }

    /// The outcome a reply says.
    public static func outcome(of reply: RegistryMessage) -> Outcome {
        reply.type == "error" ? .error : .ok
    }
}
