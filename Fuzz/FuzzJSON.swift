// libFuzzer target: the JSON parser. A parsed value must encode to JSON that parses back to it
// (JSON equality: numbers compare by value, so a whole double re-read as an integer is the same).
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let value = try? JSON(parsing: bytes) else { return 0 }
    guard let again = try? JSON(parsing: value.encoded()), again == value else {
        fatalError("JSON round trip differs")
    }
    return 0
}
