/// Why a sequence of bytes is not a valid Pilot Protocol message.
///
/// Every decoder in PilotWire throws this and nothing else; none of them traps on input.
public enum WireError: Error, Hashable, Sendable {
    /// The input ended before the field `field` could be read: `needed` more bytes were required.
    case truncated(field: String, needed: Int, available: Int)
    /// The input is longer than the format allows.
    case oversized(field: String, limit: Int, actual: Int)
    /// The leading magic bytes or type byte name no known message.
    case unknownType(field: String, value: UInt32)
    /// The packet checksum does not match its contents.
    case badChecksum(expected: UInt32, computed: UInt32)
    /// The packet carries a protocol version other than the supported one.
    case unsupportedVersion(UInt8)
    /// Bytes are left over after a message that must fill its input exactly.
    case trailingBytes(field: String, count: Int)
    /// A field holds a value the format does not allow; `reason` says which and why.
    case invalidValue(field: String, reason: String)
    /// A driver frame's command byte is not a request the daemon serves. The description is the
    /// 1.18 daemon's own error text, which clients match (`docs/PROTOCOL.md §12.3`).
    case unknownCommand(UInt8)
}

extension WireError: CustomStringConvertible {
    /// What is wrong, in a line, for logs and error answers.
    public var description: String {
        switch self {
        case let .truncated(field, needed, available):
            return "truncated \(field): needs \(needed) bytes, \(available) available"
        case let .oversized(field, limit, actual):
            return "oversized \(field): \(actual) bytes, limit \(limit)"
        case let .unknownType(field, value):
            return "unknown \(field) 0x\(String(value, radix: 16))"
        case let .badChecksum(expected, computed):
            return "bad checksum: packet says 0x\(String(expected, radix: 16)), "
                + "contents give 0x\(String(computed, radix: 16))"
        case let .unsupportedVersion(version):
            return "unsupported protocol version \(version)"
        case let .trailingBytes(field, count):
            return "\(count) trailing bytes after \(field)"
        case let .invalidValue(field, reason):
            return "invalid \(field): \(reason)"
        case let .unknownCommand(command):
            let digits = String(command, radix: 16, uppercase: true)
            return "unknown command: 0x\(command < 0x10 ? "0" : "")\(digits)"
        }
    }
}
