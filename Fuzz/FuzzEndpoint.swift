// libFuzzer target: host:port parser. Any input must parse or throw; a parsed endpoint's text
// form parses back to the same endpoint.
import PilotWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let endpoint = try? Endpoint(parsing: text) else { return 0 }
    guard let again = try? Endpoint(parsing: endpoint.description), again == endpoint else {
        fatalError("Endpoint round trip differs for \(text)")
    }
    return 0
}
