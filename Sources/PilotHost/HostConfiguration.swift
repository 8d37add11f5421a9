public import PilotControl
public import PilotAppStore
public import PilotMetrics
import PilotWire

/// pilot-host's settings: defaults, then the config file, then command-line flags (each later
/// source wins). Every flag has a config-file key of the same name.
///
/// File format (`/etc/pilot-host/pilot-host.conf`): one `key = value` per line, `#` starts a
/// comment, blank lines ignored, values may be double-quoted. Unknown keys and bad values are
/// errors naming the file and line: a typo must not silently fall back to a default.
public struct HostConfiguration: Equatable, Sendable {
    public var stateDirectory = "/var/lib/pilot-host"
    public var runtimeDirectory = "/run/pilot-host"
    /// Registry address, `host:port`; or several, comma-separated: instances of one overlay
    /// (pilot-rendezvous on one database), tried in turn (`registries`).
    public var registry = "127.0.0.1:9000"
    /// Beacon address, `host:port`; or several, tried in turn (`beacons`).
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
    /// Control connections one local user may hold open across every socket of the host.
    public var controlConnectionsPerUser = ConnectionLimits().perUser
    /// A file whose first line is the registry's host credential (`pilot-rendezvous
    /// --print-host-credential`): presented in batched requests, it exempts this host's new
    /// identities from the registry's budget for new keys. Empty: none. Read at start only.
    public var registryCredentialFile = ""
    /// Whether the registry connection is TLS. Read at start only.
    public var registryTLS = false
    /// The registry certificate's SHA-256 (hex, of its DER), pinned; empty: the system's trust
    /// roots and the registry's host name. Needs `registry-tls`. Read at start only.
    public var registryFingerprint = ""
    /// Where each identity's inbox is copied in the official daemon's file format, for the
    /// official pilotctl (`InboxSpool`); empty: no copy. Read at start only.
    public var spoolDirectory = ""
    /// Threads of the event loops (tunnels, control sockets, registry); 0: one per core. Each
    /// costs a stack and a few hundred KiB of memory; a host of a few identities needs one or
    /// two. Read at start only.
    public var eventLoopThreads = 0
    /// Whether the process's code (its own and its libraries') stays mapped a page at a time as
    /// it is used, without the kernel's fault-around (Linux 6.7 or later; `CCodePages`, done as
    /// the process loads; no undoes it once the settings are read). About 11 MB less resident
    /// for an idle host. Read at start only.
    public var mapCodeOnDemand = true
    /// The app service's socket (pilot-host-apps); empty: `runtime-dir`/apps.sock.
    public var appsSocketPath = ""
    /// Where the app catalogue is (https://, http:// on loopback, file://), first first.
    public var appCatalogues: [String] = []
    /// The Ed25519 keys (base64) one of which must sign the catalogue.
    public var appCatalogueKeys: [String] = []
    /// Whether owners may install apps from local directories (unsigned, under the sideload
    /// policy).
    public var appSideload = false
    /// Where the Prometheus metrics endpoint listens (`GET /metrics`), `host:port` with an IP
    /// address; empty: no endpoint (the default). Read at start only.
    public var metricsListen = ""
    /// Whether `metrics-listen` may be an address other than loopback: the endpoint shows every
    /// identity's traffic to whoever reaches it. Read at start only.
    public var metricsAllowRemote = false
    /// Identities given series of their own (`pilot_host_identity_*{identity}`): those whose
    /// tunnels carried the most bytes, at most this many (up to 1000); 0: none. Read at start only.
    public var metricsPerIdentity = 0

    /// The app service's socket.
    public var appsSocket: String { appsSocketPath.isEmpty ? runtimeDirectory + "/apps.sock" : appsSocketPath }

    /// The catalogue settings the app service is sent.
    public var catalogueSource: AppServiceControl.CatalogueSource {
        AppServiceControl.CatalogueSource(urls: appCatalogues, keys: appCatalogueKeys)
    }

    public init() {}

    /// The control sockets' limits these settings give.
    public var connectionLimits: ConnectionLimits {
        var limits = ConnectionLimits()
        limits.perUser = controlConnectionsPerUser
        return limits
    }

    /// The keys a file or flag may set.
    public static let keys = [
        "state-dir", "runtime-dir", "registry", "beacon", "listen", "admin-group", "log-level", "handshake-poll", "busy-poll",
        "admin-token-file", "control-connections-per-user", "registry-credential-file", "registry-tls", "registry-fingerprint",
        "spool-dir", "event-loop-threads", "map-code-on-demand", "apps-socket", "app-catalogue", "app-catalogue-keys", "app-sideload",
        "metrics-listen", "metrics-allow-remote", "metrics-per-identity",
    ]

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Sets `key` to `value`, checking it.
    public mutating func set(_ key: String, _ value: String) throws(ConfigurationError) {
        switch key {
        case "state-dir": stateDirectory = try Self.absolutePath(key, value)
        case "runtime-dir": runtimeDirectory = try Self.absolutePath(key, value)
        case "spool-dir": spoolDirectory = value.isEmpty ? "" : try Self.absolutePath(key, value)
        case "registry": registry = try Self.endpoints(key, value)
        case "beacon": beacon = try Self.endpoints(key, value)
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
        case "event-loop-threads":
            guard let threads = Int(value), (0...256).contains(threads) else {
                throw .invalidValue(key: key, value: value, reason: "threads, 1 to 256 (0: one per core)")
            }
            eventLoopThreads = threads
        case "map-code-on-demand": mapCodeOnDemand = try Self.yesOrNo(key, value)
        case "busy-poll":
            guard let microseconds = Int(value), (0...1000).contains(microseconds) else {
                throw .invalidValue(key: key, value: value, reason: "microseconds, 0 (off) to 1000")
            }
            busyPoll = microseconds
        case "admin-token-file": adminTokenFile = value.isEmpty ? "" : try Self.absolutePath(key, value)
        case "control-connections-per-user":
            guard let count = Int(value), (1...100_000).contains(count) else {
                throw .invalidValue(key: key, value: value, reason: "connections, 1 to 100000")
            }
            controlConnectionsPerUser = count
        case "registry-credential-file": registryCredentialFile = value.isEmpty ? "" : try Self.absolutePath(key, value)
        case "registry-tls":
            switch value {
            case "yes", "true", "1": registryTLS = true
            case "no", "false", "0": registryTLS = false
            default: throw .invalidValue(key: key, value: value, reason: "yes or no")
            }
        case "registry-fingerprint":
            let hex = value.lowercased().filter { $0 != ":" }
            guard hex.isEmpty || (hex.count == 64 && hex.allSatisfy(\.isHexDigit)) else {
                throw .invalidValue(key: key, value: value, reason: "the SHA-256 of the certificate's DER, 64 hex digits")
            }
            registryFingerprint = hex
        case "app-sideload": appSideload = try Self.yesOrNo(key, value)
        case "metrics-listen":
            if !value.isEmpty { _ = try Self.endpoint(key, value) }
            metricsListen = value
        case "metrics-allow-remote": metricsAllowRemote = try Self.yesOrNo(key, value)
        case "metrics-per-identity":
            guard let count = Int(value), (0...1000).contains(count) else {
                throw .invalidValue(key: key, value: value, reason: "identities, 0 (none) to 1000")
            }
            metricsPerIdentity = count
        case "apps-socket": appsSocketPath = value.isEmpty ? "" : try Self.absolutePath(key, value)
        case "app-catalogue":
            let urls = Self.list(value)
            for url in urls where !(url.hasPrefix("https://") || url.hasPrefix("http://") || url.hasPrefix("file:///")) {
                throw .invalidValue(key: key, value: url, reason: "must be an https://, http:// (loopback only) or file:/// URL")
            }
            appCatalogues = urls
        case "app-catalogue-keys":
            let keys = Self.list(value)
            for key64 in keys where (try? Base64.decode(key64))?.count != 32 {
                throw .invalidValue(key: key, value: key64, reason: "must be a base64 Ed25519 public key (32 bytes)")
            }
            appCatalogueKeys = keys
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

    /// How the registry connection is secured, or nil for plain TCP; a fingerprint without TLS
    /// is a mistake worth stopping for.
    public func registryTLSSettings() throws(ConfigurationError) -> RegistryClient.TLS? {
        guard registryTLS else {
            guard registryFingerprint.isEmpty else {
                throw .invalidValue(key: "registry-fingerprint", value: registryFingerprint, reason: "needs registry-tls = yes")
            }
            return nil
        }
        guard !registryFingerprint.isEmpty else { return RegistryClient.TLS() }
        var bytes: [UInt8] = []
        var index = registryFingerprint.startIndex
        while index < registryFingerprint.endIndex {
            let next = registryFingerprint.index(index, offsetBy: 2)
            guard let byte = UInt8(registryFingerprint[index..<next], radix: 16) else {
                throw .invalidValue(key: "registry-fingerprint", value: registryFingerprint, reason: "not hex")
            }
            bytes.append(byte)
            index = next
        }
        return RegistryClient.TLS(fingerprint: bytes)
    }

    /// Where the metrics endpoint listens, or nil for none; a non-loopback address without
    /// `metrics-allow-remote` is refused here, before anything is bound.
    public func metricsListener() throws(ConfigurationError) -> MetricsListener? {
        guard !metricsListen.isEmpty else { return nil }
        do { return try MetricsListener(parsing: metricsListen, allowRemote: metricsAllowRemote) } catch {
            throw .invalidValue(key: "metrics-listen", value: metricsListen, reason: "\(error)")
        }
    }

    private static func yesOrNo(_ key: String, _ value: String) throws(ConfigurationError) -> Bool {
        switch value.lowercased() {
        case "yes", "true", "1": true
        case "no", "false", "0", "": false
        default: throw .invalidValue(key: key, value: value, reason: "yes or no")
        }
    }

    /// A list of words separated by commas or spaces.
    private static func list(_ value: String) -> [String] {
        value.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
    }

    private static func absolutePath(_ key: String, _ value: String) throws(ConfigurationError) -> String {
        guard value.hasPrefix("/"), !value.contains("\0") else {
            throw .invalidValue(key: key, value: value, reason: "must be an absolute path")
        }
        return value
    }

    /// The registries of `registry`, in the order they are tried.
    public var registries: [String] { Self.list(registry) }

    /// The beacons of `beacon`, in the order they are tried.
    public var beacons: [String] { Self.list(beacon) }

    /// A list (`list`) of at least one `host:port`, each checked.
    private static func endpoints(_ key: String, _ value: String) throws(ConfigurationError) -> String {
        let items = list(value)
        guard !items.isEmpty else { throw .invalidValue(key: key, value: value, reason: "no address") }
        for item in items { _ = try endpoint(key, item) }
        return items.joined(separator: ", ")
    }

    private static func endpoint(_ key: String, _ value: String) throws(ConfigurationError) -> String {
        do { _ = try Endpoint(parsing: value) } catch { throw .invalidValue(key: key, value: value, reason: "\(error)") }
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
