/// Standard base64 with padding (RFC 4648 §4): the text form of keys, signatures and binary
/// fields in the registry's JSON and the control protocol (`docs/PROTOCOL.md §7`, §8).
///
/// Decoding is strict and total: only the standard alphabet, a length that is a multiple of 4,
/// `=` only as the last one or two characters, and unused bits zero (each byte string has
/// exactly one text form). No whitespace, no URL-safe alphabet, no missing padding.
public enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Each ASCII byte's 6-bit value, or 0xFF for a byte outside the alphabet.
    private static let values: [UInt8] = {
        var values = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in alphabet.enumerated() { values[Int(byte)] = UInt8(index) }
        return values
    }()

    /// The text form of `bytes`.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let bytes = Array(bytes)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let group = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] as [UInt32] { out.append(alphabet[Int(group >> shift & 0x3F)]) }
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            let group = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            out.append(alphabet[Int(group >> 18 & 0x3F)])
            out.append(alphabet[Int(group >> 12 & 0x3F)])
            out.append(rest == 2 ? alphabet[Int(group >> 6 & 0x3F)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes `text` encodes; throws `WireError.invalidValue` for anything but the one
    /// canonical text form of some bytes.
    public static func decode(_ text: some StringProtocol) throws(WireError) -> [UInt8] {
        let input = Array(text.utf8)
        guard input.count % 4 == 0 else {
            throw .invalidValue(field: "base64", reason: "length \(input.count) is not a multiple of 4")
        }
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var index = 0
        while index < input.count {
            let isLast = index + 4 == input.count
            let padding = isLast ? (input[index + 3] == UInt8(ascii: "=") ? (input[index + 2] == UInt8(ascii: "=") ? 2 : 1) : 0) : 0
            var group: UInt32 = 0
            for offset in 0..<4 {
                let byte = input[index + offset]
                let value = offset >= 4 - padding ? 0 : values[Int(byte)]
                guard value != 0xFF else {
                    throw .invalidValue(field: "base64", reason: "character \(index + offset) is not in the standard alphabet")
                }
                group = group << 6 | UInt32(value)
            }
            out.append(UInt8(truncatingIfNeeded: group >> 16))
            if padding < 2 { out.append(UInt8(truncatingIfNeeded: group >> 8)) }
            if padding < 1 { out.append(UInt8(truncatingIfNeeded: group)) }
            let unused: UInt32 = padding == 2 ? 0xFFFF : padding == 1 ? 0xFF : 0
            guard group & unused == 0 else { throw .invalidValue(field: "base64", reason: "unused bits before the padding are not zero") }
            index += 4
        }
        return out
    }
}
