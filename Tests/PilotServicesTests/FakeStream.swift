import NIOConcurrencyHelpers
import PilotNet
import PilotServices
import PilotWire

/// One end of an in-memory stream: what it writes arrives as `.data` in the other end's
/// `events`, and everything it does is recorded, so a test hands one end to a service and
/// asserts on the bytes the service wrote, whether it closed, and what it asked for.
///
/// How `flush` and `write` answer is the test's to set (`flushing`, `failsWrites`), and
/// `readMessage` waits at most `readTimeoutCap`, so a service's long read timeout can be
/// proved without waiting it out (the timeout it asked for is recorded in `readTimeouts`).
final class FakeStream: ServiceStream {
    /// What `flush` does.
    enum Flush: Sendable {
        /// Returns at once: the peer acknowledged everything.
        case succeeds
        /// Waits until the flushing task is cancelled, then throws: an acknowledgement that
        /// never comes.
        case hangs
        /// Throws at once: the stream ended before everything was acknowledged.
        case fails
    }

    /// What a fake end throws.
    struct Failure: Error, Equatable {
        let reason: String
    }

    /// What one end has done and how it is told to answer.
    private struct State {
        var writes: [[UInt8]] = []
        var closed = false
        var aborted = false
        var flushes = 0
        var flushing = Flush.succeeds
        var failsWrites = false
        var hangsWrites = false
        var readTimeoutCap: Duration?
        var readTimeouts: [Duration] = []
    }

    /// Both ends' inbound events: the only thing the two ends share. A continuation holds no
    /// reference to either end, so a pair makes no cycle.
    private final class Wire: Sendable {
        let toFirst: AsyncStream<StreamEvent>.Continuation
        let toSecond: AsyncStream<StreamEvent>.Continuation
        /// Whether either end aborted: then neither takes writes.
        let reset = NIOLockedValueBox(false)

        init(toFirst: AsyncStream<StreamEvent>.Continuation, toSecond: AsyncStream<StreamEvent>.Continuation) {
            self.toFirst = toFirst
            self.toSecond = toSecond
        }
    }

    let events: AsyncStream<StreamEvent>
    let remote: Address
    private let wire: Wire
    private let isFirst: Bool
    private let state = NIOLockedValueBox(State())

    private init(events: AsyncStream<StreamEvent>, remote: Address, wire: Wire, isFirst: Bool) {
        self.events = events
        self.remote = remote
        self.wire = wire
        self.isFirst = isFirst
    }

    /// Two connected ends: the first is `local`'s (its `remote` is `remote`), the second
    /// `remote`'s.
    static func pair(local: Address, remote: Address) -> (FakeStream, FakeStream) {
        let (toFirst, firstInput) = AsyncStream.makeStream(of: StreamEvent.self, bufferingPolicy: .unbounded)
        let (toSecond, secondInput) = AsyncStream.makeStream(of: StreamEvent.self, bufferingPolicy: .unbounded)
        let wire = Wire(toFirst: firstInput, toSecond: secondInput)
        return (
            FakeStream(events: toFirst, remote: remote, wire: wire, isFirst: true),
            FakeStream(events: toSecond, remote: local, wire: wire, isFirst: false)
        )
    }

    private var toPeer: AsyncStream<StreamEvent>.Continuation { isFirst ? wire.toSecond : wire.toFirst }
    private var toSelf: AsyncStream<StreamEvent>.Continuation { isFirst ? wire.toFirst : wire.toSecond }

    // MARK: What the test sets

    /// How `flush` answers from now on.
    var flushing: Flush {
        get { state.withLockedValue { $0.flushing } }
        set { state.withLockedValue { $0.flushing = newValue } }
    }

    /// Whether `write` throws from now on (a peer gone without a word).
    var failsWrites: Bool {
        get { state.withLockedValue { $0.failsWrites } }
        set { state.withLockedValue { $0.failsWrites = newValue } }
    }

    /// Whether `write` waits (a reader that does not read) until this is false again or the
    /// writer is cancelled.
    var hangsWrites: Bool {
        get { state.withLockedValue { $0.hangsWrites } }
        set { state.withLockedValue { $0.hangsWrites = newValue } }
    }

    /// The longest `readMessage` waits, whatever timeout it is asked for.
    var readTimeoutCap: Duration? {
        get { state.withLockedValue { $0.readTimeoutCap } }
        set { state.withLockedValue { $0.readTimeoutCap = newValue } }
    }

    // MARK: What the test reads

    /// Each write's bytes, in order.
    var writes: [[UInt8]] { state.withLockedValue { $0.writes } }
    /// Every byte written, in order.
    var written: [UInt8] { state.withLockedValue { $0.writes.flatMap { $0 } } }
    /// Whether this end closed.
    var isClosed: Bool { state.withLockedValue { $0.closed } }
    /// Whether this end aborted.
    var isAborted: Bool { state.withLockedValue { $0.aborted } }
    /// How often `flush` was called.
    var flushes: Int { state.withLockedValue { $0.flushes } }
    /// The timeouts `readMessage` was asked for.
    var readTimeouts: [Duration] { state.withLockedValue { $0.readTimeouts } }

    // MARK: ServiceStream

    func write(_ bytes: [UInt8]) async throws {
        while state.withLockedValue({ $0.hangsWrites }) { try await Task.sleep(for: .milliseconds(5)) }
        let refusal = state.withLockedValue { state -> String? in
            if state.failsWrites { return "the test made writes fail" }
            if state.closed || state.aborted { return "this end is closed" }
            state.writes.append(bytes)
            return nil
        }
        if let refusal { throw Failure(reason: refusal) }
        guard !wire.reset.withLockedValue({ $0 }) else { throw Failure(reason: "the stream was reset") }
        toPeer.yield(.data(bytes))
    }

    func flush() async throws {
        let flushing = state.withLockedValue { state -> Flush in
            state.flushes += 1
            return state.flushing
        }
        switch flushing {
        case .succeeds: return
        case .fails: throw Failure(reason: "the test made flush fail")
        case .hangs:
            // Task.sleep throws as soon as the task is cancelled: the acknowledgement never
            // comes, and the waiter gives up when its caller does.
            try await Task.sleep(for: .seconds(3600))
            throw Failure(reason: "a hung flush outlived an hour")
        }
    }

    func close() async throws {
        let first = state.withLockedValue { state -> Bool in
            defer { state.closed = true }
            return !state.closed && !state.aborted
        }
        guard first else { return }
        toPeer.yield(.finished)
        toPeer.finish()
    }

    func abort() async {
        state.withLockedValue { $0.aborted = true }
        wire.reset.withLockedValue { $0 = true }
        for side in [toPeer, toSelf] {
            side.yield(.closed(reason: "reset"))
            side.finish()
        }
    }

    func readMessage(limit: Int, timeout: Duration, complete: @escaping @Sendable ([UInt8]) -> Bool) async -> [UInt8] {
        let wait = state.withLockedValue { state -> Duration in
            state.readTimeouts.append(timeout)
            return min(timeout, state.readTimeoutCap ?? timeout)
        }
        // Past the wait the read is cancelled, and the stream with it, as StreamHandle's is.
        let message = try? await withTimeout(wait) { [events] in
            var bytes: [UInt8] = []
            // A fake's `.finished` and `.closed` are its last events: the loop ends with them.
            for await case .data(let chunk) in events {
                bytes += chunk
                guard bytes.count < limit, !complete(bytes) else { break }
            }
            return bytes
        }
        return message ?? []
    }
}
