/// The selective acknowledgment a stream's ACK may carry as its payload (`docs/PROTOCOL.md
/// §3.4`): "SACK", a block count 1–4, then each block's edges, big-endian: the first sequence
/// number held out of order and the one after the last.
///
/// Invariant: 1 to `maxBlocks` blocks. Decoding reads the blocks the count names and ignores
/// any bytes after them, as 1.18 does; it never traps and never reads past the end.
public struct SelectiveAck: Sendable, Equatable {
    /// One run of bytes held out of order: `left` up to, not including, `right`.
    public struct Block: Sendable, Equatable {
        /// The first sequence number held.
        public var left: UInt32
        /// The sequence number after the last held.
        public var right: UInt32

        /// The run from `left` up to `right`.
        public init(left: UInt32, right: UInt32) {
            self.left = left
            self.right = right
        }
    }

    /// The payload's first four bytes. A stream never sends a data segment that begins so.
    public static let magic: [UInt8] = Array("SACK".utf8)
    /// The most blocks one ACK carries.
    public static let maxBlocks = 4

    /// Lowest first, as a stream makes them; 1 to `maxBlocks`.
    public let blocks: [Block]

    /// The first `maxBlocks` of `blocks`; nil when there are none.
    public init?(blocks: some Collection<Block>) {
        guard !blocks.isEmpty else { return nil }
        self.blocks = Array(blocks.prefix(Self.maxBlocks))
    }

    /// Reads an ACK's payload; throws unless it begins with `magic` and holds the blocks its count names.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        guard bytes.starts(with: Self.magic) else {
            throw .unknownType(field: "SACK magic", value: bytes.prefix(4).reduce(0) { $0 << 8 | UInt32($1) })
        }
        var reader = ByteReader(bytes)
        _ = try reader.readBytes(Self.magic.count, "SACK magic")
        let count = try reader.readUInt8("SACK block count")
        guard (1...Self.maxBlocks).contains(Int(count)) else {
            throw .invalidValue(field: "SACK block count", reason: "\(count) blocks, 1 to \(Self.maxBlocks) allowed")
        }
        var blocks: [Block] = []
        blocks.reserveCapacity(Int(count))
        for _ in 0..<count {
            blocks.append(Block(left: try reader.readUInt32("SACK block left"), right: try reader.readUInt32("SACK block right")))
        }
        self.blocks = blocks
    }

    /// Appends the payload to `writer`.
    public func encode(into writer: inout ByteWriter) {
        writer.writeBytes(Self.magic)
        writer.writeUInt8(UInt8(blocks.count))
        for block in blocks {
            writer.writeUInt32(block.left)
            writer.writeUInt32(block.right)
        }
    }

    /// The payload as an ACK carries it.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: Self.magic.count + 1 + 8 * blocks.count)
        encode(into: &writer)
        return writer.bytes
    }
}
