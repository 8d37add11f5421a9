import CSQLite

/// A value in or out of SQLite.
public enum SQLValue: Hashable, Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var integer: Int64? { if case .integer(let v) = self { v } else { nil } }
    public var text: String? { if case .text(let v) = self { v } else { nil } }
    public var blob: [UInt8]? { if case .blob(let v) = self { v } else { nil } }
    public var isNull: Bool { self == .null }
}

/// A prepared statement owned by its `Database` (which caches it).
public final class Statement {
    private let raw: OpaquePointer
    public let sql: String
    private unowned let database: Database

    init(raw: OpaquePointer, sql: String, database: Database) {
        self.raw = raw
        self.sql = sql
        self.database = database
    }

    deinit { sqlite3_finalize(raw) }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    public func bind(_ values: [SQLValue]) throws(StoreError) {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32
            switch value {
            case .null: status = sqlite3_bind_null(raw, index)
            case .integer(let v): status = sqlite3_bind_int64(raw, index, v)
            case .real(let v): status = sqlite3_bind_double(raw, index, v)
            case .text(let v): status = sqlite3_bind_text(raw, index, v, -1, pilot_sqlite_transient())
            case .blob(let v):
                status = v.withUnsafeBytes { bytes in
                    sqlite3_bind_blob(raw, index, bytes.baseAddress, Int32(bytes.count), pilot_sqlite_transient())
                }
            }
            guard status == SQLITE_OK else { throw StoreError(code: status, message: database.lastMessage, sql: sql) }
        }
    }

    /// Advances; `true` while there is a row to read.
    public func step() throws(StoreError) -> Bool {
        switch sqlite3_step(raw) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let status:
            let error = StoreError(code: status, message: database.lastMessage, sql: sql)
            sqlite3_reset(raw)
            throw error
        }
    }

    /// The current row's columns.
    public var row: [SQLValue] {
        (0..<sqlite3_column_count(raw)).map(column)
    }

    public func column(_ index: Int32) -> SQLValue {
        switch sqlite3_column_type(raw, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(raw, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(raw, index))
        case SQLITE_TEXT:
            guard let text = sqlite3_column_text(raw, index) else { return .text("") }
            return .text(String(cString: text))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(raw, index))
            guard count > 0, let bytes = sqlite3_column_blob(raw, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: bytes, count: count)))
        default: return .null
        }
    }
}
