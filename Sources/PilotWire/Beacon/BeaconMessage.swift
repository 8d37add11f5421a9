/// A message between a node and a beacon, sharing the node's tunnel socket: the first byte is a
/// type below 0x10 (`docs/PROTOCOL.md §9`). All ids are u32 big-endian.
public enum BeaconMessage: Hashable, Sendable {
    /// 0x01: "this is node `node`" — the beacon records the observed source. Node 0 asks only for
    /// the observed endpoint (STUN) before registration.
    case discover(node: UInt32)
    /// 0x02: the endpoint the beacon saw the discover come from.
    case discoverReply(ip: [UInt8], port: UInt16)
    /// 0x03: `requester` asks the beacon to introduce it to `target`.
    case punchRequest(requester: UInt32, target: UInt32)
    /// 0x04: the beacon tells a node where to send punches (3 × `PILP`).
    case punchCommand(ip: [UInt8], port: UInt16)
    /// 0x05: a tunnel frame for the beacon to relay from `source` to `destination`.
    case relay(source: UInt32, destination: UInt32, frame: ArraySlice<UInt8>)
    /// 0x06: a relayed tunnel frame from `source`.
    case relayDeliver(source: UInt32, frame: ArraySlice<UInt8>)
    /// 0x07: beacon-to-beacon gossip of the nodes a beacon knows.
    case sync(beacon: UInt32, nodes: [UInt32])
    /// 0x08: as `discover`, and asks for relayed frames as 0x09 (they name their destination,
    /// which a socket carrying several node ids needs).
    case discoverExtended(node: UInt32)
    /// 0x09: a relayed tunnel frame from `source` to `destination`.
    case relayDeliverTo(source: UInt32, destination: UInt32, frame: ArraySlice<UInt8>)
    /// 0x0A: the beacon pokes a node; kind 1 = "a relayed handshake waits: poll the registry".
    case notify(kind: UInt8)
    /// 0x0B, pilot-rendezvous's own, beacon to peer beacon: `target` is one of yours; have it
    /// punch toward `requester`'s endpoint (`ip`, `port`) and answer with its own (0x0C).
    case punchForward(requester: UInt32, target: UInt32, ip: [UInt8], port: UInt16)
    /// 0x0C, pilot-rendezvous's own, peer beacon to beacon: tell `requester` to punch toward
    /// this endpoint, its target's.
    case punchAnswer(requester: UInt32, ip: [UInt8], port: UInt16)

    /// The type byte of each message.
    public enum Kind: UInt8, Sendable, CaseIterable {
        /// `discover`.
        case discover = 0x01
        /// `discoverReply`.
        case discoverReply = 0x02
        /// `punchRequest`.
        case punchRequest = 0x03
        /// `punchCommand`.
        case punchCommand = 0x04
        /// `relay`.
        case relay = 0x05
        /// `relayDeliver`.
        case relayDeliver = 0x06
        /// `sync`.
        case sync = 0x07
        /// `discoverExtended`.
        case discoverExtended = 0x08
        /// `relayDeliverTo`.
        case relayDeliverTo = 0x09
        /// `notify`.
        case notify = 0x0A
        /// `punchForward`.
        case punchForward = 0x0B
        /// `punchAnswer`.
        case punchAnswer = 0x0C
    }

    /// `notify` kind: a relayed handshake is waiting at the registry.
    public static let notifyHandshakePending: UInt8 = 0x01
    /// Beacon datagrams are small; a relayed frame is at most one UDP payload.
    public static let maxSize = 65_507

    /// The message's type.
    public var kind: Kind {
        switch self {
        case .discover: .discover
        case .discoverReply: .discoverReply
        case .punchRequest: .punchRequest
        case .punchCommand: .punchCommand
        case .relay: .relay
        case .relayDeliver: .relayDeliver
        case .sync: .sync
        case .discoverExtended: .discoverExtended
        case .relayDeliverTo: .relayDeliverTo
        case .notify: .notify
        case .punchForward: .punchForward
        case .punchAnswer: .punchAnswer
        }
    }

    /// Decodes one whole beacon datagram; throws on an unknown type, a short message or bytes left
    /// over (a notify's excess is ignored).
    public init(decoding bytes: ArraySlice<UInt8>) throws(WireError) {
        var reader = ByteReader(bytes)
        let type = try reader.readUInt8("beacon type")
        guard let kind = Kind(rawValue: type) else {
            throw .unknownType(field: "beacon type", value: UInt32(type))
        }
        switch kind {
        case .discover:
            self = .discover(node: try reader.readUInt32("discover node"))
            try reader.expectEnd("beacon discover")
        case .discoverExtended:
            self = .discoverExtended(node: try reader.readUInt32("discover-ex node"))
            try reader.expectEnd("beacon discover-ex")
        case .discoverReply:
            let (ip, port) = try Self.readEndpoint(&reader, "discover reply")
            self = .discoverReply(ip: ip, port: port)
        case .punchCommand:
            let (ip, port) = try Self.readEndpoint(&reader, "punch command")
            self = .punchCommand(ip: ip, port: port)
        case .punchRequest:
            let requester = try reader.readUInt32("punch requester")
            let target = try reader.readUInt32("punch target")
            try reader.expectEnd("beacon punch request")
            self = .punchRequest(requester: requester, target: target)
        case .relay:
            let source = try reader.readUInt32("relay source")
            let destination = try reader.readUInt32("relay destination")
            self = .relay(source: source, destination: destination, frame: reader.readRemaining())
        case .relayDeliver:
            let source = try reader.readUInt32("relay source")
            self = .relayDeliver(source: source, frame: reader.readRemaining())
        case .relayDeliverTo:
            let source = try reader.readUInt32("relay source")
            let destination = try reader.readUInt32("relay destination")
            self = .relayDeliverTo(source: source, destination: destination, frame: reader.readRemaining())
        case .sync:
            let beacon = try reader.readUInt32("sync beacon")
            let count = Int(try reader.readUInt16("sync count"))
            guard reader.remaining == count * 4 else {
                throw .invalidValue(
                    field: "sync nodes", reason: "count \(count) needs \(count * 4) bytes, \(reader.remaining) present")
            }
            var nodes: [UInt32] = []
            nodes.reserveCapacity(count)
            for _ in 0..<count { nodes.append(try reader.readUInt32("sync node")) }
            self = .sync(beacon: beacon, nodes: nodes)
        case .notify:
            // Trailing bytes are ignored: later kinds may carry more.
            self = .notify(kind: try reader.readUInt8("notify kind"))
        case .punchForward:
            let requester = try reader.readUInt32("punch forward requester")
            let target = try reader.readUInt32("punch forward target")
            let (ip, port) = try Self.readEndpoint(&reader, "punch forward")
            self = .punchForward(requester: requester, target: target, ip: ip, port: port)
        case .punchAnswer:
            let requester = try reader.readUInt32("punch answer requester")
            let (ip, port) = try Self.readEndpoint(&reader, "punch answer")
            self = .punchAnswer(requester: requester, ip: ip, port: port)
        }
    }

    /// Decodes one whole beacon datagram (see `init(decoding:)` of a slice).
    public init(decoding bytes: [UInt8]) throws(WireError) {
        try self.init(decoding: bytes[...])
    }

    /// `[ip length 4|16][ip][port u16]`, exactly.
    private static func readEndpoint(_ reader: inout ByteReader, _ field: String) throws(WireError) -> ([UInt8], UInt16) {
        let length = Int(try reader.readUInt8("\(field) ip length"))
        guard length == 4 || length == 16 else {
            throw .invalidValue(field: "\(field) ip length", reason: "\(length), must be 4 or 16")
        }
        let ip = Array(try reader.readBytes(length, "\(field) ip"))
        let port = try reader.readUInt16("\(field) port")
        try reader.expectEnd("beacon \(field)")
        return (ip, port)
    }

    /// Appends the message; throws for an endpoint whose address is neither IPv4 nor IPv6, or a
    /// sync list longer than its 16-bit count.
    public func encode(into writer: inout ByteWriter) throws(WireError) {
        writer.writeUInt8(kind.rawValue)
        switch self {
        case .discover(let node), .discoverExtended(let node):
            writer.writeUInt32(node)
        case .discoverReply(let ip, let port), .punchCommand(let ip, let port):
            try Self.writeEndpoint(ip, port, into: &writer)
        case let .punchForward(requester, target, ip, port):
            writer.writeUInt32(requester)
            writer.writeUInt32(target)
            try Self.writeEndpoint(ip, port, into: &writer)
        case let .punchAnswer(requester, ip, port):
            writer.writeUInt32(requester)
            try Self.writeEndpoint(ip, port, into: &writer)
        case let .punchRequest(requester, target):
            writer.writeUInt32(requester)
            writer.writeUInt32(target)
        case let .relay(source, destination, frame), let .relayDeliverTo(source, destination, frame):
            writer.writeUInt32(source)
            writer.writeUInt32(destination)
            writer.writeBytes(frame)
        case let .relayDeliver(source, frame):
            writer.writeUInt32(source)
            writer.writeBytes(frame)
        case let .sync(beacon, nodes):
            guard nodes.count <= Int(UInt16.max) else {
                throw .oversized(field: "sync nodes", limit: Int(UInt16.max), actual: nodes.count)
            }
            writer.writeUInt32(beacon)
            writer.writeUInt16(UInt16(nodes.count))
            for node in nodes { writer.writeUInt32(node) }
        case .notify(let kind):
            writer.writeUInt8(kind)
        }
    }

    /// `[ip length 4|16][ip][port u16]`.
    private static func writeEndpoint(_ ip: [UInt8], _ port: UInt16, into writer: inout ByteWriter) throws(WireError) {
        guard ip.count == 4 || ip.count == 16 else {
            throw .invalidValue(field: "beacon endpoint ip", reason: "\(ip.count) bytes, must be 4 or 16")
        }
        writer.writeUInt8(UInt8(ip.count))
        writer.writeBytes(ip)
        writer.writeUInt16(port)
    }

    /// The message's bytes, as sent in one UDP datagram; throws as `encode(into:)` does.
    public func encoded() throws(WireError) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        try encode(into: &writer)
        return writer.bytes
    }
}
