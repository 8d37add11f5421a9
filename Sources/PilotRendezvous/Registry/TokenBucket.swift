/// A token bucket: `capacity` tokens, refilled at `ratePerSecond`. Time is passed in, so tests
/// and callers choose the clock.
struct TokenBucket: Sendable {
    let capacity: Double
    let ratePerSecond: Double
    private var tokens: Double
    private var updated: Double

    init(capacity: Double, ratePerSecond: Double, now: Double) {
        self.capacity = capacity
        self.ratePerSecond = ratePerSecond
        tokens = capacity
        updated = now
    }

    /// Whether the bucket has refilled to capacity by `now`: forgetting it changes nothing.
    func isFull(now: Double) -> Bool {
        tokens + max(0, now - updated) * ratePerSecond >= capacity
    }

    /// Takes one token if there is one.
    mutating func take(now: Double) -> Bool {
        tokens = min(capacity, tokens + max(0, now - updated) * ratePerSecond)
        updated = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
