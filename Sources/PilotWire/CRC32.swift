/// CRC-32/IEEE (zlib): reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF.
///
/// The packet checksum of SPEC v0.5 §3, computed over the header with its checksum field zeroed
/// followed by the payload. Table-driven; contiguous bytes go eight at a time ("slicing-by-8":
/// eight tables, one lookup per byte but no dependency chain between them).
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
            if bytes.withContiguousStorageIfAvailable({ update(UnsafeRawBufferPointer($0)) }) != nil { return }
            var crc = self.crc
            for byte in bytes {
                crc = tables[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            self.crc = crc
        }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            var crc = self.crc
            var index = 0
            let count = bytes.count
            tables.withUnsafeBufferPointer { t in
                while count - index >= 8 {
                    let low = crc ^ bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian
                    let high = bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self).littleEndian
                    crc = t[7 * 256 + Int(low & 0xFF)] ^ t[6 * 256 + Int(low >> 8 & 0xFF)]
                        ^ t[5 * 256 + Int(low >> 16 & 0xFF)] ^ t[4 * 256 + Int(low >> 24)]
                        ^ t[3 * 256 + Int(high & 0xFF)] ^ t[2 * 256 + Int(high >> 8 & 0xFF)]
                        ^ t[256 + Int(high >> 16 & 0xFF)] ^ t[Int(high >> 24)]
                    index += 8
                }
                while index < count {
                    crc = t[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
                    index += 1
                }
            }
            self.crc = crc
        }

        /// Feeds `count` zero bytes (the zeroed checksum field) without materialising them.
        public mutating func updateZeros(_ count: Int) {
            for _ in 0..<count { crc = tables[Int(crc & 0xFF)] ^ (crc >> 8) }
        }

        public var value: UInt32 { crc ^ 0xFFFF_FFFF }
    }

    /// Table k (at k × 256) gives the CRC of a byte followed by k zero bytes; table 0 is the
    /// classic one.
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var value = UInt32(index)
            for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
            tables[index] = value
        }
        for k in 1..<8 {
            for index in 0..<256 {
                let previous = tables[(k - 1) * 256 + index]
                tables[k * 256 + index] = tables[Int(previous & 0xFF)] ^ (previous >> 8)
            }
        }
        return tables
    }()
}
