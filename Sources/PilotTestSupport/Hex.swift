extension Array where Element == UInt8 {
    /// Bytes from hex digits; whitespace is ignored (test vectors are wrapped in the specs).
    public init(hex: String) {
        let digits = [Character](hex.filter { !$0.isWhitespace })
        self = stride(from: 0, to: digits.count - 1, by: 2).map { UInt8(String([digits[$0], digits[$0 + 1]]), radix: 16) ?? 0 }
    }

    /// Lower-case hex, two digits a byte.
    public var hex: String { map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
}
