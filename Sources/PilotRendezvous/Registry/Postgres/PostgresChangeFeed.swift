import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// The second connection of an instance sharing the database: it `LISTEN`s on
/// `RegistryChange.channel` and hands what the other instances commit to `apply`. When the
/// connection is lost it connects again, backing off, and then asks for `resynchronise`:
/// notifications sent meanwhile are lost, so everything is read again. The registry keeps
/// answering from memory all the while.
///
/// `apply` and `resynchronise` read the database and take the registry's lock (`resynchronise`
/// only once it has read): they run on a serial queue of the feed's own, never on an event loop
/// or in a task. Changes that arrive
/// while one round runs are gathered and applied together in the next. Each returns whether it
/// succeeded; after a failure (the database gone meanwhile) everything is read again later.
final class PostgresChangeFeed: Sendable {
    /// How long the feed waits before connecting again: `first`, doubled after each failure up
    /// to `longest`.
    struct BackOff: Sendable {
        var first: TimeAmount = .milliseconds(250)
        var longest: TimeAmount = .seconds(5)
    }

    private let location: PostgresLocation
    private let instance: String
    private let backOff: BackOff
    private let logger: Logger
    private let apply: @Sendable ([RegistryChange]) -> Bool
    private let resynchronise: @Sendable () -> Bool
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let queue = DispatchQueue(label: "pilot-registry.changes")
    private let state = NIOLockedValueBox(State())

    private struct State {
        var task: Task<Void, Never>?
        var connection: PostgresConnection?
        /// Changes heard and not applied yet, in order, each once.
        var pending: [RegistryChange] = []
        var pendingSet: Set<RegistryChange> = []
        var resynchronise = false
        /// A round is queued or running on `queue`.
        var draining = false
        var stopped = false
        /// Seconds before a failed round is tried again.
        var retryDelay = 1.0
        /// `start` ran: `run` shuts the event loop down when it ends.
        var started = false
        /// `run` is ending and shuts the event loop down: nothing more may be asked of it.
        var loopEnding = false
        /// Connections that listened, so far.
        var connections = 0
        /// Times everything was read again to the end, so far.
        var readsOfEverything = 0
        /// Unanswered COMMITs whose server processes are to be waited for (`readAgain`), the
        /// thread that waits for them running, and whether some were left out.
        var unsettled: [Unsettled] = []
        var settling = false
        var resynchroniseOnceSettled = false
    }

    init(
        location: PostgresLocation, instance: String, backOff: BackOff, commitPatience: TimeAmount, logger: Logger,
        apply: @escaping @Sendable ([RegistryChange]) -> Bool, resynchronise: @escaping @Sendable () -> Bool
    ) {
        self.location = location
        self.instance = instance
        self.backOff = backOff
        self.commitPatience = commitPatience
        self.logger = logger
        self.apply = apply
        self.resynchronise = resynchronise
    }

    /// Connections that listened so far: more than one means it was lost and made again.
    var connections: Int { state.withLockedValue { $0.connections } }

    /// Times everything was read again to the end (after each listen) so far.
    var readsOfEverything: Int { state.withLockedValue { $0.readsOfEverything } }

    func start() {
        let task = Task { await self.run() }
        state.withLockedValue { state in
            state.task = task
            state.started = true
        }
    }

    /// Stops listening and applying; what is queued is dropped. Once: later calls do nothing.
    func stop() {
        let stopping = state.withLockedValue { state -> (task: Task<Void, Never>?, started: Bool)? in
            guard !state.stopped else { return nil }
            state.stopped = true
            defer {
                state.task = nil
                state.connection = nil
            }
            // Closed here, under the lock, so that its close is under way before `run` may shut
            // the event loop down (a close asked of a loop already shut down never completes).
            // Once `run` is ending, it closes the connection itself.
            if !state.loopEnding, let connection = state.connection {
                connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
            }
            return (state.task, state.started)
        }
        guard let stopping else { return }
        stopping.task?.cancel()
        // The loop goes when `run` has ended (it closes its connection on it first); never
        // started, at once.
        if !stopping.started { group.shutdownGracefully { _ in } }
    }

    // MARK: Listening

    private func run() async {
        defer {
            state.withLockedValue { $0.loopEnding = true }
            group.shutdownGracefully { _ in }
        }
        var delay = backOff.first
        while !Task.isCancelled {
            let listened = connections
            var opened: PostgresConnection?
            do {
                // On the primary: standbys hear no notifications.
                let (connection, _) = try await PostgresSession.primary(of: location, on: group.next(), within: .seconds(5), id: 1, logger: logger).get()
                opened = connection
                let stopped = state.withLockedValue { state in
                    state.connection = connection
                    return state.stopped
                }
                if stopped {
                    try? await connection.close()
                    return
                }
                // A connection that only receives would never see a peer that vanished without a
                // reset (a NAT's or load balancer's idle timeout, a server powered off): asked
                // something every `Self.ping.every`, it must answer within `Self.ping.within`,
                // else it is closed, and listening starts again with everything read again.
                let pinger = Task { await Self.keepAsking(connection, logger: logger) }
                defer { pinger.cancel() }
                try await connection.listen(on: RegistryChange.channel) { notifications in
                    // Listening: from here nothing another instance commits is missed, and what
                    // was committed before is read again.
                    state.withLockedValue { $0.connections += 1 }
                    enqueue([], resynchronise: true)
                    for try await notification in notifications { heard(notification.payload) }
                }
            } catch where !Task.isCancelled {
                logger.warning(
                    "the registry database's notifications are lost; listening again",
                    metadata: ["database": "\(location)", "error": "\(PostgresSession.reason(error))"])
            } catch {
                // Stopped.
            }
            // Closed before it goes, even when the server closed it (postgres-nio asserts so).
            try? await opened?.close()
            state.withLockedValue { $0.connection = nil }
            if connections > listened { delay = backOff.first }
            try? await Task.sleep(nanoseconds: UInt64(delay.nanoseconds))
            delay = min(delay * 2, backOff.longest)
        }
    }

    /// How often the listening connection is asked something, and how long it has to answer.
    static let ping = (every: TimeAmount.seconds(30), within: TimeAmount.seconds(5))

    /// Asks `connection` `SELECT 1` every `ping.every` until cancelled; closes it when an answer
    /// does not come within `ping.within`.
    private static func keepAsking(_ connection: PostgresConnection, logger: Logger) async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: UInt64(ping.every.nanoseconds))
            guard !Task.isCancelled, !connection.isClosed else { return }
            let answered = NIOLockedValueBox(false)
            let deadline = connection.eventLoop.scheduleTask(in: ping.within) {
                guard !answered.withLockedValue({ $0 }) else { return }
                logger.warning("the registry database's listening connection did not answer; connecting again")
                connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
            }
            _ = try? await connection.query(PostgresQuery(unsafeSQL: "SELECT 1"), logger: logger).get()
            answered.withLockedValue { $0 = true }
            deadline.cancel()
        }
    }

    /// Reads the rows `changes` name again, as if another instance had changed them: this
    /// instance's own transaction whose COMMIT went unanswered, once `process`, the server
    /// process that COMMIT went to, has ended (`PostgresSession.waitUntilEnded`; past
    /// `commitPatience` from now it is ended). When the database cannot tell, everything is read
    /// again, later.
    ///
    /// One thread waits for them all, in turn, each until its own deadline: a database whose
    /// every COMMIT hangs (one waiting for a synchronous standby that is gone) costs one thread,
    /// not one per request. Past `maxUnsettled` waiting, everything is read again once the
    /// waits are done.
    func readAgain(_ changes: [RegistryChange], onceEnded process: PostgresSession.ServerProcess?) {
        guard let process else {
            enqueue(changes, resynchronise: false)
            return
        }
        let startWaiter = state.withLockedValue { state -> Bool in
            if state.unsettled.count < Self.maxUnsettled {
                state.unsettled.append(Unsettled(process: process, changes: changes, giveUp: .now() + commitPatience))
            } else {
                state.resynchroniseOnceSettled = true
            }
            defer { state.settling = true }
            return !state.settling
        }
        if startWaiter { DispatchQueue.global().async { self.settle() } }
    }

    /// An unanswered COMMIT's server process to wait for, and the rows to read once it ended.
    struct Unsettled {
        var process: PostgresSession.ServerProcess
        var changes: [RegistryChange]
        var giveUp: NIODeadline
    }

    /// Waits for each unsettled COMMIT's process in turn, on one connection, then has its rows
    /// read again.
    private func settle() {
        let session = PostgresSession(location: location, timeouts: .init(connect: .seconds(5), statement: .seconds(5)), logger: logger)
        while true {
            let next = state.withLockedValue { state -> Unsettled? in
                guard !state.stopped, !state.unsettled.isEmpty else {
                    state.settling = false
                    return nil
                }
                return state.unsettled.removeFirst()
            }
            guard let next else { break }
            let settled = session.waitUntilEnded(next.process, until: next.giveUp)
            enqueue(settled ? next.changes : [], resynchronise: !settled)
        }
        let again = state.withLockedValue { state in
            defer { state.resynchroniseOnceSettled = false }
            return state.resynchroniseOnceSettled
        }
        if again { enqueue([], resynchronise: true) }
    }

    /// How long a server process whose COMMIT went unanswered is waited for before it is ended.
    private let commitPatience: TimeAmount
    /// Unanswered COMMITs waited for, at most.
    static let maxUnsettled = 1000

    private func heard(_ payload: String) {
        guard let (sender, changes) = RegistryChange.parse(payload), sender != instance, !changes.isEmpty else { return }
        enqueue(changes, resynchronise: false)
    }

    // MARK: Applying

    private func enqueue(_ changes: [RegistryChange], resynchronise: Bool) {
        let start = state.withLockedValue { state in
            for change in changes where state.pendingSet.insert(change).inserted { state.pending.append(change) }
            if resynchronise { state.resynchronise = true }
            defer { state.draining = true }
            return !state.draining && !state.stopped
        }
        if start { queue.async { self.drain() } }
    }

    /// Applies what is pending, round after round, until nothing is; after a failure reads
    /// everything again later (1 s, doubling to 16 s while it keeps failing).
    private func drain() {
        while true {
            let round = state.withLockedValue { state -> (changes: [RegistryChange], resynchronise: Bool)? in
                guard !state.stopped, state.resynchronise || !state.pending.isEmpty else {
                    state.draining = false
                    return nil
                }
                defer {
                    state.pending = []
                    state.pendingSet = []
                    state.resynchronise = false
                }
                return (state.pending, state.resynchronise)
            }
            guard let round else { return }
            // Reading everything covers any change named meanwhile.
            let done = round.resynchronise ? resynchronise() : apply(round.changes)
            if !done {
                // Each attempt opens a connection and reads every table (the rows of a round
                // under the registry's lock): tried again after 1 s, doubling to 16 s, rather
                // than every second of an outage.
                let wait = state.withLockedValue { state -> Double in
                    state.resynchronise = true
                    defer { state.retryDelay = min(state.retryDelay * 2, 16) }
                    return state.retryDelay
                }
                queue.asyncAfter(deadline: .now() + wait) { self.drain() }
                return
            }
            state.withLockedValue { state in
                state.retryDelay = 1
                if round.resynchronise { state.readsOfEverything += 1 }
            }
        }
    }
}
