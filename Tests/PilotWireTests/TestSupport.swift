import PilotTestSupport
import PilotWire

/// A seeded generator (SplitMix64) so property tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }

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
