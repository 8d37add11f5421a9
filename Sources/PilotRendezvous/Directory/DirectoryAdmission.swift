import PilotWire

/// Who may ask the directory a question now: a token bucket per asking node, a bound on the
/// askers remembered, and on the answers under way (each answer is a stream the directory dials).
struct DirectoryAdmission: Sendable {
    struct Limits: Sendable {
        /// Questions one node may ask per second, after a burst of `burst`.
        var questionsPerSecond = 2.0
        var burst = 10.0
        /// Askers whose buckets are remembered at once; full buckets are forgotten first.
        var maxAskers = 65536
        /// Answers being delivered at once, all askers together.
        var maxAnswersUnderWay = 64
    }

    enum Decision: Equatable {
        case answer
        /// This asker asks too fast.
        case throttled
        /// Too many answers under way, or too many askers remembered.
        case busy
    }

    let limits: Limits
    private var buckets: [UInt32: TokenBucket] = [:]
    private(set) var answersUnderWay = 0

    init(limits: Limits) { self.limits = limits }

    /// Whether `asker`'s question is answered; `.answer` counts an answer under way until
    /// `answered()`.
    mutating func admit(_ asker: UInt32, now: Double) -> Decision {
        if buckets[asker] == nil, buckets.count >= limits.maxAskers {
            buckets = buckets.filter { !$0.value.isFull(now: now) }
            guard buckets.count < limits.maxAskers else { return .busy }
        }
        var bucket = buckets[asker] ?? TokenBucket(capacity: limits.burst, ratePerSecond: limits.questionsPerSecond, now: now)
        guard bucket.take(now: now) else {
            buckets[asker] = bucket
            return .throttled
        }
        buckets[asker] = bucket
        guard answersUnderWay < limits.maxAnswersUnderWay else { return .busy }
        answersUnderWay += 1
        return .answer
    }

    /// An answer was delivered, or given up.
    mutating func answered() { answersUnderWay = max(0, answersUnderWay - 1) }
}
