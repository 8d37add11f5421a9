/// pilot-host's control-socket protocol (admin socket and per-identity sockets): length-prefixed
/// JSON frames (`LengthPrefixedFrames`), one request, one reply.
///
/// Request: `{"command":"identity.create","args":{...}}`.
/// Reply: the reference pilotctl's envelope, so `pilotctl --json` prints it as it is:
/// `{"status":"ok","data":...}` or `{"status":"error","code":"not_found","message":"..."}`.
public enum ControlFrame {
    public static let maxSize = 1 << 20
}

public struct ControlRequest: Hashable, Sendable {
    public var command: String
    public var arguments: [String: JSON]

    public init(_ command: String, _ arguments: [String: JSON] = [:]) {
        self.command = command
        self.arguments = arguments
    }

    public init(decoding body: some Collection<UInt8>) throws(WireError) {
        let json = try JSON(parsing: body)
        guard let command = json["command"]?.stringValue, !command.isEmpty else {
            throw .invalidValue(field: "control request", reason: "needs a string \"command\"")
        }
        guard let arguments = json["args"].map({ $0.objectValue }) ?? [:] else {
            throw .invalidValue(field: "control request args", reason: "must be an object")
        }
        self.command = command
        self.arguments = arguments
    }

    public func encoded() throws(WireError) -> [UInt8] {
        try LengthPrefixedFrames.frame(
            JSON.object(["command": .string(command), "args": .object(arguments)]).encoded(),
            maxSize: ControlFrame.maxSize, field: "control request")
    }

    /// The arguments, read with errors that name this command and the field.
    public var fields: ControlFields { ControlFields(arguments, context: command) }
}

/// The error codes of the reference pilotctl's JSON envelope.
public enum ControlErrorCode: String, Sendable, CaseIterable {
    case invalidArgument = "invalid_argument"
    case notFound = "not_found"
    case alreadyExists = "already_exists"
    case notRunning = "not_running"
    case connectionFailed = "connection_failed"
    case timeout
    case permissionDenied = "permission_denied"
    case unavailable
    /// 1.18's: an operation that needs the admin token was asked for without one.
    case authRequired = "auth_required"
    /// 1.18's: a broadcast the host refused (its message says why).
    case broadcastFailed = "broadcast_failed"
    case internalError = "internal"
}

/// A refused or failed command, as the client will be told.
public struct ControlFailure: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ControlErrorCode
    public var message: String

    public init(_ code: ControlErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// A reply in the envelope of the reference pilotctl.
public enum ControlReply: Hashable, Sendable {
    case ok(JSON)
    case error(ControlFailure)

    public var json: JSON {
        switch self {
        case .ok(let data): ["status": "ok", "data": data]
        case .error(let failure):
            ["status": "error", "code": .string(failure.code.rawValue), "message": .string(failure.message)]
        }
    }

    public init(decoding body: some Collection<UInt8>) throws(WireError) {
        let json = try JSON(parsing: body)
        switch json["status"]?.stringValue {
        case "ok": self = .ok(json["data"] ?? .null)
        case "error":
            let code = json["code"]?.stringValue.flatMap(ControlErrorCode.init(rawValue:)) ?? .internalError
            self = .error(ControlFailure(code, json["message"]?.stringValue ?? "unknown error"))
        default: throw .invalidValue(field: "control reply", reason: "status must be ok or error")
        }
    }

    public func encoded() throws(WireError) -> [UInt8] {
        try LengthPrefixedFrames.frame(json.encoded(), maxSize: ControlFrame.maxSize, field: "control reply")
    }
}
