/// A trust handshake message, sent alone on a stream to port 444 (`docs/PROTOCOL.md §10.1`): all seven
/// keys always present; the signature is Ed25519 over `handshake:<sender>:<receiver>`.
public struct HandshakeMessage: Hashable, Sendable {
    /// The message's `type`.
    public enum Kind: String, Sendable, CaseIterable {
        /// Asks the receiver to trust the sender.
        case request = "handshake_request"
        /// Accepts a request.
        case accept = "handshake_accept"
        /// Refuses a request.
        case reject = "handshake_reject"
        /// Ends a trust the sender gave.
        case revoke = "handshake_revoke"
    }

    /// The handshake port.
    public static let port = Port.handshake
    /// The most a receiver reads as one message.
    public static let maxSize = 4096

    /// Which of the four messages this is.
    public var kind: Kind
    /// The sender's node id.
    public var node: UInt32
    /// The sender's Ed25519 key, base64 (may be empty).
    public var publicKey: String
    /// The sender's words with a request, shown to the receiver.
    public var justification: String
    /// Base64 Ed25519 signature over `signedText(receiver:)`.
    public var signature: String
    /// Why, with a reject or revoke.
    public var reason: String
    /// Unix seconds.
    public var timestamp: Int64

    /// A message from its fields; `signature` is added after signing `signedText(receiver:)`.
    public init(
        kind: Kind, node: UInt32, publicKey: String, justification: String = "", signature: String = "", reason: String = "",
        timestamp: Int64
    ) {
        self.kind = kind
        self.node = node
        self.publicKey = publicKey
        self.justification = justification
        self.signature = signature
        self.reason = reason
        self.timestamp = timestamp
    }

    /// What the sender signs for `receiver`.
    public func signedText(receiver: UInt32) -> String { "handshake:\(node):\(receiver)" }

    /// Parses a message of at most `maxSize` bytes; throws without a known type, a node id and a
    /// timestamp. Text fields left out or null read as empty; of another type, they throw.
    public init(decoding bytes: some Collection<UInt8>) throws(WireError) {
        guard bytes.count <= Self.maxSize else { throw .oversized(field: "handshake message", limit: Self.maxSize, actual: bytes.count) }
        let json = try JSON(parsing: bytes)
        guard let raw = json["type"]?.stringValue, let kind = Kind(rawValue: raw) else {
            throw .invalidValue(field: "handshake type", reason: "must be one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let node = json["node_id"]?.integerValue, let id = UInt32(exactly: node) else {
            throw .invalidValue(field: "handshake node_id", reason: "must be a node id (0...4294967295)")
        }
        guard let timestamp = json["timestamp"]?.integerValue else {
            throw .invalidValue(field: "handshake timestamp", reason: "must be unix seconds")
        }
        func text(_ key: String) throws(WireError) -> String {
            guard let value = json[key], value != .null else { return "" }
            guard let text = value.stringValue else { throw .invalidValue(field: "handshake \(key)", reason: "must be a string") }
            return text
        }
        self.init(
            kind: kind, node: id, publicKey: try text("public_key"), justification: try text("justification"),
            signature: try text("signature"), reason: try text("reason"), timestamp: timestamp)
    }

    /// The JSON body, every key present.
    public func encoded() -> [UInt8] {
        JSON.object([
            "type": .string(kind.rawValue), "node_id": .integer(Int64(node)), "public_key": .string(publicKey),
            "justification": .string(justification), "signature": .string(signature), "reason": .string(reason),
            "timestamp": .integer(timestamp),
        ]).encoded()
    }
}
