import PilotWire

/// JSON as Go's `encoding/json` writes it, byte for byte, for the one place the bytes are signed:
/// the manifest's grants (`ManifestSignature`). Struct members keep their declared order and
/// drop empty `omitempty` members; map keys sort by bytes; numbers decoded into `interface{}`
/// are float64 and print in Go's shortest form; strings escape `<`, `>`, `&`, U+2028 and
/// U+2029 as `\u003c` and so on.
public enum GoJSON {
    /// The grants array as `json.Marshal(m.Grants)` writes it.
    public static func encode(grants: [Manifest.Grant]) -> [UInt8] {
        var out: [UInt8] = []
        out.append(UInt8(ascii: "["))
        for (index, grant) in grants.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: "{\"cap\":".utf8)
            writeString(grant.cap, into: &out)
            out.append(contentsOf: ",\"target\":".utf8)
            writeString(grant.target, into: &out)
            if let condition = grant.condition {
                out.append(contentsOf: ",\"if\":".utf8)
                write(condition, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        out.append(UInt8(ascii: "]"))
        return out
    }

    private static func write(_ condition: Manifest.Condition, into out: inout [UInt8]) {
        let (kind, params, op, compose): (String, [String: JSON], String, [Manifest.Condition])
        switch condition {
        case let .leaf(leafKind, leafParams): (kind, params, op, compose) = (leafKind, leafParams, "", [])
        case let .composite(compositeOp, parts): (kind, params, op, compose) = ("", [:], compositeOp, parts)
        case let .mixed(mixedKind, mixedParams, mixedOp, parts): (kind, params, op, compose) = (mixedKind, mixedParams, mixedOp, parts)
        }
        var first = true
        func member(_ name: String, _ out: inout [UInt8]) {
            out.append(contentsOf: ((first ? "" : ",") + "\"\(name)\":").utf8)
            first = false
        }
        out.append(UInt8(ascii: "{"))
        if !kind.isEmpty {
            member("kind", &out)
            writeString(kind, into: &out)
        }
        if !params.isEmpty {
            member("params", &out)
            write(.object(params), into: &out)
        }
        if !op.isEmpty {
            member("op", &out)
            writeString(op, into: &out)
        }
        if !compose.isEmpty {
            member("compose", &out)
            out.append(UInt8(ascii: "["))
            for (index, part) in compose.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(part, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(UInt8(ascii: "}"))
    }

    /// A value decoded into Go's `interface{}` and marshalled again.
    static func write(_ value: JSON, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let flag): out.append(contentsOf: (flag ? "true" : "false").utf8)
        case .integer(let number): out.append(contentsOf: float(Double(number)).utf8)
        case .double(let number): out.append(contentsOf: float(number).utf8)
        case .string(let text): writeString(text, into: &out)
        case .array(let values):
            out.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                write(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            for (index, key) in keys.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                if let member = members[key] { write(member, into: &out) }
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ text: String, into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: out.append(contentsOf: "\\\"".utf8)
            case 0x5C: out.append(contentsOf: "\\\\".utf8)
            case 0x08: out.append(contentsOf: "\\b".utf8)
            case 0x0C: out.append(contentsOf: "\\f".utf8)
            case 0x0A: out.append(contentsOf: "\\n".utf8)
            case 0x0D: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0x00..<0x20, 0x3C, 0x3E, 0x26:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hex[Int(scalar.value >> 4)])
                out.append(hex[Int(scalar.value & 0xF)])
            case 0x2028: out.append(contentsOf: "\\u2028".utf8)
            case 0x2029: out.append(contentsOf: "\\u2029".utf8)
            default: out.append(contentsOf: String(scalar).utf8)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A float64 as Go's encoder prints it: the shortest digits that read back to the same
    /// value, in `%f` form, or `%e` form below 1e-6 and from 1e21 on (with `e-07` cut to `e-7`).
    public static func float(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        let sign = value.sign == .minus ? "-" : ""
        let magnitude = value.magnitude
        guard magnitude != 0 else { return sign + "0" }
        let (digits, point) = shortestDigits(magnitude)
        if magnitude < 1e-6 || magnitude >= 1e21 {
            var text = sign + String(digits.first ?? "0")
            if digits.count > 1 { text += "." + digits.dropFirst() }
            let exponent = point - 1
            let exponentDigits = String(exponent.magnitude)
            text += "e" + (exponent < 0 ? "-" : "+")
            // Go's %e writes at least two exponent digits; its JSON encoder drops the 0 of e-0N.
            text += (exponentDigits.count < 2 && exponent >= 0 ? "0" : "") + exponentDigits
            return text
        }
        if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + digits }
        if point >= digits.count { return sign + digits + String(repeating: "0", count: point - digits.count) }
        let split = digits.index(digits.startIndex, offsetBy: point)
        return sign + digits[..<split] + "." + digits[split...]
    }

    /// The shortest round-trip decimal digits of a positive finite value (Swift's `description`
    /// prints them, as Go's `strconv` does) and the decimal point's position: the value is
    /// 0.`digits` × 10^`point`.
    static func shortestDigits(_ value: Double) -> (digits: String, point: Int) {
        let text = value.description
        let parts = text.split(separator: "e", maxSplits: 1)
        let exponent = parts.count == 2 ? Int(parts[1]) ?? 0 : 0
        let mantissa = parts.first.map(String.init) ?? "0"
        let pieces = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = pieces.first.map(String.init) ?? ""
        let fraction = pieces.count == 2 ? String(pieces[1]) : ""
        var digits = Substring(whole + fraction)
        var point = whole.count + exponent
        while digits.first == "0" {
            digits = digits.dropFirst()
            point -= 1
        }
        while digits.last == "0" { digits = digits.dropLast() }
        return (digits.isEmpty ? "0" : String(digits), point)
    }
}
