import Foundation

/// Where a PostgreSQL database is, from `pilot-rendezvous --database`:
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` over TCP, or
/// `postgres://USER@/DATABASE?host=/socket/dir` (libpq's form: a `host` that starts with `/` is
/// the directory of the server's socket, `.s.PGSQL.PORT`). `postgresql://` is taken too; user,
/// password and database are percent-decoded. `sslmode=verify-full` asks for TLS with the
/// server's certificate checked against the system's roots; without it (or `disable`) no TLS.
public struct PostgresLocation: Sendable, Hashable, CustomStringConvertible {
    public enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        /// The server's socket file itself (`DIR/.s.PGSQL.PORT`).
        case socket(path: String)
    }

    public var endpoint: Endpoint
    public var user: String
    public var password: String?
    public var database: String
    public var tls: Bool

    /// The user when the URL names none (libpq would take the login name; a service's is rarely
    /// a database role).
    public static let defaultUser = "postgres"

    public init(endpoint: Endpoint, user: String, password: String? = nil, database: String, tls: Bool = false) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses `text`; the error says what is wrong with it.
    public init(parsing text: String) throws(PostgresLocationError) {
        guard let url = URLComponents(string: text) else { throw PostgresLocationError(text, "not a URL") }
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
        let portText = query["port"] ?? url.port.map(String.init) ?? "5432"
        guard let port = Int(portText), (1...65535).contains(port) else { throw PostgresLocationError(text, "port \(portText) is not 1 to 65535") }
        let host = query["host"] ?? url.percentEncodedHost.flatMap { $0.removingPercentEncoding } ?? ""
        if host.hasPrefix("/") {
            endpoint = .socket(path: (host as NSString).appendingPathComponent(".s.PGSQL.\(port)"))
        } else if host.isEmpty {
            throw PostgresLocationError(text, "no host: give HOST[:PORT] or ?host=/socket/dir")
        } else {
            // [::1] comes bracketed.
            endpoint = .tcp(host: host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host, port: port)
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

    /// The URL without its password, for logs and errors.
    public var description: String {
        let tlsText = tls ? "?sslmode=verify-full" : ""
        switch endpoint {
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return "postgres://\(user)@\(shown):\(port)/\(database)\(tlsText)"
        case .socket(let path):
            return "postgres://\(user)@/\(database)?host=\((path as NSString).deletingLastPathComponent)"
        }
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
