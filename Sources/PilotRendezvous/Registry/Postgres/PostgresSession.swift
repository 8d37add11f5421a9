import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PilotStore
import PostgresNIO

/// One connection to PostgreSQL used as a blocking database: a statement is sent and its result
/// waited for on the calling thread, within a deadline. Connects when first needed and again
/// after the connection is lost, so the registry recovers by itself when the database returns.
///
/// Blocking is safe here: the connection runs on an event loop of its own (`group`, one thread
/// that only this session uses), and it is called with `Registry.lock` held from the registry
/// server's thread pool, a task or a test, never from an event loop; a call from the session's
/// own loop, which would wait on itself, is refused instead. Not thread-safe: its owner
/// serialises calls (the registry's lock; `BeaconRoster`'s session, its own thread).
final class PostgresSession {
    /// How long a session waits before it calls the database unavailable.
    struct Timeouts: Sendable {
        /// Connecting and authenticating, when no connection is open.
        var connect: TimeAmount = .milliseconds(500)
        /// One statement, its result included. Connect and statement together stay under the
        /// 2 s in which a write the database cannot take is refused.
        var statement: TimeAmount = .milliseconds(1400)
        /// After a connect that timed out (a server that does not answer at all), statements
        /// fail at once for this long rather than each waiting for its own connect under the
        /// registry's lock. A refused connect costs nothing: the next statement tries again.
        var retry: TimeAmount = .milliseconds(250)
    }

    let location: PostgresLocation
    var timeouts: Timeouts
    private let group: MultiThreadedEventLoopGroup
    private let logger: Logger
    private var connection: PostgresConnection?
    private var connections = 0
    /// Open transactions and savepoints: 0 outside a transaction.
    private(set) var depth = 0
    /// The last transaction's COMMIT failed for want of the database (no answer within the
    /// deadline, a broken connection): PostgreSQL may have committed it or not. The server
    /// process it was sent to, when known: the outcome is settled once that process has ended
    /// (`waitUntilEnded`).
    private(set) var commitUnanswered = false
    private(set) var unansweredCommitProcess: ServerProcess?
    /// The server process of the open connection.
    private var backend: ServerProcess?

    /// A server process of PostgreSQL: its pid, and when it started (a pid is reused).
    struct ServerProcess: Sendable, Equatable {
        var pid: Int32
        var started: String
    }
    /// BEGIN, SAVEPOINT and RELEASE statements not sent yet: they go before the next statement.
    private var owed: [String] = []
    /// Statements of the open transaction sent together with its COMMIT (its NOTIFYs), so
    /// they cost no round trip of their own and nothing of them is sent when it rolls back.
    private var withCommit: [String] = []
    /// No connect is tried before this (after one that timed out); the last connect's failure
    /// is the reason meanwhile.
    private var retryAt = NIODeadline.distantPast
    private var lastFailure = ""

    init(location: PostgresLocation, timeouts: Timeouts, logger: Logger) {
        self.location = location
        self.timeouts = timeouts
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    deinit {
        let group = group
        guard let connection else {
            group.shutdownGracefully { _ in }
            return
        }
        // Kept until closed (postgres-nio asserts that a connection is closed before it goes),
        // then the loop it ran on goes too.
        connection.close().whenComplete { _ in
            withExtendedLifetime(connection) {}
            group.shutdownGracefully { _ in }
        }
    }

    // MARK: Statements

    /// Runs `query` and returns its rows, within `timeout` (default: `timeouts.statement`).
    /// What the transaction still owes (`owed`) goes first, sent together with it.
    @discardableResult
    func rows(_ query: PostgresQuery, timeout: TimeAmount? = nil) throws -> PostgresQueryResult {
        let connection = try connected()
        let deadline = NIODeadline.now() + (timeout ?? timeouts.statement)
        let first = owed
        owed = []
        do {
            // Queued on the connection at once and answered in order: one wait, not one each.
            let sent = first.map { connection.query(PostgresQuery(unsafeSQL: $0), logger: logger) }
            let result = connection.query(query, logger: logger)
            for (sql, future) in zip(first, sent) { _ = try wait(for: future, within: deadline - .now(), what: sql) }
            return try wait(for: result, within: deadline - .now(), what: "a statement")
        } catch let error as PSQLError {
            throw translated(error, sql: query.sql)
        }
    }

    /// Runs `sql`, which has no parameters.
    func execute(_ sql: String, timeout: TimeAmount? = nil) throws {
        try rows(PostgresQuery(unsafeSQL: sql), timeout: timeout)
    }

    /// Runs `body` in a transaction on this one connection: BEGIN, then COMMIT when it returns,
    /// ROLLBACK when it throws. Inside another it is a savepoint of that one, undone alone when
    /// it throws (a registry batch holds many changes that each take one), as SQLite's
    /// `Database.transaction` does.
    ///
    /// BEGIN, SAVEPOINT and RELEASE are owed rather than sent: they go with the next statement
    /// (`rows`), and a transaction or savepoint in which nothing was written costs nothing (a
    /// batch of heartbeats). COMMIT releases what is still owed.
    func transaction<R>(_ body: () throws -> R) throws -> R {
        if depth > 0 {
            let savepoint = "SAVEPOINT nested_\(depth)"
            owed.append(savepoint)
            depth += 1
            defer { depth -= 1 }
            do {
                let result = try body()
                if owed.last == savepoint { owed.removeLast() } else { owed.append("RELEASE \(savepoint)") }
                return result
            } catch {
                if owed.last == savepoint {
                    owed.removeLast()
                } else {
                    // Undone alone; the transaction around it goes on (unless the connection is gone).
                    try? execute("ROLLBACK TO \(savepoint)")
                    try? execute("RELEASE \(savepoint)")
                }
                throw error
            }
        }
        owed = ["BEGIN"]
        depth = 1
        commitUnanswered = false
        unansweredCommitProcess = nil
        defer {
            depth = 0
            owed = []
            withCommit = []
        }
        do {
            let result = try body()
            guard owed.first != "BEGIN" else { return result }  // nothing was written
            owed = withCommit
            // A transaction a failed statement aborted answers COMMIT with ROLLBACK, no error.
            let committed: PostgresQueryResult
            let process = backend
            do {
                committed = try rows(PostgresQuery(unsafeSQL: "COMMIT"))
            } catch let error as RegistryStorageUnavailable {
                commitUnanswered = true
                unansweredCommitProcess = process
                throw error
            }
            guard committed.metadata.command == "COMMIT" else {
                throw StoreError(code: 1, message: "the transaction was rolled back by PostgreSQL (a statement in it failed)")
            }
            return result
        } catch {
            if owed.first != "BEGIN", connection != nil {
                owed = []
                try? execute("ROLLBACK")
            }
            throw error
        }
    }

    /// Sends `statements` just before the open transaction's COMMIT, and not at all when it
    /// rolls back or writes nothing. Outside a transaction it does nothing.
    func sendWithCommit(_ statements: [String]) {
        guard depth > 0 else { return }
        withCommit = statements
    }

    // MARK: Connection

    /// The open connection, or a new one. Inside a transaction a lost connection is not
    /// replaced: what the transaction did went with it, and the rest must not run outside it.
    private func connected() throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        drop()
        // Inside a transaction only while nothing of it was sent (BEGIN still owed).
        guard depth == 0 || owed.first == "BEGIN" else {
            throw unavailable("the connection was lost inside a transaction, which was rolled back")
        }
        guard NIODeadline.now() >= retryAt else { throw unavailable(lastFailure) }
        let loop = group.next()
        connections += 1
        let began = NIODeadline.now()
        // Whether a failure was the deadline's: only then are the next statements spared the wait.
        func backOff() { retryAt = NIODeadline.now() - began >= timeouts.connect ? .now() + timeouts.retry : .distantPast }
        // Futures only, never a task: the caller blocks this thread, which may be one of the
        // few that run tasks.
        let connecting = Self.primary(of: location, on: loop, within: timeouts.connect, id: connections, logger: logger)
        do {
            let (opened, server) = try wait(for: connecting, within: timeouts.connect, what: "connecting")
            connection = opened
            // Which server process this is: to wait for, should a COMMIT on it go unanswered.
            let process = try wait(
                for: opened.query(PostgresQuery(unsafeSQL: "SELECT pid, backend_start::TEXT FROM pg_stat_activity WHERE pid = pg_backend_pid()"), logger: logger),
                within: timeouts.connect, what: "asking which server process serves the connection")
            backend = try process.rows.first.map { row in
                let (pid, started) = try row.decode((Int32, String).self)
                return ServerProcess(pid: pid, started: started)
            }
            retryAt = .distantPast
            logger.info("connected to the registry database", metadata: ["database": "\(location)", "server": "\(server)"])
            return opened
        } catch let error as RegistryStorageUnavailable {
            // A connection made after the wait gave up is closed, not left open.
            connecting.whenSuccess { late, _ in late.close().whenComplete { _ in withExtendedLifetime(late) {} } }
            backOff()
            lastFailure = error.reason
            throw error
        } catch {
            backOff()
            lastFailure = Self.reason(error)
            // Refused credentials, a database that does not exist: a server's answer, not an outage.
            if let psql = error as? PSQLError, psql.code == .server { throw translated(psql, sql: nil) }
            throw unavailable(lastFailure)
        }
    }

    /// A connection to the first of `location`'s servers that takes writes (and which it is),
    /// each tried in order with its share of `timeout`: one that is down or refuses is passed
    /// over, and so is a standby (`pg_is_in_recovery()`), whose connection is closed. With one
    /// server, its own error; with several, `NoPrimary`, naming what each said. Futures on
    /// `loop` only, so a thread may block on it.
    static func primary(
        of location: PostgresLocation, on loop: any EventLoop, within timeout: TimeAmount, id: Int, logger: Logger
    ) -> EventLoopFuture<(PostgresConnection, PostgresLocation.Endpoint)> {
        let share = TimeAmount.nanoseconds(max(timeout.nanoseconds / Int64(location.endpoints.count), TimeAmount.milliseconds(100).nanoseconds))
        let alone = location.endpoints.count == 1
        /// What one server gave: a connection to a primary, or why it was passed over.
        enum Step {
            case primary(PostgresConnection)
            case passed(String)
        }
        @Sendable func attempt(_ index: Int, _ failures: [String]) -> EventLoopFuture<(PostgresConnection, PostgresLocation.Endpoint)> {
            guard index < location.endpoints.count else { return loop.makeFailedFuture(NoPrimary(failures: failures)) }
            let endpoint = location.endpoints[index]
            let connected: EventLoopFuture<PostgresConnection>
            do {
                connected = PostgresConnection.connect(
                    on: loop, configuration: try configuration(of: location, endpoint: endpoint, connectTimeout: share), id: id, logger: logger)
            } catch {
                connected = loop.makeFailedFuture(error)
            }
            let step = connected.flatMap { connection -> EventLoopFuture<Step> in
                connection.query(PostgresQuery(unsafeSQL: "SELECT pg_is_in_recovery()"), logger: logger)
                    .flatMapThrowing { result -> Bool in try result.rows.first?.decode(Bool.self) ?? true }
                    .flatMap { standby -> EventLoopFuture<Step> in
                        guard standby else { return loop.makeSucceededFuture(.primary(connection)) }
                        return connection.close().map { .passed("\(endpoint): a standby, read-only") }
                    }
                    .flatMapError { error in
                        let passed = Step.passed("\(endpoint): \(reason(error))")
                        return connection.close().map { passed }.recover { _ in passed }
                    }
            }.flatMapError { error -> EventLoopFuture<Step> in
                alone ? loop.makeFailedFuture(error) : loop.makeSucceededFuture(.passed("\(endpoint): \(reason(error))"))
            }
            return step.flatMap { outcome in
                switch outcome {
                case .primary(let connection): loop.makeSucceededFuture((connection, endpoint))
                case .passed(let why): attempt(index + 1, failures + [why])
                }
            }
        }
        return attempt(0, [])
    }

    /// None of the servers took writes; why, for each.
    struct NoPrimary: Error, CustomStringConvertible {
        let failures: [String]
        var description: String { "no server takes writes (" + failures.joined(separator: "; ") + ")" }
    }

    /// postgres-nio's configuration for `endpoint`, one of `location`'s servers.
    static func configuration(
        of location: PostgresLocation, endpoint: PostgresLocation.Endpoint, connectTimeout: TimeAmount
    ) throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        switch endpoint {
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS =
                location.tls ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
            configuration = .init(host: host, port: port, username: location.user, password: location.password, database: location.database, tls: tls)
        case .socket(let path):
            configuration = .init(unixSocketPath: path, username: location.user, password: location.password, database: location.database)
        }
        configuration.options.connectTimeout = connectTimeout
        return configuration
    }

    /// Waits on this thread for `future`, at most `timeout`. Past it the connection is closed
    /// (what it was doing is unknown) and the database called unavailable.
    private func wait<T: Sendable>(for future: EventLoopFuture<T>, within timeout: TimeAmount, what: String) throws -> T {
        guard !future.eventLoop.inEventLoop else {
            throw StoreError(code: 1, message: "the registry's database was called from its own event loop, which would wait on itself")
        }
        let done = DispatchSemaphore(value: 0)
        let outcome = NIOLockedValueBox<Result<T, any Error>?>(nil)
        future.whenComplete { result in
            outcome.withLockedValue { $0 = result }
            done.signal()
        }
        guard done.wait(timeout: .now() + .nanoseconds(Int(timeout.nanoseconds))) == .success,
            let result = outcome.withLockedValue({ $0 })
        else {
            drop()
            throw unavailable("no answer to \(what) within \(timeout.nanoseconds / 1_000_000) ms")
        }
        do {
            return try result.get()
        } catch let error as PSQLError where error.code != .server {
            drop()
            throw unavailable(Self.reason(error))
        } catch let error as PSQLError where error.code == .server && Self.isOutage(error) {
            drop()
            throw unavailable(Self.reason(error))
        }
    }

    /// Forgets the connection (closing it), so the next statement outside a transaction
    /// connects again.
    private func drop() {
        guard let connection else { return }
        backend = nil
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
        self.connection = nil
    }

    /// Waits until `process` has ended, asking this session (not the one that sent its COMMIT)
    /// every 50 ms: a process whose client left it in the middle of a COMMIT ends once that
    /// COMMIT is done or undone, and then its outcome is what the database holds. Past `until`
    /// it is ended (`pg_terminate_backend`) and waited for 5 s more. False when the database
    /// could not be asked, or the process would not end.
    func waitUntilEnded(_ process: ServerProcess, until: NIODeadline) -> Bool {
        var giveUp = until
        var terminated = false
        while true {
            let alive: Bool
            do {
                alive = try rows(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = \(process.pid) AND backend_start::TEXT = \(process.started)"
                ).rows.first != nil
            } catch {
                return false
            }
            guard alive else { return true }
            if NIODeadline.now() >= giveUp {
                guard !terminated else { return false }
                terminated = true
                logger.warning(
                    "a registry transaction's server process did not end after its COMMIT went unanswered; ending it",
                    metadata: ["database": "\(location)", "pid": "\(process.pid)"])
                _ = try? rows("SELECT pg_terminate_backend(\(process.pid))")
                giveUp = NIODeadline.now() + .seconds(5)
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    // MARK: Errors

    private func unavailable(_ reason: String) -> RegistryStorageUnavailable {
        RegistryStorageUnavailable(database: location.description, reason: reason)
    }

    /// A server's refusal as a `StoreError`; a refused constraint as SQLite's code for one, so
    /// callers tell them apart the same way on both stores; a unique value taken as
    /// `RegistryStorageConflict`.
    private func translated(_ error: PSQLError, sql: String?) -> any Error {
        let state = error.serverInfo?[.sqlState] ?? ""
        if state == "23505" {
            // unique_violation: a row another instance committed holds the key or the hostname.
            return RegistryStorageConflict(database: location.description, reason: Self.reason(error))
        }
        // 19 is SQLITE_CONSTRAINT, 1 SQLITE_ERROR.
        return StoreError(code: state.hasPrefix("23") ? 19 : 1, message: Self.reason(error), sql: sql)
    }

    /// Server errors that mean the server is going or gone: connection exceptions (08),
    /// operator intervention such as a shutdown (57), insufficient resources (53), and a server
    /// that turned read-only (25006: an old primary fenced after a failover), which the next
    /// connection leaves for the one that takes writes.
    private static func isOutage(_ error: PSQLError) -> Bool {
        let state = error.serverInfo?[.sqlState] ?? ""
        return state.hasPrefix("08") || state.hasPrefix("57") || state.hasPrefix("53") || state == "25006"
    }

    /// What went wrong, readably: the server's SQLSTATE and message, or the connection's error.
    /// (postgres-nio's own description is generic on purpose.)
    static func reason(_ error: any Error) -> String {
        guard let psql = error as? PSQLError else { return "\(error)" }
        if let info = psql.serverInfo {
            return "\(info[.message] ?? "server error") (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = psql.underlying { return "\(psql.code): \(underlying)" }
        return "\(psql.code)"
    }
}
