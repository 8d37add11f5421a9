/// The one call that may wait at a time on a stream's read, a stream's close or a listener's
/// accept, with the waiter id that lets its task's cancellation take it back.
struct WaitingCall<Value: Sendable> {
    typealias Waiter = CheckedContinuation<Result<Value, PilotDriverError>, Never>

    private var held: (id: UInt64, waiter: Waiter)?

    /// Whether a call waits.
    var isWaiting: Bool { held != nil }

    /// Holds `waiter` until `resume`; false, holding nothing, if a call waits already.
    mutating func hold(_ waiter: Waiter, id: UInt64) -> Bool {
        guard held == nil else { return false }
        held = (id, waiter)
        return true
    }

    /// Answers the waiting call, if there is one, with `result`.
    mutating func resume(_ result: Result<Value, PilotDriverError>) {
        held?.waiter.resume(returning: result)
        held = nil
    }

    /// The waiter of call `id`, taken back because its task was cancelled; nil if that call
    /// no longer waits.
    mutating func withdraw(_ id: UInt64) -> Waiter? {
        guard let held, held.id == id else { return nil }
        self.held = nil
        return held.waiter
    }
}
