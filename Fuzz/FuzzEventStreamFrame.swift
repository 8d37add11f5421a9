// libFuzzer target: the event-stream decoder. Any input must decode or throw, never trap; every
// event decoded must encode to the bytes it was read from, and read back the same.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var decoder = EventStreamFrame.Decoder()
    decoder.append(UnsafeBufferPointer(start: data, count: size))
    while let event = try? decoder.next() {
        guard let bytes = try? event.encoded() else { fatalError("a decoded event does not encode") }
        var again = EventStreamFrame.Decoder()
        again.append(bytes)
        guard let copy = try? again.next(), copy == event else { fatalError("EventStreamFrame round trip differs") }
    }
    return 0
}
