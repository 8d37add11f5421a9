import CSQLite

/// One SQLite connection: WAL journal, foreign keys on, `synchronous=FULL` so a change is on disk
/// when its transaction returns (registrations and identity changes must survive a crash).
///
/// Not thread-safe: a `Database` belongs to one owner (an actor, a lock, or one thread). Statements
/// are prepared once and cached by their SQL text.
public final class Database {
    private var handle: OpaquePointer?
    private var cache: [String: Statement] = [:]
    public let path: String

    /// Opens (creating if needed) the database at `path`.
    public init(path: String) throws(StoreError) {
        self.path = path
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &db, flags, nil)
        guard status == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(db)
            throw StoreError(code: status, message: "\(message): \(path)")
        }
        handle = db
        sqlite3_busy_timeout(db, 5_000)
        sqlite3_extended_result_codes(db, 1)
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=FULL")
        try execute("PRAGMA foreign_keys=ON")
    }

    /// Whether a commit waits for the disk (`synchronous=FULL`, the default) or only for the
    /// operating system (`NORMAL`: in WAL mode, a process crash loses nothing, a power loss may
    /// lose the last commits but never corrupts). For what a reboot ends anyway (leased
    /// identities), where an fsync per commit would be the only limit.
    public func setDurable(_ durable: Bool) throws(StoreError) {
        try execute(durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL")
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(handle)
    }

    var rawHandle: OpaquePointer? { handle }

    /// Gives back what SQLite holds for this connection and can do without: the cache of pages it
    /// has read (`sqlite3_db_release_memory`). Pages read again later come from the file.
    public func releaseMemory() {
        _ = sqlite3_db_release_memory(handle)
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws(StoreError) {
        var error: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(handle, sql, nil, nil, &error)
        guard status == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(error)
            throw StoreError(code: status, message: message, sql: sql)
        }
    }

    /// A prepared statement for `sql`, from the cache when it was prepared before.
    public func prepare(_ sql: String) throws(StoreError) -> Statement {
        if let statement = cache[sql] {
            statement.reset()
            return statement
        }
        var raw: OpaquePointer?
        let status = sqlite3_prepare_v2(handle, sql, -1, &raw, nil)
        guard status == SQLITE_OK, let raw else { throw StoreError(code: status, message: lastMessage, sql: sql) }
        let statement = Statement(raw: raw, sql: sql, database: self)
        cache[sql] = statement
        return statement
    }

    /// Runs `sql` with `bindings`; for statements that return no rows.
    public func run(_ sql: String, _ bindings: [SQLValue] = []) throws(StoreError) {
        let statement = try prepare(sql)
        try statement.bind(bindings)
        while try statement.step() {}
    }

    /// Every row `sql` returns, each as its column values.
    public func rows(_ sql: String, _ bindings: [SQLValue] = []) throws(StoreError) -> [[SQLValue]] {
        try rows(sql, bindings) { $0 }
    }

    /// What `make` makes of each row, in order (see `forEachRow`).
    public func rows<Value>(_ sql: String, _ bindings: [SQLValue] = [], _ make: ([SQLValue]) -> Value) throws(StoreError) -> [Value] {
        var values: [Value] = []
        try forEachRow(sql, bindings) { values.append(make($0)) }
        return values
    }

    /// Hands each row of `sql` to `body` as it is read, and lets it go: loading every identity
    /// holds one row at a time, not all of them (whose buffers, freed between what is kept,
    /// would leave the heap full of holes).
    public func forEachRow(_ sql: String, _ bindings: [SQLValue] = [], _ body: ([SQLValue]) -> Void) throws(StoreError) {
        let statement = try prepare(sql)
        try statement.bind(bindings)
        while try statement.step() { body(statement.row) }
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// Inside another transaction it is a savepoint of that one: undone alone when it throws,
    /// committed with the outer one (a registry batch holds many changes that each take one).
    public func transaction<R>(_ body: () throws -> R) throws -> R {
        if sqlite3_get_autocommit(handle) == 0 {
            try execute("SAVEPOINT nested")
            do {
                let result = try body()
                try execute("RELEASE nested")
                return result
            } catch {
                try? execute("ROLLBACK TO nested")
                try? execute("RELEASE nested")
                throw error
            }
        }
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Brings the schema to `migrations.count`: step i (from 0) runs in its own transaction and
    /// sets `PRAGMA user_version` to i + 1. Steps already applied are skipped. A database from a
    /// newer version of the program (higher user_version) is refused rather than damaged.
    public func migrate(_ migrations: [String]) throws {
        let current = try userVersion()
        guard current <= migrations.count else {
            throw StoreError(
                code: SQLITE_ERROR,
                message: "\(path) has schema version \(current), newer than this program's \(migrations.count)")
        }
        for (index, sql) in migrations.enumerated() where index >= current {
            try transaction {
                try execute(sql)
                try execute("PRAGMA user_version=\(index + 1)")
            }
        }
    }

    public func userVersion() throws(StoreError) -> Int {
        let rows = try rows("PRAGMA user_version")
        return Int(rows.first?.first?.integer ?? 0)
    }

    /// The row id of the last successful insert.
    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }
}
