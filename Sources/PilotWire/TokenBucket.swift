/// A token bucket: at most `capacity` tokens, refilled continuously at `ratePerSecond`, full at
/// the start.
///
/// Time is passed in as seconds on any monotonic clock the caller picks (tests pass their own),
/// so the bucket does no I/O. Time that goes backwards adds nothing and is not remembered:
/// tokens are never counted twice for the same interval.
public struct TokenBucket: Sendable {
    /// The most tokens the bucket holds: the longest burst it admits.
    public let capacity: Double
    /// Tokens added per second of elapsed time.
    public let ratePerSecond: Double
    private var tokens: Double
    private var updated: Double

    /// A full bucket at `now` (seconds).
    public init(capacity: Double, ratePerSecond: Double, now: Double) {
        self.capacity = capacity
        self.ratePerSecond = ratePerSecond
        tokens = capacity
        updated = now
    }

    /// The tokens held at `now`, refill included (fractions count toward the next token).
    public func available(now: Double) -> Double {
        min(capacity, tokens + max(0, now - updated) * ratePerSecond)
    }

    /// Whether a token could be taken at `now`, without taking it.
    public func canTake(now: Double) -> Bool {
        available(now: now) >= 1
    }

    /// Whether the bucket has refilled to capacity by `now`: forgetting it changes nothing.
    public func isFull(now: Double) -> Bool {
        available(now: now) >= capacity
    }

    /// Takes one token if there is one at `now`; whether it did.
    public mutating func take(now: Double) -> Bool {
        if now > updated {
            tokens = available(now: now)
            updated = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
