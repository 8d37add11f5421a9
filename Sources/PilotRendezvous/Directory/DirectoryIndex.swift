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

    /// Matches of a word search that are ranked at most. Ranking (bm25) costs about 2 µs a
    /// match, so a word in most listings would cost more than 100 ms at 100,000: past this many,
    /// the first so many by node id are ranked, with the node whose hostname is the search and
    /// those tagged with it, and the page says `truncated` where a filter counted only those.
    public static let rankedMatches = 5000

    /// One page of the nodes that match `query`, named `source` in the reply.
    public func search(_ query: DirectoryQuery, source: String) throws(StoreError) -> DirectoryPage {
        lock.lock()
        defer { lock.unlock() }
        let none = DirectoryPage(source: source, items: [], total: 0, page: query.page, next: nil)
        // Words asked for but none a word, or a tag that no node can carry: nothing matches.
        if query.words.isEmpty, !query.search.isEmpty { return none }
        if let tag = query.tag, !RegistryMessage.isLabel(tag, maxLength: 32) { return none }
        var bindings: [SQLValue] = []
        func parameter(_ value: SQLValue) -> String {
            bindings.append(value)
            return "?\(bindings.count)"
        }
        // What only `node` can check.
        var conditions: [String] = []
        if let tag = query.tag { conditions.append("instr(',' || n.tags || ',', ',' || \(parameter(.text(tag))) || ',') > 0") }
        if let category = query.category { conditions.append("n.category = \(parameter(.text(category)))") }
        // Words and a tag go to the full-text index (listed nodes only): each word by prefix, the
        // tag as a phrase in the tags column (then checked whole above).
        var terms = query.words.map { "\"\($0)\"*" }
        if let tag = query.tag { terms.append("tags : \"\(tag)\"") }
        let match = terms.joined(separator: " ")

        let from: String
        let order: String
        var total: Int64
        var truncated = false
        if !query.words.isEmpty {
            let matched = parameter(.text(match))
            total = try db.rows("SELECT COUNT(*) FROM node_search WHERE node_search MATCH \(matched)", bindings).first?.first?.integer ?? 0
            let cap = parameter(.integer(Int64(Self.rankedMatches)))
            let exact = parameter(.text(query.search))
            let ranked = "rowid AS id, bm25(node_search, 4.0, 3.0, 1.0, 2.0) AS score FROM node_search WHERE node_search MATCH"
            var candidates = "SELECT * FROM (SELECT \(ranked) \(matched) LIMIT \(cap))"
            // The node named as searched, looked up first: the index seeks a constant rowid, and
            // would go through every match for one a subquery gives.
            let named = try db.rows("SELECT id FROM node WHERE listed = 1 AND hostname = ?", [.text(query.search)]).first?.first?.integer
            if let named { candidates += "\nUNION ALL SELECT \(ranked) \(matched) AND rowid = \(parameter(.integer(named)))" }
            let searchTag = RegistryMessage.storedTag(query.search)
            if RegistryMessage.isLabel(searchTag, maxLength: 32) {
                let tagged = parameter(.text(match + " tags : \"\(searchTag)\""))
                candidates += "\nUNION ALL SELECT * FROM (SELECT \(ranked) \(tagged) LIMIT \(cap))"
            }
            // One row per node (the tagged match scores it otherwise); CROSS JOIN keeps the
            // candidates as the outer loop.
            from = "(SELECT id, MIN(score) AS score FROM (\(candidates)) GROUP BY id) AS f CROSS JOIN node n ON n.id = f.id"
            if !conditions.isEmpty {
                truncated = total > Self.rankedMatches
                total = try db.rows("SELECT COUNT(*) FROM \(from) WHERE \(conditions.joined(separator: " AND "))", bindings).first?.first?.integer ?? 0
            }
            // (Bound after the count, which has no place for it.)
            let exactTag = parameter(.text(searchTag))
            order = "(n.hostname = \(exact)) DESC, (instr(',' || n.tags || ',', ',' || \(exactTag) || ',') > 0) DESC, f.score, n.id"
        } else {
            if query.tag != nil {
                // CROSS JOIN keeps the match as the outer loop: left to itself the planner may
                // walk `node` by an index and run the match once per row.
                from = "node_search CROSS JOIN node n ON n.id = node_search.rowid"
                conditions.append("node_search MATCH \(parameter(.text(match)))")
            } else {
                // The index holds listed nodes only; `node` holds them all.
                from = "node n"
                conditions.append("n.listed = 1")
            }
            order = "n.hostname IS NULL, n.hostname, n.id"
            total = try db.rows("SELECT COUNT(*) FROM \(from) WHERE \(conditions.joined(separator: " AND "))", bindings).first?.first?.integer ?? 0
        }
        let condition = conditions.isEmpty ? "1" : conditions.joined(separator: " AND ")
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
        // Past the ranked matches a word search has no more pages.
        let reachable = query.words.isEmpty ? total : min(total, Int64(Self.rankedMatches))
        let more = Int64(offset + items.count) < reachable && !items.isEmpty
        return DirectoryPage(
            source: source, items: items, total: Int(total), page: query.page, next: more ? query.page + 1 : nil, truncated: truncated)
    }
}
