import Foundation

/// A private PostgreSQL server for one test: its own cluster in a temporary directory (initdb),
/// listening on 127.0.0.1 at a free port and on a socket in that directory, trust
/// authentication, no fsync. Started by the `postgres` account when the test runs as root
/// (PostgreSQL refuses to run as root). Every wait is bounded; `remove()` stops it and deletes
/// the directory.
public final class PostgresServer: @unchecked Sendable {
    // @unchecked: only its lets are read from other threads; start and stop run on the test's.

    /// Debian's PostgreSQL, the newest version installed.
    public static let binaries: String? = {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.reversed().map { "\(root)/\($0)/bin" }
            .first { FileManager.default.isExecutableFile(atPath: "\($0)/postgres") && FileManager.default.isExecutableFile(atPath: "\($0)/initdb") }
    }()

    /// Why no server can be started here, or nil when one can (the test is then skipped with it).
    public static var unavailableReason: String? {
        guard binaries != nil else { return "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres; scripts/install-deps installs it)" }
        if getuid() == 0, getpwnam("postgres") == nil { return "running as root and there is no postgres account to run PostgreSQL as" }
        return nil
    }

    /// The directory: the cluster in `data/`, the log in `log`, the socket.
    public let directory: TemporaryDirectory
    public let port: UInt16
    private let bin: String
    /// The running postmaster, our child.
    private var server: Process?

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    public func url(database: String = "postgres") -> String { "postgres://postgres@127.0.0.1:\(port)/\(database)" }

    /// `postgres://postgres@/DATABASE?host=DIR`: through the socket.
    public func socketURL(database: String = "postgres") -> String { "postgres://postgres@/\(database)?host=\(directory.url.path)&port=\(port)" }

    /// Makes the cluster and starts the server.
    public init() throws {
        guard let bin = Self.binaries else { throw PostgresServerError(Self.unavailableReason ?? "PostgreSQL is not installed") }
        self.bin = bin
        directory = try TemporaryDirectory(prefix: "pilot-pg")
        port = try LoopbackSocket.freePort()
        do {
            try handOver(directory.url.path)
            try run("initdb", ["-D", directory.path("data"), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"], timeout: 60)
            _ = FileManager.default.createFile(atPath: directory.path("log"), contents: nil)
            try start()
        } catch {
            remove()
            throw error
        }
    }

    /// A hot standby of `primary`: a cluster of its own copied with pg_basebackup, streaming the
    /// primary's changes (`-R` writes where they come from), on a port of its own; read-only until
    /// `promote()`.
    public init(standbyOf primary: PostgresServer) throws {
        guard let bin = Self.binaries else { throw PostgresServerError(Self.unavailableReason ?? "PostgreSQL is not installed") }
        self.bin = bin
        directory = try TemporaryDirectory(prefix: "pilot-pg-standby")
        port = try LoopbackSocket.freePort()
        do {
            try handOver(directory.url.path)
            try run(
                "pg_basebackup",
                ["-h", primary.directory.url.path, "-p", "\(primary.port)", "-U", "postgres", "-D", directory.path("data"), "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"],
                timeout: 60)
            _ = FileManager.default.createFile(atPath: directory.path("log"), contents: nil)
            try start()
        } catch {
            remove()
            throw error
        }
    }

    /// Makes a standby the primary (a failover manager's step), and returns once it takes writes.
    public func promote() throws {
        try psql("SELECT pg_promote(wait => true, wait_seconds => 30)")
    }

    /// Starts the server (again) on the same port and waits until it takes connections. It is
    /// our child, not pg_ctl's: a daemon pg_ctl left behind would inherit what Foundation's
    /// `Process` watches to see pg_ctl end, and pg_ctl would never be seen to end.
    public func start() throws {
        guard server?.isRunning != true else { return }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: directory.path("log")))
        defer { try? log.close() }
        try log.seekToEnd()
        let process = try launch(
            "postgres",
            [
                "-D", directory.path("data"), "-p", "\(port)", "-k", directory.url.path, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=50",
            ], output: log)
        server = process
        let ready = ChildProcess.waitUntil(timeout: 30, every: 0.05) {
            guard process.isRunning else { return true }
            return (try? run("pg_isready", ["-h", directory.url.path, "-p", "\(port)", "-t", "1"], timeout: 5)) != nil
        }
        guard ready, process.isRunning else {
            try? stop()
            throw PostgresServerError("postgres did not start within 30 s: \(self.log.suffix(2000))")
        }
    }

    /// Stops the server at once (SIGINT, PostgreSQL's fast shutdown: connections are cut,
    /// nothing committed is lost) and waits until it is gone.
    public func stop() throws {
        guard let process = server, process.isRunning else { return }
        kill(process.processIdentifier, SIGINT)
        if !ChildProcess.waitUntil(timeout: 30, every: 0.02, { !process.isRunning }) {
            kill(process.processIdentifier, SIGKILL)
            throw PostgresServerError("postgres did not stop within 30 s: \(log.suffix(2000))")
        }
        process.waitUntilExit()
        server = nil
    }

    /// Runs `sql` through psql on the socket, as the postgres role, in `database`; its rows.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        try run("psql", ["-h", directory.url.path, "-p", "\(port)", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], timeout: 30)
    }

    /// Makes role `role` with `password`, owner of a new `database`, and has the server ask it
    /// for that password over TCP (SCRAM), where every other role is trusted as before.
    public func addPasswordRole(_ role: String, password: String, database: String) throws {
        try psql("CREATE ROLE \(role) LOGIN PASSWORD '\(password)'")
        try psql("CREATE DATABASE \(database) OWNER \(role)")
        let hba = directory.path("data/pg_hba.conf")
        let rules = try String(contentsOfFile: hba, encoding: .utf8)
        // Written in place: the file stays postgres's. The first matching line decides.
        try ("host all \(role) 127.0.0.1/32 scram-sha-256\n" + rules).write(toFile: hba, atomically: false, encoding: .utf8)
        try psql("SELECT pg_reload_conf()")
    }

    /// Stops the server if it runs and deletes its directory.
    public func remove() {
        if let process = server, process.isRunning {
            // SIGQUIT: PostgreSQL's immediate shutdown; nothing here is kept.
            kill(process.processIdentifier, SIGQUIT)
            if !ChildProcess.waitUntil(timeout: 20, every: 0.02, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
        }
        server = nil
        directory.remove()
    }

    /// The server's log, for a failing test's message.
    public var log: String { (try? String(contentsOfFile: directory.path("log"), encoding: .utf8)) ?? "" }

    // MARK: Running as postgres

    /// Gives `path` to the postgres account when we are root (which PostgreSQL refuses to be).
    private func handOver(_ path: String) throws {
        guard getuid() == 0 else { return }
        guard let account = getpwnam("postgres") else { throw PostgresServerError("no postgres account to run PostgreSQL as") }
        guard chown(path, account.pointee.pw_uid, account.pointee.pw_gid) == 0 else {
            throw PostgresServerError("cannot give \(path) to postgres: errno \(errno)")
        }
    }

    /// Runs one of the server's programs to completion, its output into a file.
    @discardableResult
    private func run(_ program: String, _ arguments: [String], timeout: TimeInterval) throws -> String {
        let outputPath = directory.path("\(program)-\(UInt32.random(in: 0...UInt32.max)).out")
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        defer { try? output.close() }
        let process = try launch(program, arguments, output: output)
        let finished = ChildProcess.waitUntil(timeout: timeout, every: 0.02) { !process.isRunning }
        if !finished { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard finished, process.terminationStatus == 0 else {
            throw PostgresServerError(
                "\(program) \(arguments.joined(separator: " ")) \(finished ? "exited \(process.terminationStatus)" : "took over \(timeout) s"): "
                    + "\(text.suffix(2000))\n\(log.suffix(2000))")
        }
        return text
    }

    /// Starts one of the server's programs (as postgres when we are root, which PostgreSQL
    /// refuses to be), its output into `output`.
    private func launch(_ program: String, _ arguments: [String], output: FileHandle) throws -> Process {
        let path = "\(bin)/\(program)"
        let process = Process()
        if getuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            // A test process that crashes takes the server with it (SIGQUIT: immediate shutdown).
            process.arguments = ["--reuid=postgres", "--regid=postgres", "--clear-groups", "--pdeathsig", "QUIT", "--", path] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(["HOME": directory.url.path, "LC_ALL": "C"]) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return process
    }
}

/// The private server could not be made, started or stopped.
public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
