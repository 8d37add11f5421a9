public import PilotWire

/// One message of the app IPC protocol, the official store's envelope: a request from the host
/// (or another app, bridged by the host) and the app's reply or error. On the app's Unix socket
/// each travels as one frame: a 4-byte big-endian length, then the envelope's JSON; frames are
/// 1 to 1 MiB.
public struct AppEnvelope: Hashable, Sendable {
    /// The largest frame body either side accepts.
    public static let maxFrameSize = 1 << 20

    public enum Kind: String, Sendable {
        case request = "req"
        case reply
        case error = "err"
    }

    public var kind: Kind
    /// 16 lowercase hex digits; a reply carries its request's.
    public var requestID: String
    public var method: String
    /// Set when the host bridges an app → app call: the calling app.
    public var appID: String
    public var manifestVersion: Int
    /// The raw JSON payload, or nil.
    public var payload: JSON?
    public var error: String

    public init(
        kind: Kind, requestID: String, method: String = "", appID: String = "", manifestVersion: Int = 0, payload: JSON? = nil,
        error: String = ""
    ) {
        self.kind = kind
        self.requestID = requestID
        self.method = method
        self.appID = appID
        self.manifestVersion = manifestVersion
        self.payload = payload
        self.error = error
    }

    /// A request with a fresh random id.
    public static func request(method: String, payload: JSON, appID: String = "", manifestVersion: Int = 0) -> AppEnvelope {
        let id = Hex.lowercase((0..<8).map { _ in UInt8.random(in: 0...255) })
        return AppEnvelope(kind: .request, requestID: id, method: method, appID: appID, manifestVersion: manifestVersion, payload: payload)
    }

    /// Decodes a frame's body.
    public init(decoding body: some Collection<UInt8>) throws(AppStoreError) {
        let json: JSON
        do { json = try JSON(parsing: body) } catch { throw .badFrame(reason: "not JSON: \(error)") }
        guard case .object = json else { throw .badFrame(reason: "the envelope is not a JSON object") }
        let fields = try JSONFields(json, document: "envelope")
        let type = try fields.string("type")
        guard let kind = Kind(rawValue: type) else { throw .badFrame(reason: "unknown envelope type \"\(type)\"") }
        self.kind = kind
        requestID = try fields.string("req_id")
        method = try fields.string("method")
        appID = try fields.string("app_id")
        manifestVersion = try fields.integer("manifest_version")
        payload = fields.has("payload") ? fields.members["payload"] : nil
        error = try fields.string("error")
    }

    /// The envelope's JSON (members the official encoder omits when empty are omitted).
    public func encoded() -> [UInt8] {
        var members: [String: JSON] = ["type": .string(kind.rawValue), "req_id": .string(requestID)]
        if !method.isEmpty { members["method"] = .string(method) }
        if !appID.isEmpty { members["app_id"] = .string(appID) }
        if manifestVersion != 0 { members["manifest_version"] = .integer(Int64(manifestVersion)) }
        if let payload { members["payload"] = payload }
        if !error.isEmpty { members["error"] = .string(error) }
        return JSON.object(members).encoded()
    }

    /// The frame: length prefix and body. Fails when the body is over `maxFrameSize`.
    public func frame() throws(AppStoreError) -> [UInt8] {
        let body = encoded()
        guard body.count <= Self.maxFrameSize else {
            throw .badFrame(reason: "\(body.count) bytes is over the \(Self.maxFrameSize)-byte limit")
        }
        let length = UInt32(body.count)
        return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + body
    }

    /// A frame's declared body length from its 4-byte prefix, checked against the limits.
    public static func bodyLength(prefix: some Collection<UInt8>) throws(AppStoreError) -> Int {
        guard prefix.count == 4 else { throw .badFrame(reason: "a frame needs a 4-byte length") }
        let length = prefix.reduce(0) { $0 << 8 | Int($1) }
        guard length > 0 else { throw .badFrame(reason: "zero-length frame") }
        guard length <= maxFrameSize else { throw .badFrame(reason: "\(length) bytes is over the \(maxFrameSize)-byte limit") }
        return length
    }
}
