// libFuzzer target: TunnelFrame decoder (PILT, PILS, PILK, PILA, PILP). A decoded frame must
// re-encode to the same bytes.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let frame = try? TunnelFrame(decoding: bytes) else { return 0 }
    guard frame.encoded() == bytes else { fatalError("TunnelFrame round trip differs") }
    if case .plaintext(let packet) = frame { _ = try? Packet(decoding: packet) }
    return 0
}
