// libFuzzer target: the nameserver's text requests and replies. Any input must decode or throw;
// a decoded request or reply must survive its own encoding unchanged.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let request = try? NameserverRequest(decoding: bytes) {
        guard let again = try? NameserverRequest(decoding: request.encoded), again == request else {
            fatalError("NameserverRequest round trip differs")
        }
    }
    if let reply = try? NameserverReply(decoding: bytes) {
        guard let again = try? NameserverReply(decoding: reply.encoded), again == reply else {
            fatalError("NameserverReply round trip differs")
        }
    }
    return 0
}
