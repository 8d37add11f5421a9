import PilotWire

extension Duration {
    /// The duration in seconds, as a Double (for figures and logs).
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// What `bench` sends: pseudo-random bytes repeating every 1,048,573 bytes (a prime, so the
/// pattern never lines up with segment or chunk sizes), checked on their way back.
enum BenchPattern {
    static let chunk = 4096
    private static let period = 1_048_573
    /// One period (SplitMix64's output, the low byte of each step).
    private static let block: [UInt8] = {
        var random = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)
        return (0..<period).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }()

    /// `count` (at most `chunk`) bytes of the stream from `offset`.
    static func bytes(at offset: Int, count: Int) -> [UInt8] {
        let start = offset % period
        return start + count <= period ? Array(block[start..<start + count]) : Array(block[start..<period] + block[0..<(start + count - period)])
    }

    /// Whether `received` is the stream's bytes from `offset`.
    static func matches(_ received: [UInt8], at offset: Int) -> Bool {
        var position = offset
        var index = 0
        while index < received.count {
            let start = position % period
            let count = min(received.count - index, period - start)
            guard received[index..<index + count].elementsEqual(block[start..<start + count]) else { return false }
            index += count
            position += count
        }
        return true
    }
}
