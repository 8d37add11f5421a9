// libFuzzer target: data-exchange frames (port 1001). Any byte stream must decode into frames or
// throw; every frame must re-encode to exactly its bytes; a tagged frame must untag or throw.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var decoder = DataExchangeFrame.Decoder(maxPayload: 1 << 16)
    decoder.append(bytes)
    var offset = 0
    while let frame = try? decoder.next() {
        let encoded = frame.encoded()
        guard Array(bytes[offset..<offset + encoded.count]) == encoded else { fatalError("DataExchangeFrame round trip differs") }
        offset += encoded.count
        if let (inner, id, replyTo) = try? frame.untagged(), frame.kind == .tagged {
            _ = DataExchangeFrame.tagged(inner, messageID: id ?? "", replyTo: replyTo)
        }
    }
    return 0
}
