import PilotWire

/// Pages of the long lists of the identity socket (`ListPage`).
enum Paging {
    /// The page `page` asks for out of `rows`, which are in the order of `key`: the rows whose
    /// key is above `page.after`, at most `page.limit`, and fewer when their JSON (`json`) would
    /// pass `ListPage.bytes`; and the `next` to ask for (nil: no row follows).
    static func page<Row>(_ rows: [Row], key: (Row) -> Int64, json: (Row) -> JSON, page: ListPage) -> (rows: [Row], next: Int64?) {
        var index = 0
        if let after = page.after {
            var high = rows.count
            while index < high {
                let middle = (index + high) / 2
                if key(rows[middle]) <= after { index = middle + 1 } else { high = middle }
            }
        }
        let limit = page.limit ?? ListPage.longest
        var taken: [Row] = []
        var bytes = 0
        while index < rows.count, taken.count < limit {
            let size = json(rows[index]).encoded().count + 1
            if !taken.isEmpty, bytes + size > ListPage.bytes { break }
            bytes += size
            taken.append(rows[index])
            index += 1
        }
        return (taken, index < rows.count ? taken.last.map(key) : nil)
    }
}
