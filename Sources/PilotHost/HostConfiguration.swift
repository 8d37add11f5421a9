/// pilot-host's settings: defaults, then the config file, then command-line flags (each later
/// source wins). Every flag has a config-file key of the same name.
///
/// File format (`/etc/pilot-host/pilot-host.conf`): one `key = value` per line, `#` starts a
/// comment, blank lines ignored, values may be double-quoted. Unknown keys and bad values are
/// errors naming the file and line: a typo must not silently fall back to a default.
public struct HostConfiguration: Equatable, Sendable {
    public var stateDirectory = "/var/lib/pilot-host"
    public var runtimeDirectory = "/run/pilot-host"
    /// Registry address, `host:port`.
    public var registry = "127.0.0.1:9000"
    /// Beacon address, `host:port`.
    public var beacon = "127.0.0.1:9001"
    /// The shared tunnel UDP socket, `host:port`.
    public var listen = "0.0.0.0:37000"
    /// Members of this group may use the admin socket (besides root); none when empty.
    public var adminGroup = ""
    public var logLevel = "info"
    /// Seconds between polls of the registry for handshakes relayed to the identities.
    public var handshakePoll = 30
    /// Microseconds the tunnel loop keeps looking at its sockets after traffic before its thread
    /// sleeps (busy polling, `Fabric`'s `busyPoll`, which rests while looking finds nothing);
    /// 0: off. Read at start only.
    public var busyPoll = 50
    /// A file whose first line is the admin token: a `broadcast` must carry it, as 1.18's
    /// `-admin-token`. Empty: none (broadcasts are refused). Read at start only.
    public var adminTokenFile = ""
    /// A file whose first line is the registry's host credential (`pilot-rendezvous
    /// --print-host-credential`): presented in batched requests, it exempts this host's new
    /// identities from the registry's budget for new keys. Empty: none. Read at start only.
    public var registryCredentialFile = ""

    public init() {}

    /// The keys a file or flag may set.
    public static let keys = ["state-dir", "runtime-dir", "registry", "beacon", "listen", "admin-group", "log-level", "handshake-poll", "busy-poll", "admin-token-file", "registry-credential-file"]

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Sets `key` to `value`, checking it.
    public mutating func set(_ key: String, _ value: String) throws(ConfigurationError) {
        switch key {
        case "state-dir": stateDirectory = try Self.absolutePath(key, value)
        case "runtime-dir": runtimeDirectory = try Self.absolutePath(key, value)
        case "registry": registry = try Self.endpoint(key, value)
        case "beacon": beacon = try Self.endpoint(key, value)
        case "listen": listen = try Self.endpoint(key, value)
        case "admin-group":
            guard value.isEmpty || value.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw .invalidValue(key: key, value: value, reason: "not a group name")
            }
            adminGroup = value
        case "log-level":
            guard Self.logLevels.contains(value) else {
                throw .invalidValue(key: key, value: value, reason: "one of \(Self.logLevels.joined(separator: ", "))")
            }
            logLevel = value
        case "handshake-poll":
            guard let seconds = Int(value), (1...3600).contains(seconds) else {
                throw .invalidValue(key: key, value: value, reason: "seconds, 1 to 3600")
            }
            handshakePoll = seconds
        case "busy-poll":
            guard let microseconds = Int(value), (0...1000).contains(microseconds) else {
                throw .invalidValue(key: key, value: value, reason: "microseconds, 0 (off) to 1000")
            }
            busyPoll = microseconds
        case "admin-token-file": adminTokenFile = value.isEmpty ? "" : try Self.absolutePath(key, value)
        case "registry-credential-file": registryCredentialFile = value.isEmpty ? "" : try Self.absolutePath(key, value)
        default:
            throw .unknownKey(key)
        }
    }

    /// Applies the settings of a config file's text; `source` names it in errors. All or
    /// nothing: a file with one bad line changes nothing.
    public mutating func apply(file text: String, source: String) throws(ConfigurationError) {
        var result = self
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingWhitespace
            guard !trimmed.isEmpty else { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw .syntax(source: source, line: index + 1, text: String(trimmed)) }
            let key = parts[0].trimmingWhitespace
            var value = parts[1].trimmingWhitespace
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            do {
                try result.set(key, value)
            } catch {
                throw .inFile(source: source, line: index + 1, error)
            }
        }
        self = result
    }

    private static func absolutePath(_ key: String, _ value: String) throws(ConfigurationError) -> String {
        guard value.hasPrefix("/"), !value.contains("\0") else {
            throw .invalidValue(key: key, value: value, reason: "must be an absolute path")
        }
        return value
    }

    private static func endpoint(_ key: String, _ value: String) throws(ConfigurationError) -> String {
        guard let colon = value.lastIndex(of: ":"), !value[..<colon].isEmpty,
            let port = Int(value[value.index(after: colon)...]), (0...65535).contains(port)
        else { throw .invalidValue(key: key, value: value, reason: "must be host:port") }
        return value
    }
}

/// A configuration that cannot be used, said so that the operator can fix it.
public indirect enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case unknownKey(String)
    case invalidValue(key: String, value: String, reason: String)
    case syntax(source: String, line: Int, text: String)
    case inFile(source: String, line: Int, ConfigurationError)

    public var description: String {
        switch self {
        case .unknownKey(let key): "unknown setting \(key) (known: \(HostConfiguration.keys.joined(separator: ", ")))"
        case let .invalidValue(key, value, reason): "\(key) = \(value): \(reason)"
        case let .syntax(source, line, text): "\(source):\(line): expected key = value, got: \(text)"
        case let .inFile(source, line, error): "\(source):\(line): \(error)"
        }
    }
}

extension StringProtocol {
    fileprivate var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
