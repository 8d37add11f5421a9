/// Bytes received from a stream and not yet taken, for the frame decoders: taking from the
/// front moves an index, and the storage is compacted once the taken part is the larger half,
/// so many small frames in one read cost linear time.
public struct ByteQueue: Sendable {
    private var storage: [UInt8] = []
    private var start = 0

    /// An empty queue.
    public init() {}

    /// The number of bytes not yet taken.
    public var count: Int { storage.count - start }

    /// The bytes not yet taken.
    public var bytes: ArraySlice<UInt8> { storage[start...] }

    /// Adds `bytes` at the end.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0, start >= storage.count - start {
            storage.removeFirst(start)
            start = 0
        }
        storage.append(contentsOf: bytes)
    }

    /// Bytes `offset..<offset + length` of those not yet taken (the caller checked `count`).
    public func peek(_ offset: Int, _ length: Int) -> ArraySlice<UInt8> {
        storage[start + offset..<start + offset + length]
    }

    /// Drops the first `count` bytes not yet taken.
    public mutating func skip(_ count: Int) {
        start += min(count, self.count)
        if start == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= 65536)
            start = 0
        }
    }
}
