// libFuzzer target: Packet decoder. Any input must decode or throw; a decoded packet must
// re-encode to exactly the bytes it was read from.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let packet = try? Packet(decoding: bytes) else { return 0 }
    guard let again = try? packet.encoded(), again == Array(bytes.prefix(again.count)) else {
        fatalError("Packet round trip differs")
    }
    return 0
}
