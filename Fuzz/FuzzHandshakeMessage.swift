// libFuzzer target: trust handshake message decoder. Any input must decode or throw; a decoded
// message must survive its own encoding unchanged whenever that encoding is within the size
// limit (re-escaping may make it longer than the bytes it was read from: a 4079-byte input of
// escaped backslashes re-encoded past 4096 bytes, kept as a seed).
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let message = try? HandshakeMessage(decoding: bytes) else { return 0 }
    guard message.encoded().count <= HandshakeMessage.maxSize else { return 0 }
    guard let again = try? HandshakeMessage(decoding: message.encoded()), again == message else {
        fatalError("HandshakeMessage round trip differs")
    }
    return 0
}
