/// The payload of a `network` (0x1F) request: a sub-command byte and its arguments
/// (`docs/PROTOCOL.md §12.3`). Network ids are u16 and node ids u32, big-endian.
public enum DriverNetworkRequest: Sendable, Equatable {
    /// 0x01: the networks the registry knows.
    case list
    /// 0x02 `[network][token]`: join `network`; the token runs to the end and may be empty.
    case join(network: UInt16, token: String)
    /// 0x03 `[network]`: leave `network`.
    case leave(network: UInt16)
    /// 0x04 `[network]`: the members of `network`.
    case members(network: UInt16)
    /// 0x05 `[network][node]`: invite `node` into `network` (admin token).
    case invite(network: UInt16, node: UInt32)
    /// 0x06: the invitations waiting for this node.
    case pollInvites
    /// 0x07 `[network][accept u8]`: answer an invitation; the byte 1 accepts, any other rejects.
    case respond(network: UInt16, accept: Bool)

    /// The sub-command byte of each case.
    private enum Kind: UInt8 {
        case list = 0x01, join, leave, members, invite, pollInvites, respond
    }

    /// Reads the sub-command and its arguments; the token takes the rest of the payload, and the
    /// caller checks that nothing is left after the others.
    public init(decoding reader: inout ByteReader) throws(WireError) {
        let kind: Kind = try reader.readKind("network sub-command")
        switch kind {
        case .list:
            self = .list
        case .join:
            let network = try reader.readUInt16("network join id")
            self = .join(network: network, token: try reader.readText("network join token"))
        case .leave:
            self = .leave(network: try reader.readUInt16("network leave id"))
        case .members:
            self = .members(network: try reader.readUInt16("network members id"))
        case .invite:
            let network = try reader.readUInt16("network invite id")
            self = .invite(network: network, node: try reader.readUInt32("network invite node"))
        case .pollInvites:
            self = .pollInvites
        case .respond:
            let network = try reader.readUInt16("network respond id")
            self = .respond(network: network, accept: try reader.readUInt8("network respond accept") == 1)
        }
    }

    /// Appends the sub-command and its arguments.
    public func encode(into writer: inout ByteWriter) {
        writer.writeUInt8(kind.rawValue)
        switch self {
        case .list, .pollInvites:
            break
        case .join(let network, let token):
            writer.writeUInt16(network)
            writer.writeBytes(token.utf8)
        case .leave(let network), .members(let network):
            writer.writeUInt16(network)
        case .invite(let network, let node):
            writer.writeUInt16(network)
            writer.writeUInt32(node)
        case .respond(let network, let accept):
            writer.writeUInt16(network)
            writer.writeUInt8(accept ? 1 : 0)
        }
    }

    /// The sub-command of this request.
    private var kind: Kind {
        switch self {
        case .list: .list
        case .join: .join
        case .leave: .leave
        case .members: .members
        case .invite: .invite
        case .pollInvites: .pollInvites
        case .respond: .respond
        }
    }
}
