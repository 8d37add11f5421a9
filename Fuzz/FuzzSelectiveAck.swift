// libFuzzer target: SelectiveAck decoder (the SACK blocks of a stream's ACK). A decoded value
// must re-encode to the bytes it was read from (trailing bytes are ignored by design).
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let selective = try? SelectiveAck(decoding: bytes) else { return 0 }
    let encoded = selective.encoded()
    guard bytes.starts(with: encoded), (1...SelectiveAck.maxBlocks).contains(selective.blocks.count) else {
        fatalError("SelectiveAck round trip differs")
    }
    return 0
}
