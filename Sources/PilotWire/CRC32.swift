/// CRC-32/IEEE (zlib): reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF.
///
/// The packet checksum of SPEC v0.5 §3, computed over the header with its checksum field zeroed
/// followed by the payload. Table-driven, one table lookup per byte.
public enum CRC32 {
    /// The checksum of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var state = Accumulator()
        state.update(bytes)
        return state.value
    }

    /// An incremental checksum, for data that arrives in pieces.
    public struct Accumulator: Sendable {
        private var crc: UInt32 = 0xFFFF_FFFF

        public init() {}

        public mutating func update(_ bytes: some Sequence<UInt8>) {
            var crc = self.crc
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            self.crc = crc
        }

        /// Feeds `count` zero bytes (the zeroed checksum field) without materialising them.
        public mutating func updateZeros(_ count: Int) {
            for _ in 0..<count { crc = table[Int(crc & 0xFF)] ^ (crc >> 8) }
        }

        public var value: UInt32 { crc ^ 0xFFFF_FFFF }
    }

    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1
        }
        return value
    }
}
