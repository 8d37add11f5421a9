import Foundation

/// Where a PostgreSQL database is, from `pilot-rendezvous --database`:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` over TCP, or
/// `postgres://USER@/DATABASE?host=/socket/dir` (libpq's form: a `host` that starts with `/` is
/// the directory of the server's socket, `.s.PGSQL.PORT`). `postgresql://` is taken too; user,
/// password and database are percent-decoded. `sslmode=verify-full` asks for TLS with the
/// server's certificate checked against the system's roots; without it (or `disable`) no TLS.
///
/// Several servers, as libpq writes them (`postgres://u@h1:5432,h2:5432/db`, or
/// `?host=h1,h2&port=5432,5433`): a primary and its standbys. The registry connects to the first
/// in order that takes writes (a standby is passed over), and after losing a connection looks
/// through the list again, so it follows a failover that promotes a standby.
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        /// The server's socket file itself (`DIR/.s.PGSQL.PORT`).
        case socket(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): "\(host.contains(":") ? "[\(host)]" : host):\(port)"
            case .socket(let path): (path as NSString).deletingLastPathComponent
            }
        }
    }

    /// The servers, tried in this order; never empty.
    public var endpoints: [Endpoint]
    public var user: String
    public var password: String?
    public var database: String
    public var tls: Bool

    /// The first server.
    public var endpoint: Endpoint { endpoints[0] }

    /// The user when the URL names none (libpq would take the login name; a service's is rarely
    /// a database role).
    public static let defaultUser = "postgres"

    public init(endpoint: Endpoint, user: String, password: String? = nil, database: String, tls: Bool = false) {
        self.init(endpoints: [endpoint], user: user, password: password, database: database, tls: tls)
    }

    public init(endpoints: [Endpoint], user: String, password: String? = nil, database: String, tls: Bool = false) {
        precondition(!endpoints.isEmpty, "a database is on at least one server")
        self.endpoints = endpoints
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses `text`; the error says what is wrong with it.
    public init(parsing text: String) throws(PostgresLocationError) {
        // URLComponents takes one host: a list in the authority is read here and left out.
        var parsed = text
        var listed: [String]?
        if let scheme = text.range(of: "://") {
            let rest = text[scheme.upperBound...]
            let authority = rest.prefix { $0 != "/" && $0 != "?" }
            let hosts = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
            if hosts.contains(",") {
                listed = hosts.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                parsed = String(text[..<hosts.startIndex]) + "listed-hosts" + String(text[hosts.endIndex...])
            }
        }
        guard let url = URLComponents(string: parsed) else { throw PostgresLocationError(text, "not a URL") }
        guard url.scheme == "postgres" || url.scheme == "postgresql" else {
            throw PostgresLocationError(text, "the scheme must be postgres:// or postgresql://")
        }
        var query: [String: String] = [:]
        for item in url.queryItems ?? [] {
            guard ["host", "port", "user", "password", "sslmode"].contains(item.name) else {
                throw PostgresLocationError(text, "unknown parameter \(item.name) (host, port, user, password and sslmode are understood)")
            }
            query[item.name] = item.value ?? ""
        }
        // Each server as HOST and PORT text: from ?host= and ?port= (lists, one port for all or
        // one each), else from the authority.
        var servers: [(host: String, port: String?)]
        let ports = query["port"].map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        if let hostList = query["host"] {
            servers = hostList.split(separator: ",", omittingEmptySubsequences: false).map { (String($0), nil) }
        } else if let listed {
            servers = try listed.map { item throws(PostgresLocationError) in try Self.split(item, in: text) }
        } else {
            servers = [(url.percentEncodedHost.flatMap { $0.removingPercentEncoding } ?? "", url.port.map(String.init))]
        }
        if let ports {
            guard ports.count == 1 || ports.count == servers.count else {
                throw PostgresLocationError(text, "\(ports.count) ports for \(servers.count) hosts: give one port, or one for each")
            }
            for index in servers.indices where servers[index].port == nil { servers[index].port = ports.count == 1 ? ports[0] : ports[index] }
        }
        endpoints = try servers.map { server throws(PostgresLocationError) in
            let portText = server.port ?? "5432"
            guard let port = Int(portText), (1...65535).contains(port) else { throw PostgresLocationError(text, "port \(portText) is not 1 to 65535") }
            let host = server.host
            if host.hasPrefix("/") { return .socket(path: (host as NSString).appendingPathComponent(".s.PGSQL.\(port)")) }
            guard !host.isEmpty else { throw PostgresLocationError(text, "no host: give HOST[:PORT] or ?host=/socket/dir") }
            // [::1] comes bracketed.
            return .tcp(host: host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host, port: port)
        }
        user = query["user"] ?? url.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? Self.defaultUser
        password = query["password"] ?? url.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let path = url.percentEncodedPath.removingPercentEncoding ?? ""
        database = path.hasPrefix("/") ? String(path.dropFirst()) : path
        guard !database.isEmpty, !database.contains("/") else { throw PostgresLocationError(text, "no database: end it with /DATABASE") }
        switch query["sslmode"] ?? "disable" {
        case "disable": tls = false
        case "verify-full": tls = true
        case let mode: throw PostgresLocationError(text, "sslmode \(mode) is not served: disable or verify-full")
        }
    }

    /// `HOST[:PORT]` of a listed server (`[v6]:PORT` for IPv6).
    private static func split(_ item: String, in text: String) throws(PostgresLocationError) -> (host: String, port: String?) {
        let decoded = item.removingPercentEncoding ?? item
        if decoded.hasPrefix("[") {
            guard let close = decoded.firstIndex(of: "]") else { throw PostgresLocationError(text, "\(decoded): an IPv6 address needs its ]") }
            let rest = decoded[decoded.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { throw PostgresLocationError(text, "\(decoded): not HOST[:PORT]") }
            return (String(decoded[...close]), rest.isEmpty ? nil : String(rest.dropFirst()))
        }
        let parts = decoded.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        return (String(parts[0]), parts.count == 2 ? String(parts[1]) : nil)
    }

    /// The URL without its password, for logs and errors.
    public var description: String {
        let tlsText = tls ? "?sslmode=verify-full" : ""
        if case .socket = endpoints[0], endpoints.count == 1 {
            return "postgres://\(user)@/\(database)?host=\(endpoints[0])"
        }
        return "postgres://\(user)@\(endpoints.map(\.description).joined(separator: ","))/\(database)\(tlsText)"
    }
}

/// A `--database` URL that cannot be used, and why.
public struct PostgresLocationError: Error, CustomStringConvertible {
    public let description: String

    init(_ text: String, _ problem: String) {
        description = "\(Self.masked(text)): \(problem)"
    }

    /// `text` with any password masked.
    private static func masked(_ text: String) -> String {
        guard var url = URLComponents(string: text) else { return "the database URL" }
        if url.password != nil { url.password = "***" }
        return url.string ?? "the database URL"
    }
}
