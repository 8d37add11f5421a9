/// Node ids without repeats, in increasing order: the remotes a resting identity has business
/// with, or the resting identities a remote may wake.
///
/// One id is held inline and more in a sorted array. There is nearly always one (an identity
/// that works with one peer), and the table keeps two of these for each resting identity: a
/// `Set` of one is 72 bytes on the heap, this is none.
struct NodeSet: Equatable, Sendable, Sequence, ExpressibleByArrayLiteral {
    private enum Storage: Equatable, Sendable {
        case one(UInt32)
        /// Sorted, without repeats, and never of one id (that is `.one`): so equal sets have
        /// equal storage. Empty: the empty set.
        case many([UInt32])
    }

    private var storage: Storage = .many([])

    init() {}

    /// The ids of `ids`, in any order, repeats ignored.
    init(_ ids: some Sequence<UInt32>) {
        var sorted = ids.sorted()
        var kept = 0
        for index in sorted.indices where kept == 0 || sorted[kept - 1] != sorted[index] {
            sorted[kept] = sorted[index]
            kept += 1
        }
        sorted.removeSubrange(kept...)
        storage = sorted.count == 1 ? .one(sorted[0]) : .many(sorted)
    }

    init(arrayLiteral ids: UInt32...) { self.init(ids) }

    var isEmpty: Bool { storage == .many([]) }

    func contains(_ id: UInt32) -> Bool {
        switch storage {
        case .one(let only): only == id
        case .many(let ids): ids.sortedIndex(of: id).found
        }
    }

    /// Adds `id`; false if it was there.
    @discardableResult
    mutating func insert(_ id: UInt32) -> Bool {
        switch storage {
        case .one(let only):
            guard only != id else { return false }
            storage = .many(only < id ? [only, id] : [id, only])
        case .many(var ids):
            let (index, found) = ids.sortedIndex(of: id)
            guard !found else { return false }
            guard !ids.isEmpty else {
                storage = .one(id)
                return true
            }
            storage = .many([])  // so `ids` is the array's only reference, changed in place
            ids.insert(id, at: index)
            storage = .many(ids)
        }
        return true
    }

    /// Takes `id` out; false if it was not there.
    @discardableResult
    mutating func remove(_ id: UInt32) -> Bool {
        switch storage {
        case .one(let only):
            guard only == id else { return false }
            storage = .many([])
        case .many(var ids):
            let (index, found) = ids.sortedIndex(of: id)
            guard found else { return false }
            storage = .many([])
            ids.remove(at: index)
            storage = ids.count == 1 ? .one(ids[0]) : .many(ids)
        }
        return true
    }

    func makeIterator() -> Iterator {
        switch storage {
        case .one(let only): Iterator(first: only, rest: [].makeIterator())
        case .many(let ids): Iterator(first: nil, rest: ids.makeIterator())
        }
    }

    /// The ids in increasing order.
    struct Iterator: IteratorProtocol {
        fileprivate var first: UInt32?
        fileprivate var rest: IndexingIterator<[UInt32]>

        mutating func next() -> UInt32? {
            if let id = first {
                first = nil
                return id
            }
            return rest.next()
        }
    }
}

extension [UInt32] {
    /// Where `id` is in this sorted array, or where it would go.
    fileprivate func sortedIndex(of id: UInt32) -> (index: Int, found: Bool) {
        var (low, high) = (0, count)
        while low < high {
            let middle = (low + high) / 2
            if self[middle] < id { low = middle + 1 } else { high = middle }
        }
        return (low, low < count && self[low] == id)
    }
}
