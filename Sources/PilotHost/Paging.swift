import PilotWire

/// Pages of the long lists of the identity socket (`ListPage`).
enum Paging {
    /// The page `page` asks for out of `rows`, in the order of `key`: the rows whose key is
    /// above `page.after`, at most `page.limit`, and fewer when their JSON (`json`) would pass
    /// `ListPage.bytes`; and the `next` to ask for (nil: no row follows).
    static func page<Row>(_ rows: [Row], key: (Row) -> Int64, json: (Row) -> JSON, page: ListPage) -> (rows: [Row], next: Int64?) {
        let rows = rows.sorted { key($0) < key($1) }
        var index = page.after.map { after in rows.partitionPoint { key($0) > after } } ?? 0
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

extension RandomAccessCollection {
    /// The first index whose element is `above` (a binary search: the collection is in an
    /// order where every element after one that is `above` is too), or `endIndex`.
    func partitionPoint(_ above: (Element) -> Bool) -> Index {
        var (low, count) = (startIndex, distance(from: startIndex, to: endIndex))
        while count > 0 {
            let half = count / 2
            let middle = index(low, offsetBy: half)
            if above(self[middle]) {
                count = half
            } else {
                low = index(after: middle)
                count -= half + 1
            }
        }
        return low
    }
}
