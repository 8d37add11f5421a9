/// What one step of the data path makes: most often nothing, one or two things (a datagram to
/// send, a packet to deliver, data for the reader and its ACK), sometimes more. The first two
/// elements are held inline and the rest in an array, so a list of one or two costs no heap
/// allocation where an array would: one per segment and per step (`pilot-bench net` counts
/// them).
///
/// Build short lists with `SmallList(element)` and `append`: an array literal goes through an
/// array.
public struct SmallList<Element>: RandomAccessCollection {
    private var first0: Element?
    /// Nil unless `first0` is set.
    private var second: Element?
    /// Empty unless `second` is set.
    private var rest: [Element] = []

    public init() {}

    public init(_ element: Element) { first0 = element }

    public init(contentsOf elements: some Sequence<Element>) {
        for element in elements { append(element) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { first0 == nil ? 0 : second == nil ? 1 : 2 + rest.count }
    public var isEmpty: Bool { first0 == nil }

    public subscript(position: Int) -> Element {
        switch position {
        case 0: first0!
        case 1: second!
        default: rest[position - 2]
        }
    }

    public mutating func append(_ element: Element) {
        if first0 == nil {
            first0 = element
        } else if second == nil {
            second = element
        } else {
            rest.append(element)
        }
    }

    /// Appends `other`; when this list is empty, takes `other` as it is.
    public mutating func append(contentsOf other: SmallList) {
        guard !other.isEmpty else { return }
        guard !isEmpty else {
            self = other
            return
        }
        for element in other { append(element) }
    }

    /// `left` followed by `right`, without new storage when either is empty.
    public static func + (left: SmallList, right: SmallList) -> SmallList {
        var result = left
        result.append(contentsOf: right)
        return result
    }

    public static func += (left: inout SmallList, right: SmallList) { left.append(contentsOf: right) }
}

extension SmallList: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: Element...) {
        for element in elements { append(element) }
    }
}

extension SmallList: Sendable where Element: Sendable {}

extension SmallList: Equatable where Element: Equatable {
    public static func == (left: SmallList, right: SmallList) -> Bool { left.elementsEqual(right) }
}

extension SmallList: CustomStringConvertible {
    public var description: String { Array(self).description }
}

/// What the tunnel table asks its fabric to do.
public typealias TunnelActions = SmallList<TunnelAction>
