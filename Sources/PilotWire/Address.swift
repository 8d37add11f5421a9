/// A 48-bit Pilot address: 16-bit network id and 32-bit node id.
///
/// Text form `N:NNNN.HHHH.LLLL`: the network in decimal, then the same network in hex and the
/// node id's high and low halves, each four upper-case hex digits (`docs/PROTOCOL.md §1.1`).
public struct Address: Hashable, Comparable, Sendable {
    /// The network id; 0 is the backbone.
    public var network: UInt16
    /// The node id, unique within the registry; `broadcastNode` is every node.
    public var node: UInt32

    /// Size of an address on the wire.
    public static let encodedSize = 6
    /// The all-zero address.
    public static let zero = Address(network: 0, node: 0)
    /// The node id that means "every node of the network".
    public static let broadcastNode: UInt32 = 0xFFFF_FFFF

    /// An address from its two parts.
    public init(network: UInt16 = 0, node: UInt32) {
        self.network = network
        self.node = node
    }

    /// One word instead of two fields.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(UInt64(network) << 32 | UInt64(node))
    }

    /// The broadcast address of `network`.
    public static func broadcast(network: UInt16) -> Address {
        Address(network: network, node: broadcastNode)
    }

    /// Whether this is `zero` (unset).
    public var isZero: Bool { self == .zero }
    /// Whether the node id is `broadcastNode`.
    public var isBroadcast: Bool { node == Self.broadcastNode }

    /// Orders by network, then node.
    public static func < (lhs: Address, rhs: Address) -> Bool {
        (lhs.network, lhs.node) < (rhs.network, rhs.node)
    }

    /// Parses the text form; `nil` for anything that is not exactly `N:NNNN.HHHH.LLLL` with the
    /// hex network equal to the decimal one.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2,
            !parts[0].isEmpty, parts[0].count <= 5, parts[0].allSatisfy(\.isASCIIDigit),
            let network = UInt16(parts[0])
        else { return nil }
        let groups = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        guard groups.count == 3,
            groups.allSatisfy({ $0.count == 4 && $0.allSatisfy(\.isHexDigit) && $0.allSatisfy(\.isASCII) }),
            let hexNetwork = UInt16(groups[0], radix: 16), hexNetwork == network,
            let high = UInt32(groups[1], radix: 16), let low = UInt32(groups[2], radix: 16)
        else { return nil }
        self.init(network: network, node: high << 16 | low)
    }

    /// Reads the 6 bytes: network u16, node u32, big-endian.
    public init(decoding reader: inout ByteReader) throws(WireError) {
        network = try reader.readUInt16("address network")
        node = try reader.readUInt32("address node")
    }

    /// Appends the 6 bytes.
    public func encode(into writer: inout ByteWriter) {
        writer.writeUInt16(network)
        writer.writeUInt32(node)
    }
}

extension Address: CustomStringConvertible {
    /// The text form `N:NNNN.HHHH.LLLL`.
    public var description: String {
        "\(network):\(hex4(UInt32(network))).\(hex4(node >> 16)).\(hex4(node & 0xFFFF))"
    }
}

/// Four upper-case hex digits, zero-padded.
private func hex4(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}
