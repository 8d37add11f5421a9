// libFuzzer target: the driver socket's frame decoder fed the input in two pieces, as a stream
// socket may split it. Every frame must encode to what it was read from; every frame that reads
// as a request or a push must encode and read back equal.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var decoder = DriverFrameDecoder()
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    for piece in [bytes[..<split], bytes[split...]] {
        decoder.append(piece)
        while let frame = try? decoder.next() {
            var again = DriverFrameDecoder()
            again.append(frame.encoded())
            guard let copy = try? again.next(), copy == frame, again.bufferedCount == 0 else {
                fatalError("DriverFrame round trip differs")
            }
            if let request = try? DriverRequest(decoding: frame) {
                guard let decoded = try? DriverRequest(decoding: request.frame()), decoded == request else {
                    fatalError("DriverRequest round trip differs")
                }
            }
            if let push = try? DriverPush(decoding: frame) {
                guard let decoded = try? DriverPush(decoding: push.frame()), decoded == push else {
                    fatalError("DriverPush round trip differs")
                }
            }
        }
    }
    return 0
}
