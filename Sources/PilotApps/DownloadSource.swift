/// Where a catalogue or a bundle comes from: `https://` (any host), `http://` only on loopback
/// (`127.x.y.z` written as four decimal numbers, `[::1]`, or `localhost`), or `file:///` (an
/// absolute local path). Anything else is refused before any I/O.
public struct DownloadSource: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        case file(path: String)
        case http(url: String, secure: Bool)
    }

    public let kind: Kind

    public var description: String {
        switch kind {
        case .file(let path): "file://" + path
        case .http(let url, _): url
        }
    }

    /// Reads `url`, refusing what the rule above does not allow.
    public init(parsing url: String) throws(DownloadError) {
        func refuse(_ reason: String) -> DownloadError { .refused(url: url, reason: reason) }
        guard !url.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
            throw refuse("spaces and control characters are not allowed")
        }
        if url.hasPrefix("file://") {
            var path = String(url.dropFirst("file://".count))
            if path.hasPrefix("localhost/") { path = String(path.dropFirst("localhost".count)) }
            guard path.hasPrefix("/") else { throw refuse("a file URL names an absolute path: file:///...") }
            guard let decoded = Self.percentDecoded(path), !decoded.contains("\0") else { throw refuse("bad percent-encoding") }
            kind = .file(path: decoded)
            return
        }
        let secure: Bool
        if url.lowercased().hasPrefix("https://") {
            secure = true
        } else if url.lowercased().hasPrefix("http://") {
            secure = false
        } else {
            throw refuse("only https://, http:// on loopback and file:/// are fetched")
        }
        let rest = url.drop { $0 != "/" }.dropFirst(2)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard !authority.isEmpty else { throw refuse("no host") }
        guard !authority.contains("@") else { throw refuse("user names and passwords in URLs are refused") }
        let host = Self.host(of: authority)
        guard !host.isEmpty else { throw refuse("no host") }
        if !secure, !Self.isLoopback(host) { throw refuse("http:// is fetched only from loopback (127.0.0.1, [::1], localhost): use https://") }
        kind = .http(url: url, secure: secure)
    }

    /// `reference` read against this source: an absolute URL as it is, else a path relative to
    /// this source's directory (a catalogue's bundle_url, its .sig).
    public func resolving(_ reference: String) throws(DownloadError) -> DownloadSource {
        if reference.contains("://") { return try DownloadSource(parsing: reference) }
        switch kind {
        case .file(let path):
            let base = reference.hasPrefix("/") ? "" : String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) + "/"
            return try DownloadSource(parsing: "file://" + base + reference)
        case .http(let url, _):
            let withoutQuery = String(url.prefix { $0 != "?" && $0 != "#" })
            // scheme "://" authority, then the path from the next "/".
            let scheme = withoutQuery.prefix { $0 != ":" }
            let afterScheme = withoutQuery.dropFirst(scheme.count + 3)
            let authority = afterScheme.prefix { $0 != "/" }
            let origin = scheme + "://" + authority
            if reference.hasPrefix("/") { return try DownloadSource(parsing: origin + reference) }
            let path = String(afterScheme.dropFirst(authority.count))
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            return try DownloadSource(parsing: origin + directory + "/" + reference)
        }
    }

    /// The host of an authority, without port or brackets, lowercased.
    static func host(of authority: Substring) -> String {
        if authority.hasPrefix("[") {
            return String(authority.dropFirst().prefix { $0 != "]" }).lowercased()
        }
        return String(authority.prefix { $0 != ":" }).lowercased()
    }

    /// Loopback, strictly: `localhost`, `::1`, or 127.x.y.z as four plain decimal numbers.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "127" else { return false }
        return parts.allSatisfy { part in
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(part), value <= 255 else { return false }
            return part == "0" || !part.hasPrefix("0")
        }
    }

    static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next(), let low = iterator.next(), let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                return nil
            }
            bytes.append(value)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// Why a download failed.
public enum DownloadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The URL (or a redirect's target) is not one the rule allows.
    case refused(url: String, reason: String)
    case httpStatus(code: Int, url: String)
    case tooLarge(url: String, limit: Int)
    case tooManyRedirects(url: String)
    case timedOut(url: String)
    case failed(url: String, reason: String)

    public var description: String {
        switch self {
        case let .refused(url, reason): "\(url): refused: \(reason)"
        case let .httpStatus(code, url): "\(url): HTTP \(code)"
        case let .tooLarge(url, limit): "\(url): larger than \(limit) bytes"
        case let .tooManyRedirects(url): "\(url): more than 5 redirects"
        case let .timedOut(url): "\(url): timed out"
        case let .failed(url, reason): "\(url): \(reason)"
        }
    }
}
