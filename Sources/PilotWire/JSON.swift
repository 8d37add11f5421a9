/// A JSON value, with a total parser and a deterministic encoder of our own.
///
/// Integers are kept apart from fractions so node ids and timestamps survive exactly. Objects
/// encode with sorted keys, as Go's encoder does for maps, so signatures over encoded JSON are
/// reproducible. The parser limits nesting depth and never traps on input.
///
/// Equality is JSON's, not the enum's: numbers compare by value, so `.integer(3)` equals
/// `.double(3.0)`. The encoder writes a whole double without a fraction, and the value must
/// still equal itself after a round trip through the wire.
public enum JSON: Hashable, Sendable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number without fraction or exponent that fits in 64 bits.
    case integer(Int64)
    /// Any other number.
    case double(Double)
    /// A string, unescaped.
    case string(String)
    /// An array.
    case array([JSON])
    /// An object; encoded with its keys sorted.
    case object([String: JSON])

    /// Deepest nesting the parser accepts.
    public static let maxDepth = 64

    // MARK: Equality

    /// JSON's equality: numbers by value (`.integer(3) == .double(3)`).
    public static func == (lhs: JSON, rhs: JSON) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.double(let a), .double(let b)): return a == b
        case (.integer(let a), .double(let b)), (.double(let b), .integer(let a)):
            return Self.exactInteger(b) == a
        case (.string(let a), .string(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.object(let a), .object(let b)): return a == b
        default: return false
        }
    }

    /// Consistent with `==`: a whole double hashes as the integer it equals.
    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let value): hasher.combine(1); hasher.combine(value)
        case .integer(let value): hasher.combine(2); hasher.combine(value)
        case .double(let value):
            if let whole = Self.exactInteger(value) {
                hasher.combine(2); hasher.combine(whole)
            } else {
                hasher.combine(3); hasher.combine(value)
            }
        case .string(let value): hasher.combine(4); hasher.combine(value)
        case .array(let value): hasher.combine(5); hasher.combine(value)
        case .object(let value): hasher.combine(6); hasher.combine(value)
        }
    }

    /// The double as an Int64 when it is one exactly (no fraction, in range), else nil.
    private static func exactInteger(_ value: Double) -> Int64? {
        guard value.isFinite, value.rounded() == value,
              value >= -9_223_372_036_854_775_808.0, value < 9_223_372_036_854_775_808.0 else { return nil }
        return Int64(value)
    }

    // MARK: Access

    /// The member `key` of an object; nil for a missing key or a value that is not an object.
    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The string, if this is one.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The boolean, if this is one.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The value as an integer: an integer literal, or a fraction-free double in range.
    public var integerValue: Int64? {
        switch self {
        case .integer(let value): return value
        case .double(let value):
            guard value.rounded() == value, value >= -9.2e18, value <= 9.2e18 else { return nil }
            return Int64(value)
        default: return nil
        }
    }

    /// The value as a double: any number.
    public var doubleValue: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    /// The elements, if this is an array.
    public var arrayValue: [JSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The members, if this is an object.
    public var objectValue: [String: JSON]? {
        if case .object(let value) = self { return value }
        return nil
    }

    // MARK: Parsing

    /// Parses one JSON value filling `bytes` (whitespace around allowed); throws on anything else,
    /// nesting deeper than `maxDepth` included.
    public init(parsing bytes: some Collection<UInt8>) throws(WireError) {
        var parser = Parser(bytes: Array(bytes))
        parser.skipWhitespace()
        self = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == parser.bytes.count else {
            throw .trailingBytes(field: "JSON", count: parser.bytes.count - parser.index)
        }
    }

    /// Parses one JSON value filling `text`.
    public init(parsing text: String) throws(WireError) {
        try self.init(parsing: Array(text.utf8))
    }

    // MARK: Encoding

    /// Compact JSON. With `escapeHTML` the characters `<`, `>`, `&`, U+2028 and U+2029 are
    /// escaped as `\u003c` and so on, as Go's `json.Marshal` does.
    public func encoded(escapeHTML: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        write(into: &out, escapeHTML: escapeHTML)
        return out
    }

    /// `encoded(escapeHTML:)` as a string.
    public func encodedString(escapeHTML: Bool = false) -> String {
        String(decoding: encoded(escapeHTML: escapeHTML), as: UTF8.self)
    }

    /// Indented JSON (two spaces a level, keys sorted), for files people read and edit:
    /// manifests signed by `pilotctl appstore sign`.
    public func prettyEncoded(escapeHTML: Bool = false) -> String {
        var out: [UInt8] = []
        writePretty(into: &out, level: 0, escapeHTML: escapeHTML)
        out.append(UInt8(ascii: "\n"))
        return String(decoding: out, as: UTF8.self)
    }

    private func writePretty(into out: inout [UInt8], level: Int, escapeHTML: Bool) {
        let inner = [UInt8](repeating: UInt8(ascii: " "), count: 2 * (level + 1))
        switch self {
        case .array(let values) where !values.isEmpty:
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                out.append(contentsOf: (index > 0 ? ",\n" : "\n").utf8)
                out.append(contentsOf: inner)
                value.writePretty(into: &out, level: level + 1, escapeHTML: escapeHTML)
            }
            out.append(UInt8(ascii: "\n"))
            out.append(contentsOf: inner.dropLast(2))
            out.append(UInt8(ascii: "]"))
        case .object(let members) where !members.isEmpty:
            out.append(UInt8(ascii: "{"))
            for (index, key) in members.keys.sorted().enumerated() {
                out.append(contentsOf: (index > 0 ? ",\n" : "\n").utf8)
                out.append(contentsOf: inner)
                Self.writeString(key, into: &out, escapeHTML: escapeHTML)
                out.append(contentsOf: ": ".utf8)
                members[key]?.writePretty(into: &out, level: level + 1, escapeHTML: escapeHTML)
            }
            out.append(UInt8(ascii: "\n"))
            out.append(contentsOf: inner.dropLast(2))
            out.append(UInt8(ascii: "}"))
        default:
            write(into: &out, escapeHTML: escapeHTML)
        }
    }

    private func write(into out: inout [UInt8], escapeHTML: Bool) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .integer(let value): out.append(contentsOf: String(value).utf8)
        case .double(let value):
            if value.isFinite {
                out.append(contentsOf: (value.rounded() == value && abs(value) < 1e15
                    ? String(Int64(value)) : "\(value)").utf8)
            } else {
                out.append(contentsOf: "null".utf8)  // JSON has no NaN or infinity
            }
        case .string(let value): Self.writeString(value, into: &out, escapeHTML: escapeHTML)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                value.write(into: &out, escapeHTML: escapeHTML)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, into: &out, escapeHTML: escapeHTML)
                out.append(UInt8(ascii: ":"))
                members[key]?.write(into: &out, escapeHTML: escapeHTML)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Byte by byte over the UTF-8: what needs no escape (nearly everything) is copied as it is.
    private static func writeString(_ value: String, into out: inout [UInt8], escapeHTML: Bool) {
        out.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { bytes in
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
                case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
                case UInt8(ascii: "\n"): out.append(contentsOf: "\\n".utf8)
                case UInt8(ascii: "\r"): out.append(contentsOf: "\\r".utf8)
                case UInt8(ascii: "\t"): out.append(contentsOf: "\\t".utf8)
                case 0..<0x20: out.append(contentsOf: unicodeEscape(UInt32(byte)).utf8)
                case UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "&"):
                    if escapeHTML { out.append(contentsOf: unicodeEscape(UInt32(byte)).utf8) } else { out.append(byte) }
                case 0xE2 where escapeHTML && index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] | 1) == 0xA9:
                    // U+2028 and U+2029 (E2 80 A8, E2 80 A9), escaped as Go's encoding/json does.
                    out.append(contentsOf: unicodeEscape(bytes[index + 2] == 0xA8 ? 0x2028 : 0x2029).utf8)
                    index += 2
                default: out.append(byte)
                }
                index += 1
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func unicodeEscape(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    /// A string value.
    public init(stringLiteral value: String) { self = .string(value) }
    /// An integer value.
    public init(integerLiteral value: Int64) { self = .integer(value) }
    /// A boolean value.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// An array value.
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    /// An object value; a repeated key keeps the last value.
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { $1 }))
    }
    /// `null`.
    public init(nilLiteral: ()) { self = .null }
}

/// A recursive-descent JSON parser over bytes (RFC 8259).
private struct Parser {
    let bytes: [UInt8]
    var index = 0

    mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    func fail(_ reason: String) -> WireError {
        .invalidValue(field: "JSON at byte \(index)", reason: reason)
    }

    mutating func value(depth: Int) throws(WireError) -> JSON {
        guard depth < JSON.maxDepth else { throw fail("nested deeper than \(JSON.maxDepth)") }
        guard index < bytes.count else { throw .truncated(field: "JSON value", needed: 1, available: 0) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected byte 0x\(String(bytes[index], radix: 16))")
        }
    }

    mutating func literal(_ word: String) throws(WireError) {
        let expected = Array(word.utf8)
        guard bytes.count - index >= expected.count, Array(bytes[index..<index + expected.count]) == expected else {
            throw fail("expected \(word)")
        }
        index += expected.count
    }

    mutating func object(depth: Int) throws(WireError) -> JSON {
        index += 1
        var members: [String: JSON] = [:]
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let key = try string()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            members[key] = try value(depth: depth + 1)
            skipWhitespace()
            guard index < bytes.count else { throw .truncated(field: "JSON object", needed: 1, available: 0) }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
            throw fail("expected ',' or '}'")
        }
    }

    mutating func array(depth: Int) throws(WireError) -> JSON {
        index += 1
        var elements: [JSON] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try value(depth: depth + 1))
            skipWhitespace()
            guard index < bytes.count else { throw .truncated(field: "JSON array", needed: 1, available: 0) }
            if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
            if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
            throw fail("expected ',' or ']'")
        }
    }

    mutating func string() throws(WireError) -> String {
        index += 1  // opening quote
        // Most strings hold no escape: read up to the closing quote and take the bytes whole.
        var end = index
        while end < bytes.count, bytes[end] != UInt8(ascii: "\""), bytes[end] != UInt8(ascii: "\\"), bytes[end] >= 0x20 { end += 1 }
        if end < bytes.count, bytes[end] == UInt8(ascii: "\"") {
            guard let text = String(validating: bytes[index..<end], as: UTF8.self) else {
                throw .invalidValue(field: "JSON string", reason: "not UTF-8")
            }
            index = end + 1
            return text
        }
        var scalars = String.UnicodeScalarView()
        var run: [UInt8] = []
        func flush(_ run: inout [UInt8], _ scalars: inout String.UnicodeScalarView) throws(WireError) {
            guard !run.isEmpty else { return }
            guard let text = String(validating: run, as: UTF8.self) else {
                throw .invalidValue(field: "JSON string", reason: "not UTF-8")
            }
            scalars.append(contentsOf: text.unicodeScalars)
            run.removeAll(keepingCapacity: true)
        }
        while true {
            guard index < bytes.count else { throw .truncated(field: "JSON string", needed: 1, available: 0) }
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "\""):
                try flush(&run, &scalars)
                return String(scalars)
            case UInt8(ascii: "\\"):
                try flush(&run, &scalars)
                scalars.append(try escape())
            case 0..<0x20:
                throw fail("control character in string")
            default:
                run.append(byte)
            }
        }
    }

    mutating func escape() throws(WireError) -> Unicode.Scalar {
        guard index < bytes.count else { throw .truncated(field: "JSON escape", needed: 1, available: 0) }
        let byte = bytes[index]
        index += 1
        switch byte {
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "/"): return "/"
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "u"):
            let high = try hex4()
            if (0xD800..<0xDC00).contains(high) {
                // A surrogate pair: the low half must follow as another \u escape.
                guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                else { return "\u{FFFD}" }
                index += 2
                let low = try hex4()
                guard (0xDC00..<0xE000).contains(low) else { return "\u{FFFD}" }
                return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)) ?? "\u{FFFD}"
            }
            return Unicode.Scalar(high) ?? "\u{FFFD}"
        default:
            throw fail("bad escape \\\(Character(Unicode.Scalar(byte)))")
        }
    }

    mutating func hex4() throws(WireError) -> UInt32 {
        guard bytes.count - index >= 4 else {
            throw .truncated(field: "JSON \\u escape", needed: 4, available: bytes.count - index)
        }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            index += 1
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw fail("bad hex digit in \\u escape")
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    mutating func number() throws(WireError) -> JSON {
        let start = index
        var isInteger = true
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        func digits(_ parser: inout Parser) -> Int {
            let begin = parser.index
            while parser.index < parser.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(parser.bytes[parser.index]) {
                parser.index += 1
            }
            return parser.index - begin
        }
        guard digits(&self) > 0 else { throw fail("expected digits") }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            isInteger = false
            guard digits(&self) > 0 else { throw fail("expected digits after '.'") }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            isInteger = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard digits(&self) > 0 else { throw fail("expected exponent digits") }
        }
        let text = String(decoding: bytes[start..<index], as: UTF8.self)
        if isInteger, let value = Int64(text) { return .integer(value) }
        guard let value = Double(text), value.isFinite else { throw fail("number out of range") }
        return .double(value)
    }
}
