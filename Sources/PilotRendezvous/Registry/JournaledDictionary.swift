/// A dictionary that can remember, while a journal is open, the value each key had before its
/// first change, and put those back. A registry batch opens one: when its commit fails, only
/// what it changed is undone, where a copy of the whole table (copy-on-write, at the batch's
/// first change) would cost every record of 100,000 nodes for each batch.
struct JournaledDictionary<Key: Hashable, Value>: ExpressibleByDictionaryLiteral {
    private var entries: [Key: Value]
    private var journaling = false
    /// Each changed key's value before its first change (nil: it had none).
    private var before: [Key: Value?] = [:]
    /// When set, says whether a change (old value, new value) matters to someone watching: the
    /// keys of those that do are collected for `takeChanged`.
    var watch: ((Value?, Value?) -> Bool)?
    /// Keys changed in a way `watch` said matters (and every key a rollback put back).
    private var changed: Set<Key> = []

    init(dictionaryLiteral elements: (Key, Value)...) {
        entries = Dictionary(elements, uniquingKeysWith: { $1 })
    }

    subscript(key: Key) -> Value? {
        get { entries[key] }
        set {
            if journaling, before.index(forKey: key) == nil { before.updateValue(entries[key], forKey: key) }
            if let watch, watch(entries[key], newValue) { changed.insert(key) }
            entries[key] = newValue
        }
    }

    var values: Dictionary<Key, Value>.Values { entries.values }
    var count: Int { entries.count }

    /// Starts remembering what changes.
    mutating func openJournal() {
        journaling = true
        before = [:]
    }

    /// Keeps what changed and stops remembering.
    mutating func closeJournal() {
        journaling = false
        before = [:]
    }

    /// Puts back every value changed since `openJournal` and stops remembering.
    mutating func rollBack() {
        journaling = false
        for (key, value) in before { entries[key] = value }
        if watch != nil { changed.formUnion(before.keys) }
        before = [:]
    }

    /// Counts `keys` as changed (for `takeChanged`) when something watches.
    mutating func noteChanged(_ keys: some Sequence<Key>) {
        if watch != nil { changed.formUnion(keys) }
    }

    /// The keys `watch` saw change since the last call.
    mutating func takeChanged() -> Set<Key> {
        defer { changed = [] }
        return changed
    }
}
