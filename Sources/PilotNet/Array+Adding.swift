extension Array {
    /// Appends `other`; when this array is empty, takes `other`'s storage instead of copying
    /// into new storage. On the data path most steps add nothing or start the list, and each
    /// copy would be a heap allocation per packet (`pilot-bench net` counts them).
    mutating func add(_ other: [Element]) {
        if isEmpty {
            self = other
        } else if !other.isEmpty {
            append(contentsOf: other)
        }
    }

    /// This array followed by `other`, as `+` but without new storage when either is empty.
    func adding(_ other: [Element]) -> [Element] {
        var result = self
        result.add(other)
        return result
    }
}
