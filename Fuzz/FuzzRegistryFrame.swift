// libFuzzer target: the registry's stream decoder fed the input in two pieces, as TCP may split
// it. Every message it yields must re-frame and decode to itself.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var decoder = RegistryFrameDecoder(maxSize: 1 << 16)
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    for piece in [bytes[..<split], bytes[split...]] {
        decoder.append(piece)
        while let event = try? decoder.next() {
            guard case .message(let message) = event else { continue }
            guard let framed = try? RegistryFrame.encode(message) else { fatalError("decoded message does not frame") }
            var check = RegistryFrameDecoder()
            check.append(framed)
            guard case .message(let again)? = try? check.next(), again == message else {
                fatalError("registry message round trip differs")
            }
        }
    }
    return 0
}
