/// A request from a client of the daemon's Unix socket, typed per command
/// (`docs/PROTOCOL.md §12.3`).
///
/// Integers are big-endian; an address is its 6 bytes (network u16, node u32). Data and text
/// without a length run to the end of the payload, and text must be UTF-8. Decoding checks every
/// payload: a short one throws `truncated` naming the missing field, and bytes left after the
/// last field throw `trailingBytes` naming the command (the 1.18 daemon ignores such bytes for
/// most commands, but none of its clients sends them).
public enum DriverRequest: Sendable, Equatable {
    /// 0x01 `[port]`: listen on `port`.
    case bind(port: UInt16)
    /// 0x37 `[port]`: stop listening on `port`.
    case unbind(port: UInt16)
    /// 0x03 `[address][port]`: open a stream.
    case dial(Address, port: UInt16)
    /// 0x06 `[connection u32][data]`: stream data; never answered.
    case send(connection: UInt32, data: [UInt8])
    /// 0x08 `[connection u32]`: close a connection.
    case close(connection: UInt32)
    /// 0x0B `[address][port][data]`: a datagram, never answered; with `confirm` it is 0x39, same
    /// layout, answered with an empty 0x3A or an error that starts `sendto: `.
    case sendTo(Address, port: UInt16, data: [UInt8], confirm: Bool)
    /// 0x0D, empty: the daemon's status.
    case info
    /// 0x21, empty: a cheap liveness check.
    case health
    /// 0x25, empty: replace the identity key.
    case rotateKey
    /// 0x17, empty: leave the registry.
    case deregister
    /// 0x2B, payload ignored: abandon this client's dials in flight; never answered.
    case cancel
    /// 0x0F: a trust handshake operation.
    case handshake(DriverHandshake)
    /// 0x11 `[hostname]`: look a hostname up.
    case resolveHostname(String)
    /// 0x13 `[hostname]`: set this node's hostname; empty clears it.
    case setHostname(String)
    /// 0x1B `[url]`: set the webhook; empty clears it.
    case setWebhook(String)
    /// 0x15 `[u8]`: the byte 1 makes the node public, any other private.
    case setVisibility(public: Bool)
    /// 0x19: a JSON array of strings (`null` reads as none). The 1.18 daemon refuses more than
    /// three, with its own message; that check is the handler's, not the codec's.
    case setTags([String])
    /// 0x1F: a network operation.
    case network(DriverNetworkRequest)
    /// 0x29 `[network u16][port][token length u16][token][data]`: a datagram to every member;
    /// the admin token is at most 65,535 bytes.
    case broadcast(network: UInt16, port: UInt16, token: [UInt8], data: [UInt8])
    /// 0x2D `[node u32]`: look for a direct path to `node` again.
    case preferDirect(node: UInt32)
    /// A request this side passes on undecoded: managed networks, badges, recovery, envelopes.
    /// Only those commands decode to it, and only those round-trip through `frame()`.
    case other(DriverCommand, payload: [UInt8])

    /// The command byte the request travels under.
    public var command: DriverCommand {
        switch self {
        case .bind: .bind
        case .unbind: .unbind
        case .dial: .dial
        case .send: .send
        case .close: .close
        case .sendTo(_, _, _, let confirm): confirm ? .sendToConfirm : .sendTo
        case .info: .info
        case .health: .health
        case .rotateKey: .rotateKey
        case .deregister: .deregister
        case .cancel: .cancel
        case .handshake: .handshake
        case .resolveHostname: .resolveHostname
        case .setHostname: .setHostname
        case .setWebhook: .setWebhook
        case .setVisibility: .setVisibility
        case .setTags: .setTags
        case .network: .network
        case .broadcast: .broadcast
        case .preferDirect: .preferDirect
        case .other(let command, _): command
        }
    }

    /// Reads a request frame. A command byte that is not a request the daemon serves (unknown,
    /// removed, or a reply code) throws `unknownCommand`, whose text is 1.18's answer to it.
    public init(decoding frame: DriverFrame) throws(WireError) {
        guard let command = frame.knownCommand else { throw .unknownCommand(frame.command) }
        var reader = ByteReader(frame.payload)
        switch command {
        case .bind:
            self = .bind(port: try reader.readUInt16("bind port"))
        case .unbind:
            self = .unbind(port: try reader.readUInt16("unbind port"))
        case .dial:
            let address = try Address(decoding: &reader)
            self = .dial(address, port: try reader.readUInt16("dial port"))
        case .send:
            let connection = try reader.readUInt32("send connection id")
            self = .send(connection: connection, data: Array(reader.readRemaining()))
        case .close:
            self = .close(connection: try reader.readUInt32("close connection id"))
        case .sendTo, .sendToConfirm:
            let address = try Address(decoding: &reader)
            let port = try reader.readUInt16("sendto port")
            self = .sendTo(address, port: port, data: Array(reader.readRemaining()), confirm: command == .sendToConfirm)
        case .info:
            self = .info
        case .health:
            self = .health
        case .rotateKey:
            self = .rotateKey
        case .deregister:
            self = .deregister
        case .cancel:
            _ = reader.readRemaining()
            self = .cancel
        case .handshake:
            self = .handshake(try DriverHandshake(decoding: &reader))
        case .resolveHostname:
            self = .resolveHostname(try reader.readText("hostname"))
        case .setHostname:
            self = .setHostname(try reader.readText("hostname"))
        case .setWebhook:
            self = .setWebhook(try reader.readText("webhook URL"))
        case .setVisibility:
            self = .setVisibility(public: try reader.readUInt8("visibility") == 1)
        case .setTags:
            self = .setTags(try Self.tags(reader.readRemaining()))
        case .network:
            self = .network(try DriverNetworkRequest(decoding: &reader))
        case .broadcast:
            let network = try reader.readUInt16("broadcast network")
            let port = try reader.readUInt16("broadcast port")
            let tokenLength = Int(try reader.readUInt16("broadcast token length"))
            let token = Array(try reader.readBytes(tokenLength, "broadcast token"))
            self = .broadcast(network: network, port: port, token: token, data: Array(reader.readRemaining()))
        case .preferDirect:
            self = .preferDirect(node: try reader.readUInt32("prefer-direct node"))
        case .managed, .submitBadge, .enrollRecovery, .signEnvelope, .verifyEnvelope:
            _ = reader.readRemaining()
            self = .other(command, payload: frame.payload)
        case .bindOK, .dialOK, .accept, .recv, .closeOK, .error, .recvFrom, .infoOK, .handshakeOK,
            .resolveHostnameOK, .setHostnameOK, .setVisibilityOK, .deregisterOK, .setTagsOK, .setWebhookOK,
            .networkOK, .healthOK, .managedOK, .rotateKeyOK, .broadcastOK, .preferDirectOK, .submitBadgeOK,
            .enrollRecoveryOK, .signEnvelopeOK, .verifyEnvelopeOK, .unbindOK, .sendToConfirmOK:
            throw .unknownCommand(frame.command)
        }
        try reader.expectEnd("\(command.name) request")
    }

    /// The request as a frame; `init(decoding:)` reads it back equal. Data over what a frame can
    /// carry (`DriverFrame.maxPayloadSize` with the fields before it) is the caller's to split.
    public func frame() -> DriverFrame {
        var writer = ByteWriter(capacity: 16 + bulkCount)
        switch self {
        case .bind(let port), .unbind(let port):
            writer.writeUInt16(port)
        case .dial(let address, let port):
            address.encode(into: &writer)
            writer.writeUInt16(port)
        case .send(let connection, let data):
            writer.writeUInt32(connection)
            writer.writeBytes(data)
        case .close(let connection):
            writer.writeUInt32(connection)
        case .sendTo(let address, let port, let data, _):
            address.encode(into: &writer)
            writer.writeUInt16(port)
            writer.writeBytes(data)
        case .info, .health, .rotateKey, .deregister, .cancel:
            break
        case .handshake(let handshake):
            handshake.encode(into: &writer)
        case .resolveHostname(let text), .setHostname(let text), .setWebhook(let text):
            writer.writeBytes(text.utf8)
        case .setVisibility(let isPublic):
            writer.writeUInt8(isPublic ? 1 : 0)
        case .setTags(let tags):
            writer.writeBytes(JSON.array(tags.map { .string($0) }).encoded(escapeHTML: true))
        case .network(let request):
            request.encode(into: &writer)
        case .broadcast(let network, let port, let token, let data):
            writer.writeUInt16(network)
            writer.writeUInt16(port)
            writer.writeUInt16(UInt16(clamping: token.count))
            writer.writeBytes(token)
            writer.writeBytes(data)
        case .preferDirect(let node):
            writer.writeUInt32(node)
        case .other(_, let payload):
            writer.writeBytes(payload)
        }
        return DriverFrame(command, payload: writer.bytes)
    }

    /// The size of the data or payload a request carries, to size its frame at once.
    private var bulkCount: Int {
        switch self {
        case .send(_, let data), .sendTo(_, _, let data, _): data.count
        case .broadcast(_, _, let token, let data): token.count + data.count
        case .other(_, let payload): payload.count
        default: 0
        }
    }

    /// The tags of a `setTags` payload: a JSON array of strings, or `null` for none (as Go's
    /// decoder reads it into a slice).
    private static func tags(_ payload: ArraySlice<UInt8>) throws(WireError) -> [String] {
        let json = try JSON(parsing: payload)
        if json == .null { return [] }
        guard let elements = json.arrayValue else {
            throw .invalidValue(field: "tags", reason: "not a JSON array of strings")
        }
        let tags = elements.compactMap(\.stringValue)
        guard tags.count == elements.count else {
            throw .invalidValue(field: "tags", reason: "an element is not a string")
        }
        return tags
    }
}
