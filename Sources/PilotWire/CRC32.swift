import CCRC32

/// CRC-32/IEEE (zlib): reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF.
///
/// The packet checksum of `docs/PROTOCOL.md §2.1`, computed over the header with its checksum field zeroed
/// followed by the payload. Table-driven. Contiguous bytes go forty at a time, as five
/// interleaved lanes of eight bytes ("braided", the way zlib has done it since 1.2.12): each
/// lane's CRC depends only on its own previous one, so the processor works on five chains of
/// lookups at once instead of waiting on one. The lanes fold into one CRC at the last block.
///
/// Where the processor multiplies without carries (x86-64's PCLMULQDQ), runs of 64 bytes or
/// more are folded into 16 by `CCRC32` first, about four times as fast; the tables finish them.
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

        /// An accumulator before any byte.
        public init() {}

        /// Feeds `bytes`, contiguous ones braided.
        public mutating func update(_ bytes: some Sequence<UInt8>) {
            if bytes.withContiguousStorageIfAvailable({ update(UnsafeRawBufferPointer($0)) }) != nil { return }
            var crc = self.crc
            for byte in bytes {
                crc = tables[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            self.crc = crc
        }

        /// Feeds the bytes of `bytes`: folded where the processor can (`CCRC32`), else forty at
        /// a time.
        public mutating func update(_ bytes: UnsafeRawBufferPointer) {
            if bytes.count >= 64, CRC32.folds, let base = bytes.baseAddress {
                // The folded 16 bytes carry the CRC of the bulk from a register of 0.
                let bulk = bytes.count & ~15
                var folded: (UInt64, UInt64) = (0, 0)
                withUnsafeMutableBytes(of: &folded) { pilot_crc32_fold(crc, base, bulk, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
                crc = 0
                withUnsafeBytes(of: folded) { updateBraided($0) }
                updateBraided(UnsafeRawBufferPointer(rebasing: bytes[bulk...]))
                return
            }
            updateBraided(bytes)
        }

        /// Feeds the bytes of `bytes` through the tables, forty at a time.
        mutating func updateBraided(_ bytes: UnsafeRawBufferPointer) {
            var crc = self.crc
            var index = 0
            let count = bytes.count
            tables.withUnsafeBufferPointer { t in
                let blocks = count / CRC32.block
                if blocks > 0 {
                    @inline(__always) func word(_ lane: Int) -> UInt64 {
                        bytes.loadUnaligned(fromByteOffset: index + 8 * lane, as: UInt64.self).littleEndian
                    }
                    // A lane's word (its CRC folded in) becomes what it adds to the same lane's
                    // word one block later: byte k through braid table k (at (1 + k) × 256).
                    @inline(__always) func braid(_ word: UInt64) -> UInt64 {
                        var lane: UInt32 = 0
                        for k in 0..<8 { lane ^= t[(1 + k) * 256 + Int(word >> (8 * k) & 0xFF)] }
                        return UInt64(lane)
                    }
                    // The CRC register after the eight bytes of `word` (register already in).
                    @inline(__always) func fold(_ word: UInt64) -> UInt64 {
                        var register = word
                        for _ in 0..<8 { register = (register >> 8) ^ UInt64(t[Int(register & 0xFF)]) }
                        return register
                    }
                    var lane0 = UInt64(crc), lane1: UInt64 = 0, lane2: UInt64 = 0, lane3: UInt64 = 0, lane4: UInt64 = 0
                    for _ in 1..<blocks {
                        let word0 = lane0 ^ word(0), word1 = lane1 ^ word(1), word2 = lane2 ^ word(2)
                        let word3 = lane3 ^ word(3), word4 = lane4 ^ word(4)
                        lane0 = braid(word0)
                        lane1 = braid(word1)
                        lane2 = braid(word2)
                        lane3 = braid(word3)
                        lane4 = braid(word4)
                        index += CRC32.block
                    }
                    // The last block folds the lanes into one register, in the order of the bytes.
                    var register = fold(lane0 ^ word(0))
                    register = fold(lane1 ^ word(1) ^ register)
                    register = fold(lane2 ^ word(2) ^ register)
                    register = fold(lane3 ^ word(3) ^ register)
                    register = fold(lane4 ^ word(4) ^ register)
                    index += CRC32.block
                    crc = UInt32(truncatingIfNeeded: register)
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

        /// The checksum of everything fed so far.
        public var value: UInt32 { crc ^ 0xFFFF_FFFF }
    }

    /// Whether `CCRC32` folds here.
    static let folds = pilot_crc32_fold_available() != 0

    /// Bytes of one braided block: five lanes of eight.
    private static let block = 40

    /// Table 0 is the classic one: the CRC register after one byte. Braid table k (at
    /// (1 + k) × 256) gives what byte k of a lane's word adds to that lane one block later: the
    /// register after that byte followed by the 39 - k bytes to the same place in the next block.
    private static let tables: [UInt32] = {
        var classic = [UInt32](repeating: 0, count: 256)
        for index in 0..<256 {
            var value = UInt32(index)
            for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1 }
            classic[index] = value
        }
        // after[m]: the register after a byte followed by m zero bytes.
        var after = [classic]
        for m in 1..<block { after.append(after[m - 1].map { classic[Int($0 & 0xFF)] ^ ($0 >> 8) }) }
        return classic + (0..<8).flatMap { k in after[block - 1 - k] }
    }()
}
