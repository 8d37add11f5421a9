/// What one step of the data path makes: most often nothing or one thing (a datagram to send,
/// a packet to deliver, data for the reader), sometimes more. The first element is held inline
/// and the rest in an array, so a list of one costs no heap allocation where an array of one
/// would: one per segment and per step (`pilot-bench net` counts them).
///
/// Build lists of one with `SmallList(element)`: an array literal goes through an array.
public struct SmallList<Element>: RandomAccessCollection {
    private var head: Element?
    /// Empty unless `head` is set.
    private var tail: [Element] = []

    public init() {}

    public init(_ element: Element) { head = element }

    public init(contentsOf elements: some Sequence<Element>) {
        for element in elements { append(element) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { head == nil ? 0 : 1 + tail.count }
    public var isEmpty: Bool { head == nil }

    public subscript(position: Int) -> Element {
        guard position > 0 else { return head! }
        return tail[position - 1]
    }

    public mutating func append(_ element: Element) {
        if head == nil { head = element } else { tail.append(element) }
    }

    /// Appends `other`; when this list is empty, takes `other` as it is.
    public mutating func append(contentsOf other: SmallList) {
        guard !other.isEmpty else { return }
        guard !isEmpty else {
            self = other
            return
        }
        tail.append(other.head!)
        tail.append(contentsOf: other.tail)
    }

    /// `append(contentsOf:)`, as `Array.add`.
    public mutating func add(_ other: SmallList) { append(contentsOf: other) }

    /// This list followed by `other`.
    public func adding(_ other: SmallList) -> SmallList {
        var result = self
        result.append(contentsOf: other)
        return result
    }

    public static func + (left: SmallList, right: SmallList) -> SmallList { left.adding(right) }

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
