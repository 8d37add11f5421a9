// libFuzzer target: base64 decoder. Any input must decode or throw; whatever decodes is the one
// canonical text of its bytes, so encoding it again gives the input back.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let bytes = try? Base64.decode(text) else { return 0 }
    guard Base64.encode(bytes) == text else { fatalError("Base64 accepted a text that is not canonical") }
    return 0
}
