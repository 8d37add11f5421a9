import Foundation
public import PilotStore
public import PilotWire

/// The directory's search: SQLite FTS5 over what listed nodes are found by (hostname, tags,
/// description, category), in `registry.db` (the `node_search` table the registry keeps in
/// step with `node` by triggers), read through a connection of its own so a search never holds
/// the registry's lock. WAL lets it read while the registry writes.
///
/// Ranking: a hostname equal to the search first, then a tag equal to it, then FTS5's bm25 with
/// hostname and tags weighing more than category and description; ties by node id. Every search
/// word must match (a prefix of a word of the node's).
public final class DirectoryIndex: @unchecked Sendable {
    // @unchecked: `db` is used only with `lock` held.
    private let db: Database
    private let lock = NSLock()

    /// Opens the registry's database at `path` (the registry made it and its tables).
    public init(path: String) throws(StoreError) {
        db = try Database(path: path)
    }

    /// One page of the nodes that match `query`, named `source` in the reply.
    public func search(_ query: DirectoryQuery, source: String) throws(StoreError) -> DirectoryPage {
        lock.lock()
        defer { lock.unlock() }
        var conditions: [String] = []
        var bindings: [SQLValue] = []
        func parameter(_ value: SQLValue) -> String {
            bindings.append(value)
            return "?\(bindings.count)"
        }
        if query.words.isEmpty, !query.search.isEmpty {
            // Words were asked for, but none is a word: nothing matches.
            return DirectoryPage(source: source, items: [], total: 0, page: query.page, next: nil)
        }
        // Words and a tag go to the full-text index (listed nodes only), each word by prefix,
        // the tag as a phrase in the tags column (then checked whole); the rest is `node`'s,
        // by its (listed, hostname) and (listed, category, hostname) indexes.
        var match = query.words.map { "\"\($0)\"*" }
        if let tag = query.tag {
            guard DirectoryQuery.isLabel(tag) else { return DirectoryPage(source: source, items: [], total: 0, page: query.page, next: nil) }
            match.append("tags : \"\(tag)\"")
            conditions.append("instr(',' || n.tags || ',', ',' || \(parameter(.text(tag))) || ',') > 0")
        }
        let searching = !query.words.isEmpty
        // CROSS JOIN keeps the full-text match as the outer loop: left to itself the planner may
        // walk `node` by an index and run the match once per row.
        let from = match.isEmpty ? "node n" : "node_search CROSS JOIN node n ON n.id = node_search.rowid"
        if !match.isEmpty { conditions.append("node_search MATCH \(parameter(.text(match.joined(separator: " "))))") }
        if let category = query.category { conditions.append("n.category = \(parameter(.text(category)))") }
        // The index holds listed nodes only; `node` holds them all.
        if match.isEmpty { conditions.append("n.listed = 1") }
        let condition = conditions.joined(separator: " AND ")
        // Words alone: the index counts its matches without reading `node`.
        let counting = conditions.count == 1 && !match.isEmpty ? "node_search" : from
        let total = try db.rows("SELECT COUNT(*) FROM \(counting) WHERE \(condition)", bindings).first?.first?.integer ?? 0
        let order: String
        if searching {
            let exact = parameter(.text(query.search))
            let exactTag = parameter(.text(RegistryMessage.storedTag(query.search)))
            order = """
                (n.hostname = \(exact)) DESC, (instr(',' || n.tags || ',', ',' || \(exactTag) || ',') > 0) DESC,
                bm25(node_search, 4.0, 3.0, 1.0, 2.0), n.id
                """
        } else {
            order = "n.hostname IS NULL, n.hostname, n.id"
        }
        let offset = (query.page - 1) * query.limit
        let rows = try db.rows(
            """
            SELECT n.id, n.hostname, n.tags, n.description, n.category FROM \(from) WHERE \(condition)
            ORDER BY \(order) LIMIT \(parameter(.integer(Int64(query.limit)))) OFFSET \(parameter(.integer(Int64(offset))))
            """, bindings)
        let items = rows.map { row in
            DirectoryItem(
                address: Address(node: UInt32(truncatingIfNeeded: row[0].integer ?? 0)), hostname: row[1].text,
                tags: (row[2].text ?? "").split(separator: ",").map(String.init), description: row[3].text ?? "",
                category: row[4].text ?? "")
        }
        let more = Int64(offset + items.count) < total
        return DirectoryPage(source: source, items: items, total: Int(total), page: query.page, next: more ? query.page + 1 : nil)
    }
}
