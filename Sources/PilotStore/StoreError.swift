/// Why a database operation failed, with SQLite's own message and the statement involved.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// SQLite's primary result code (`SQLITE_CONSTRAINT` = 19, `SQLITE_BUSY` = 5, ...).
    public let code: Int32
    public let message: String
    /// The SQL being run, if any.
    public let sql: String?

    public init(code: Int32, message: String, sql: String? = nil) {
        self.code = code
        self.message = message
        self.sql = sql
    }

    /// A uniqueness, foreign-key or check constraint refused the change.
    public var isConstraintViolation: Bool { code & 0xFF == 19 }

    public var description: String {
        "database error \(code): \(message)" + (sql.map { " (in: \($0.prefix(120)))" } ?? "")
    }
}
