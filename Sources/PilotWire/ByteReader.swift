/// A bounds-checked cursor over bytes, big-endian like every integer on the Pilot wire.
///
/// Invariant: `offset <= bytes.count`. Every read checks the remaining length first and throws
/// `WireError.truncated` naming the field, so no decoder built on it can over-read.
public struct ByteReader: Sendable {
    public let bytes: ArraySlice<UInt8>
    /// Index into `bytes` of the next unread byte.
    public private(set) var offset: ArraySlice<UInt8>.Index

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.offset = bytes.startIndex
    }

    public init(_ bytes: [UInt8]) {
        self.init(bytes[...])
    }

    /// Bytes not read yet.
    public var remaining: Int { bytes.endIndex - offset }

    public var isAtEnd: Bool { offset == bytes.endIndex }

    public mutating func readUInt8(_ field: String) throws(WireError) -> UInt8 {
        try need(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readUInt16(_ field: String) throws(WireError) -> UInt16 {
        try need(2, field)
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    public mutating func readUInt32(_ field: String) throws(WireError) -> UInt32 {
        try need(4, field)
        var value: UInt32 = 0
        for index in offset..<offset + 4 { value = value << 8 | UInt32(bytes[index]) }
        offset += 4
        return value
    }

    public mutating func readUInt64(_ field: String) throws(WireError) -> UInt64 {
        try need(8, field)
        var value: UInt64 = 0
        for index in offset..<offset + 8 { value = value << 8 | UInt64(bytes[index]) }
        offset += 8
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
