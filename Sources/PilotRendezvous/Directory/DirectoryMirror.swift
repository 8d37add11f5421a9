import Foundation
import PilotStore

/// The directory's search index for a registry on PostgreSQL: the listed nodes copied into a
/// SQLite file of this instance (`directory-index.db` in the state directory), with the same
/// `node` columns and FTS5 table that `DirectoryIndex` searches in registry.db. The file is
/// derived data: made again from the registry's memory at every start, then kept in step by
/// `catchUp` with what the registry reports changed (`Registry.takeListingChanges`, which
/// includes what other instances on the database changed). `DirectoryIndex` reads it on a
/// connection of its own (WAL).
public final class DirectoryMirror: @unchecked Sendable {
    // @unchecked: `db` and `pending` are used only with `lock` held (and in init).
    public let path: String
    private let registry: Registry
    private let db: Database
    private let lock = NSLock()
    /// Changes taken from the registry and not written yet (a write failed): nil, not listed.
    private var pending: [UInt32: DirectoryEntry?] = [:]

    /// Makes the file anew at `path` (whatever was there is the last run's copy) with every
    /// node `registry` lists now, and from now on collects its changes.
    public init(path: String, registry: Registry) throws {
        self.path = path
        self.registry = registry
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        db = try Database(path: path)
        // Derived data, made again at every start: a power cut may lose the last changes.
        try db.execute("PRAGMA synchronous = OFF")
        try db.execute(
            """
            CREATE TABLE node (
                id INTEGER PRIMARY KEY,
                hostname TEXT,
                tags TEXT NOT NULL,
                description TEXT NOT NULL,
                category TEXT NOT NULL,
                listed INTEGER NOT NULL DEFAULT 1
            );
            CREATE INDEX node_listed_hostname ON node (listed, hostname);
            CREATE INDEX node_listed_category ON node (listed, category, hostname);
            CREATE VIRTUAL TABLE node_search USING fts5(
                hostname, tags, description, category, tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3 4'
            );
            """)
        for entry in registry.watchListings() { pending[entry.id] = entry }
        try catchUp()
    }

    /// Writes what changed in the registry since the last call, in one transaction: each
    /// node's row and index entry replaced by what the directory shows of it now, or removed.
    /// When the write fails (a full disk) nothing is lost: the next call writes it too.
    public func catchUp() throws {
        lock.lock()
        defer { lock.unlock() }
        for (id, entry) in registry.takeListingChanges() { pending.updateValue(entry, forKey: id) }
        guard !pending.isEmpty else { return }
        try db.transaction {
            for (id, entry) in pending {
                try db.run("DELETE FROM node WHERE id = ?", [.integer(Int64(id))])
                try db.run("DELETE FROM node_search WHERE rowid = ?", [.integer(Int64(id))])
                guard let entry else { continue }
                let values: [SQLValue] = [
                    .integer(Int64(id)), entry.hostname.map(SQLValue.text) ?? .null, .text(entry.tags.joined(separator: ",")),
                    .text(entry.description), .text(entry.category),
                ]
                try db.run("INSERT INTO node (id, hostname, tags, description, category) VALUES (?, ?, ?, ?, ?)", values)
                try db.run("INSERT INTO node_search (rowid, hostname, tags, description, category) VALUES (?, ?, ?, ?, ?)", values)
            }
        }
        pending = [:]
    }
}
