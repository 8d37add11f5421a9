// libFuzzer target: the JSON parser. A parsed value must encode to JSON that parses back to it.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSON(parsing: bytes) else { return 0 }
    guard let again = try? JSON(parsing: value.encoded()), sameValue(again, value) else {
        fatalError("JSON round trip differs")
    }
    return 0
}

/// Equality where NaN-free doubles may have been printed and re-read as integers.
private func sameValue(_ lhs: JSON, _ rhs: JSON) -> Bool {
    switch (lhs, rhs) {
    case let (.integer(a), .double(b)), let (.double(b), .integer(a)): return Double(a) == b
    case let (.array(a), .array(b)): return a.count == b.count && zip(a, b).allSatisfy(sameValue)
    case let (.object(a), .object(b)):
        return a.count == b.count && a.allSatisfy { key, value in b[key].map { sameValue(value, $0) } ?? false }
    default: return lhs == rhs
    }
}
