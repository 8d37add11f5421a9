/// A bounds-checked cursor over bytes, big-endian like every integer on the Pilot wire.
///
/// Invariant: `offset <= bytes.count`. Every read checks the remaining length first and throws
/// `WireError.truncated` naming the field, so no decoder built on it can over-read.
public struct ByteReader: Sendable {
    /// The bytes being read; indices are the slice's own.
    public let bytes: ArraySlice<UInt8>
    /// Index into `bytes` of the next unread byte.
    public private(set) var offset: ArraySlice<UInt8>.Index

    /// A reader at the start of `bytes`.
    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    /// A reader at the start of `bytes`.
    public init(_ bytes: [UInt8]) {
        self.init(bytes[...])
    }

    /// Bytes not read yet.
    public var remaining: Int { bytes.endIndex - offset }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset == bytes.endIndex }

    /// Reads one byte; throws `truncated` naming `field` at the end.
    public mutating func readUInt8(_ field: String) throws(WireError) -> UInt8 {
        try need(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Reads a big-endian u16; throws `truncated` naming `field` if fewer than 2 bytes remain.
    public mutating func readUInt16(_ field: String) throws(WireError) -> UInt16 {
        try readInteger(field)
    }

    /// Reads a big-endian u32; throws `truncated` naming `field` if fewer than 4 bytes remain.
    public mutating func readUInt32(_ field: String) throws(WireError) -> UInt32 {
        try readInteger(field)
    }

    /// Reads a big-endian u64; throws `truncated` naming `field` if fewer than 8 bytes remain.
    public mutating func readUInt64(_ field: String) throws(WireError) -> UInt64 {
        try readInteger(field)
    }

    /// A big-endian unsigned integer of `T`'s width.
    private mutating func readInteger<T: FixedWidthInteger & UnsignedInteger>(_ field: String) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        try need(size, field)
        var value: T = 0
        for index in offset..<offset + size { value = value << 8 | T(bytes[index]) }
        offset += size
        return value
    }

    /// Reads exactly `count` bytes.
    public mutating func readBytes(_ count: Int, _ field: String) throws(WireError) -> ArraySlice<UInt8> {
        guard count >= 0 else { throw .invalidValue(field: field, reason: "negative length \(count)") }
        try need(count, field)
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// Reads everything that is left.
    public mutating func readRemaining() -> ArraySlice<UInt8> {
        defer { offset = bytes.endIndex }
        return bytes[offset...]
    }

    /// Throws unless every byte has been read; for formats that must fill their input exactly.
    public func expectEnd(_ field: String) throws(WireError) {
        guard isAtEnd else { throw .trailingBytes(field: field, count: remaining) }
    }

    private func need(_ count: Int, _ field: String) throws(WireError) {
        guard remaining >= count else {
            throw .truncated(field: field, needed: count, available: remaining)
        }
    }
}
