// libFuzzer target: BeaconMessage decoder. A decoded message must re-encode to the same bytes,
// except `notify`, whose trailing bytes are ignored by design.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let message = try? BeaconMessage(decoding: bytes) else { return 0 }
    guard let again = try? message.encoded() else { fatalError("decoded BeaconMessage does not encode") }
    if case .notify = message {
        guard again == Array(bytes.prefix(2)) else { fatalError("notify round trip differs") }
    } else if again != bytes {
        fatalError("BeaconMessage round trip differs")
    }
    return 0
}
