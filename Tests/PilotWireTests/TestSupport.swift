import PilotTestSupport
import PilotWire

extension SplitMix64 {
    mutating func address() -> Address {
        Address(network: .random(in: 0...UInt16.max, using: &self), node: .random(in: 0...UInt32.max, using: &self))
    }
}

/// Every proper prefix of `bytes` must fail to decode with a typed error (never trap).
func assertEveryTruncationFails(
    _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line, _ decode: ([UInt8]) throws -> Void
) -> Int {
    var failures = 0
    for length in 0..<bytes.count {
        do { try decode(Array(bytes.prefix(length))) } catch { failures += 1 }
    }
    return failures
}
