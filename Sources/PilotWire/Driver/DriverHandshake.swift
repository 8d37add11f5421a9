/// The payload of a `handshake` (0x0F) request: a sub-command byte and its arguments
/// (`docs/PROTOCOL.md §12.3`). Node ids are u32 big-endian; text runs to the end of the payload.
public enum DriverHandshake: Sendable, Equatable {
    /// 0x01 `[node][justification]`: ask `node` for trust.
    case send(node: UInt32, justification: String)
    /// 0x02 `[node]`: approve `node`'s pending request.
    case approve(node: UInt32)
    /// 0x03 `[node][reason]`: reject `node`'s pending request.
    case reject(node: UInt32, reason: String)
    /// 0x04: the requests waiting for an answer.
    case pending
    /// 0x05: the trusted peers.
    case trusted
    /// 0x06 `[node]`: stop trusting `node`.
    case revoke(node: UInt32)
    /// 0x07 `[node][timeout ms u32]`: wait until `node` is trusted or the time is up.
    case wait(node: UInt32, timeoutMilliseconds: UInt32)

    /// The longest `wait` the 1.18 daemon honours; it shortens longer ones to this.
    public static let maxWaitMilliseconds: UInt32 = 30_000

    /// The sub-command byte of each case.
    private enum Kind: UInt8 {
        case send = 0x01, approve, reject, pending, trusted, revoke, wait
    }

    /// Reads the sub-command and its arguments; text fields take the rest of the payload, and the
    /// caller checks that nothing is left after the others.
    public init(decoding reader: inout ByteReader) throws(WireError) {
        let kind: Kind = try reader.readKind("handshake sub-command")
        switch kind {
        case .send:
            let node = try reader.readUInt32("handshake send node")
            self = .send(node: node, justification: try reader.readText("handshake justification"))
        case .approve:
            self = .approve(node: try reader.readUInt32("handshake approve node"))
        case .reject:
            let node = try reader.readUInt32("handshake reject node")
            self = .reject(node: node, reason: try reader.readText("handshake reject reason"))
        case .pending:
            self = .pending
        case .trusted:
            self = .trusted
        case .revoke:
            self = .revoke(node: try reader.readUInt32("handshake revoke node"))
        case .wait:
            let node = try reader.readUInt32("handshake wait node")
            self = .wait(node: node, timeoutMilliseconds: try reader.readUInt32("handshake wait timeout"))
        }
    }

    /// Appends the sub-command and its arguments.
    public func encode(into writer: inout ByteWriter) {
        writer.writeUInt8(kind.rawValue)
        switch self {
        case .send(let node, let text), .reject(let node, let text):
            writer.writeUInt32(node)
            writer.writeBytes(text.utf8)
        case .approve(let node), .revoke(let node):
            writer.writeUInt32(node)
        case .pending, .trusted:
            break
        case .wait(let node, let timeout):
            writer.writeUInt32(node)
            writer.writeUInt32(timeout)
        }
    }

    /// The sub-command of this request.
    private var kind: Kind {
        switch self {
        case .send: .send
        case .approve: .approve
        case .reject: .reject
        case .pending: .pending
        case .trusted: .trusted
        case .revoke: .revoke
        case .wait: .wait
        }
    }
}
