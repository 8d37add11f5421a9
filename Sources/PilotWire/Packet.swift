/// One Pilot packet: the 34-byte header and its payload (`docs/PROTOCOL.md §2.1`).
///
/// ```
/// 0      1      2        4        10       16       18       20     24     28      30       34
/// [v|fl] [prot] [length] [src 6]  [dst 6]  [sport]  [dport]  [seq]  [ack]  [win]   [crc32]  payload
/// ```
/// All integers big-endian; the version nibble is 1; the CRC-32/IEEE covers the header with the
/// checksum field zeroed, then the payload. Bytes after `34 + length` are ignored, as the
/// reference does.
public struct Packet: Hashable, Sendable {
    /// The header's size in bytes.
    public static let headerSize = 34
    /// The only protocol version, the high nibble of the first byte.
    public static let version: UInt8 = 1
    /// The largest payload the 16-bit length field can describe.
    public static let maxPayload = Int(UInt16.max)

    /// SYN, ACK, FIN, RST: the low nibble of the first byte.
    public var flags: PacketFlags
    /// What the payload is: stream, datagram or control.
    public var proto: PacketProtocol
    /// The sending identity's address.
    public var source: Address
    /// The receiving identity's address.
    public var destination: Address
    /// The sender's port.
    public var sourcePort: UInt16
    /// The receiver's port.
    public var destinationPort: UInt16
    /// The first payload byte's sequence number (streams; SYN and FIN count one).
    public var sequence: UInt32
    /// The next sequence number the sender expects, when `flags` has ACK.
    public var acknowledgment: UInt32
    /// Free receive slots, counted in segments.
    public var window: UInt16
    /// The payload; at most `maxPayload` bytes to encode.
    public var payload: [UInt8]

    /// A packet from its fields; encoding computes the length and checksum.
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

    /// Decodes and verifies a packet (see `init(decoding:)` of a slice).
    public init(decoding bytes: [UInt8]) throws(WireError) {
        try self.init(decoding: bytes[...])
    }

    /// The bytes the packet takes on the wire: the header and the payload.
    public var encodedCount: Int { Self.headerSize + payload.count }

    /// Throws when the packet cannot be encoded: a payload longer than the length field holds.
    public func validate() throws(WireError) {
        guard payload.count <= Self.maxPayload else {
            throw .oversized(field: "packet payload", limit: Self.maxPayload, actual: payload.count)
        }
    }

    /// Writes the packet, checksum included, at the start of `buffer` (at least `encodedCount`
    /// bytes): first with the checksum zeroed, which is what the checksum covers, then the
    /// checksum. Lets a sender build the packet where it will be sealed, without a copy.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) throws(WireError) {
        try validate()
        write(into: buffer)
    }

    /// `encode(into:)` of a validated packet.
    private func write(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= encodedCount, "a packet of \(encodedCount) bytes in \(buffer.count)")
        buffer.storeBytes(of: Self.version << 4 | flags.rawValue & 0x0F, toByteOffset: 0, as: UInt8.self)
        buffer.storeBytes(of: proto.rawValue, toByteOffset: 1, as: UInt8.self)
        buffer.storeBytes(of: UInt16(payload.count).bigEndian, toByteOffset: 2, as: UInt16.self)
        func store(_ address: Address, at offset: Int) {
            buffer.storeBytes(of: address.network.bigEndian, toByteOffset: offset, as: UInt16.self)
            buffer.storeBytes(of: address.node.bigEndian, toByteOffset: offset + 2, as: UInt32.self)
        }
        store(source, at: 4)
        store(destination, at: 10)
        buffer.storeBytes(of: sourcePort.bigEndian, toByteOffset: 16, as: UInt16.self)
        buffer.storeBytes(of: destinationPort.bigEndian, toByteOffset: 18, as: UInt16.self)
        buffer.storeBytes(of: sequence.bigEndian, toByteOffset: 20, as: UInt32.self)
        buffer.storeBytes(of: acknowledgment.bigEndian, toByteOffset: 24, as: UInt32.self)
        buffer.storeBytes(of: window.bigEndian, toByteOffset: 28, as: UInt16.self)
        buffer.storeBytes(of: UInt32(0), toByteOffset: 30, as: UInt32.self)
        payload.withUnsafeBytes { bytes in
            UnsafeMutableRawBufferPointer(rebasing: buffer[Self.headerSize..<encodedCount]).copyMemory(from: bytes)
        }
        var checksum = CRC32.Accumulator()
        checksum.update(UnsafeRawBufferPointer(rebasing: buffer[0..<encodedCount]))
        buffer.storeBytes(of: checksum.value.bigEndian, toByteOffset: 30, as: UInt32.self)
    }

    /// The packet's bytes.
    public func encoded() throws(WireError) -> [UInt8] {
        try validate()
        return [UInt8](unsafeUninitializedCapacity: encodedCount) { buffer, initialized in
            write(into: UnsafeMutableRawBufferPointer(buffer))
            initialized = encodedCount
        }
    }
}

/// Header flags: the low nibble of the first byte.
public struct PacketFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    /// The four flag bits.
    public let rawValue: UInt8

    /// Flags from their bits; bits above the low nibble are dropped when encoded.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Opens a stream.
    public static let syn = PacketFlags(rawValue: 0x1)
    /// `acknowledgment` is valid.
    public static let ack = PacketFlags(rawValue: 0x2)
    /// The sender has sent its last byte.
    public static let fin = PacketFlags(rawValue: 0x4)
    /// Resets the stream.
    public static let rst = PacketFlags(rawValue: 0x8)

    /// The set flags joined with `|`, as `SYN|ACK`, or `-` for none.
    public var description: String {
        let names = [(Self.syn, "SYN"), (.ack, "ACK"), (.fin, "FIN"), (.rst, "RST")]
            .filter { contains($0.0) }.map(\.1)
        return names.isEmpty ? "-" : names.joined(separator: "|")
    }
}

/// The transport protocol byte. Unknown values stay representable so a receiver can count and
/// drop them instead of failing the whole frame.
public struct PacketProtocol: RawRepresentable, Hashable, Sendable {
    /// The protocol byte.
    public let rawValue: UInt8

    /// Any byte, known or not.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Reliable, ordered byte stream.
    public static let stream = PacketProtocol(rawValue: 1)
    /// Unreliable message.
    public static let datagram = PacketProtocol(rawValue: 2)
    /// Pings and keepalives.
    public static let control = PacketProtocol(rawValue: 3)

    /// Whether this is stream, datagram or control.
    public var isKnown: Bool { (1...3).contains(rawValue) }
}
