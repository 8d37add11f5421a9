import NIOConcurrencyHelpers
import PilotWire

/// The result of `body`, or `ControlFailure(.timeout)` once `limit` has passed. Returns at the
/// limit even if `body` does not notice its cancellation (a dial waits on its own timers); it
/// ends later. A cancelled caller (its client hung up) cancels `body` at once.
public func withTimeout<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = TimeoutRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.start(continuation, work: Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                race.settle(result)
            })
            Task {
                try? await Task.sleep(for: limit)
                race.settle(.failure(ControlFailure(.timeout, "no answer within \(limit)")))
            }
        }
    } onCancel: {
        race.settle(.failure(CancellationError()))
    }
}

/// What `body` hands to `add` until it returns or `limit` passes: on a timeout, what arrived
/// until then is kept (not lost with the task). `add` returns how many items there are so far.
public func collect<T: Sendable>(
    within limit: Duration, _ body: @escaping @Sendable (_ add: @escaping @Sendable (T) -> Int) async -> Void
) async -> [T] {
    let items = NIOLockedValueBox<[T]>([])
    _ = try? await withTimeout(limit) {
        await body { item in items.withLockedValue { $0.append(item); return $0.count } }
    }
    return items.withLockedValue { $0 }
}

/// The one outcome of `withTimeout`: the work's result, the timeout or the caller's cancellation,
/// whichever comes first; the work is cancelled when it is not the first.
private final class TimeoutRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        /// Settled before `start` (cancelled at once): what to resume with then.
        var early: Result<T, any Error>?
        var settled = false
    }

    private let state = NIOLockedValueBox(State())

    func start(_ continuation: CheckedContinuation<T, any Error>, work: Task<Void, Never>) {
        let early = state.withLockedValue { state -> Result<T, any Error>? in
            state.continuation = continuation
            state.work = work
            return state.early
        }
        if let early {
            work.cancel()
            continuation.resume(with: early)
        }
    }

    func settle(_ result: Result<T, any Error>) {
        let (continuation, work) = state.withLockedValue { state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard !state.settled else { return (nil, nil) }
            state.settled = true
            guard let continuation = state.continuation else {
                state.early = result
                return (nil, nil)
            }
            state.continuation = nil
            return (continuation, state.work)
        }
        if case .failure = result { work?.cancel() }
        continuation?.resume(with: result)
    }
}
