/// One Pilot packet: the 34-byte header and its payload (SPEC v0.5 §3, PROTOCOL.md §2).
///
/// ```
/// 0      1      2        4        10       16       18       20     24     28      30       34
/// [v|fl] [prot] [length] [src 6]  [dst 6]  [sport]  [dport]  [seq]  [ack]  [win]   [crc32]  payload
/// ```
/// All integers big-endian; the version nibble is 1; the CRC-32/IEEE covers the header with the
/// checksum field zeroed, then the payload. Bytes after `34 + length` are ignored, as the
/// reference does.
public struct Packet: Hashable, Sendable {
    public static let headerSize = 34
    public static let version: UInt8 = 1
    /// The largest payload the 16-bit length field can describe.
    public static let maxPayload = Int(UInt16.max)

    public var flags: PacketFlags
    public var proto: PacketProtocol
    public var source: Address
    public var destination: Address
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: UInt32
    public var acknowledgment: UInt32
    /// Free receive slots, counted in segments.
    public var window: UInt16
    public var payload: [UInt8]

    public init(
        flags: PacketFlags = [], proto: PacketProtocol, source: Address, destination: Address,
        sourcePort: UInt16, destinationPort: UInt16, sequence: UInt32 = 0, acknowledgment: UInt32 = 0,
        window: UInt16 = 0, payload: [UInt8] = []
    ) {
        self.flags = flags
        self.proto = proto
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.sequence = sequence
        self.acknowledgment = acknowledgment
        self.window = window
        self.payload = payload
    }

    /// Decodes and verifies a packet.
    public init(decoding bytes: ArraySlice<UInt8>) throws(WireError) {
        var reader = ByteReader(bytes)
        let first = try reader.readUInt8("packet version")
        guard first >> 4 == Self.version else { throw .unsupportedVersion(first >> 4) }
        flags = PacketFlags(rawValue: first & 0x0F)
        proto = PacketProtocol(rawValue: try reader.readUInt8("packet protocol"))
        let length = Int(try reader.readUInt16("packet payload length"))
        source = try Address(decoding: &reader)
        destination = try Address(decoding: &reader)
        sourcePort = try reader.readUInt16("packet source port")
        destinationPort = try reader.readUInt16("packet destination port")
        sequence = try reader.readUInt32("packet sequence")
        acknowledgment = try reader.readUInt32("packet acknowledgment")
        window = try reader.readUInt16("packet window")
        let checksum = try reader.readUInt32("packet checksum")
        let body = try reader.readBytes(length, "packet payload")
        payload = Array(body)

        let start = bytes.startIndex
        var crc = CRC32.Accumulator()
        crc.update(bytes[start..<start + 30])
        crc.updateZeros(4)
        crc.update(body)
        guard crc.value == checksum else { throw .badChecksum(expected: checksum, computed: crc.value) }
    }

    public init(decoding bytes: [UInt8]) throws(WireError) {
        try self.init(decoding: bytes[...])
    }

    /// Appends the packet, checksum included.
    public func encode(into writer: inout ByteWriter) throws(WireError) {
        guard payload.count <= Self.maxPayload else {
            throw .oversized(field: "packet payload", limit: Self.maxPayload, actual: payload.count)
        }
        // Written in place with the checksum zeroed, which is what the checksum covers: one pass
        // over contiguous bytes, then the checksum goes in.
        let start = writer.count
        writer.writeUInt8(Self.version << 4 | flags.rawValue & 0x0F)
        writer.writeUInt8(proto.rawValue)
        writer.writeUInt16(UInt16(payload.count))
        source.encode(into: &writer)
        destination.encode(into: &writer)
        writer.writeUInt16(sourcePort)
        writer.writeUInt16(destinationPort)
        writer.writeUInt32(sequence)
        writer.writeUInt32(acknowledgment)
        writer.writeUInt16(window)
        let checksumOffset = writer.count
        writer.writeUInt32(0)
        writer.writeBytes(payload)
        writer.overwriteUInt32(CRC32.checksum(writer.bytes[start...]), at: checksumOffset)
    }

    /// The packet's bytes.
    public func encoded() throws(WireError) -> [UInt8] {
        var writer = ByteWriter(capacity: Self.headerSize + payload.count)
        try encode(into: &writer)
        return writer.bytes
    }
}

/// Header flags: the low nibble of the first byte.
public struct PacketFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let syn = PacketFlags(rawValue: 0x1)
    public static let ack = PacketFlags(rawValue: 0x2)
    public static let fin = PacketFlags(rawValue: 0x4)
    public static let rst = PacketFlags(rawValue: 0x8)

    public var description: String {
        let names = [(Self.syn, "SYN"), (.ack, "ACK"), (.fin, "FIN"), (.rst, "RST")]
            .filter { contains($0.0) }.map(\.1)
        return names.isEmpty ? "-" : names.joined(separator: "|")
    }
}

/// The transport protocol byte. Unknown values stay representable so a receiver can count and
/// drop them instead of failing the whole frame.
public struct PacketProtocol: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Reliable, ordered byte stream.
    public static let stream = PacketProtocol(rawValue: 1)
    /// Unreliable message.
    public static let datagram = PacketProtocol(rawValue: 2)
    /// Pings and keepalives.
    public static let control = PacketProtocol(rawValue: 3)

    public var isKnown: Bool { (1...3).contains(rawValue) }
}
