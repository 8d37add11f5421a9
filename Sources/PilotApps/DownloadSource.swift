/// Where a catalogue or a bundle comes from: `https://` (any host), `http://` only on loopback
/// (`127.x.y.z` written as four decimal numbers, `[::1]`, or `localhost`), or `file:///` (an
/// absolute local path). Anything else is refused before any I/O.
public struct DownloadSource: Hashable, Sendable, CustomStringConvertible {
    /// What is fetched, and how.
    public enum Kind: Hashable, Sendable {
        /// A local file, by its absolute path (percent-decoded).
        case file(path: String)
        /// An http(s) URL as given; `secure` for https://.
        case http(url: String, secure: Bool)
    }

    /// What this source is.
    public let kind: Kind

    /// The URL, as a user would write it again.
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
        guard let host = Self.host(of: authority) else { throw refuse("a host, then at most :port, is expected before the path") }
        guard !host.isEmpty else { throw refuse("no host") }
        if !secure, !Self.isLoopback(host) { throw refuse("http:// is fetched only from loopback (127.0.0.1, [::1], localhost): use https://") }
        kind = .http(url: url, secure: secure)
    }

    /// `reference` read against this source: an absolute URL (one that starts with a scheme) as
    /// it is, `//host/...` with this source's scheme, else a path relative to this source's
    /// directory, or to its root when it starts with `/` (a catalogue's bundle_url, its .sig).
    /// The result is held to the same rule as any URL. A catalogue may name a bundle under any
    /// scheme the rule allows: it is signed, and each bundle is checked against its hash.
    public func resolving(_ reference: String) throws(DownloadError) -> DownloadSource {
        if Self.hasScheme(reference) { return try DownloadSource(parsing: reference) }
        switch kind {
        case .file(let path):
            let base = reference.hasPrefix("/") ? "" : String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) + "/"
            return try DownloadSource(parsing: "file://" + base + reference)
        case .http(let url, _):
            let withoutQuery = String(url.prefix { $0 != "?" && $0 != "#" })
            // scheme "://" authority, then the path from the next "/".
            let scheme = withoutQuery.prefix { $0 != ":" }
            if reference.hasPrefix("//") { return try DownloadSource(parsing: scheme + ":" + reference) }
            let afterScheme = withoutQuery.dropFirst(scheme.count + 3)
            let authority = afterScheme.prefix { $0 != "/" }
            let origin = scheme + "://" + authority
            if reference.hasPrefix("/") { return try DownloadSource(parsing: origin + reference) }
            let path = String(afterScheme.dropFirst(authority.count))
            let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            return try DownloadSource(parsing: origin + directory + "/" + reference)
        }
    }

    /// Where a redirect from this source to `location` leads, if it may: resolved as
    /// `resolving(_:)` does, held to the rule, and never a step down: https:// leads only to
    /// https://, loopback http:// to https:// or loopback http://, and no redirect to a file.
    public func redirected(to location: String) throws(DownloadError) -> DownloadSource {
        let next: DownloadSource
        do throws(DownloadError) {
            next = try resolving(location)
        } catch {
            guard case .refused(let url, let reason) = error else { throw error }
            throw .refused(url: url, reason: "redirected from \(description): \(reason)")
        }
        switch (kind, next.kind) {
        case (.http, .file):
            throw .refused(url: next.description, reason: "redirected from \(description): a redirect may not lead to a local file")
        case (.http(_, secure: true), .http(_, secure: false)):
            throw .refused(url: next.description, reason: "redirected from \(description): https:// may not lead to http://")
        case (.file, _):
            throw .refused(url: location, reason: "\(description) is a local file: it does not redirect")
        case (.http, .http):
            return next
        }
    }

    /// Whether `reference` starts with a scheme (RFC 3986: a letter, then letters, digits, `+`,
    /// `-` or `.`, then `:`), which makes it an absolute URL.
    static func hasScheme(_ reference: String) -> Bool {
        guard let colon = reference.firstIndex(of: ":"), let first = reference.first, first.isASCII, first.isLetter else { return false }
        return reference[..<colon].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
    }

    /// The host of an authority, without port or brackets, lowercased; nil where what follows
    /// the host is not nothing or `:` and a port number.
    static func host(of authority: Substring) -> String? {
        let host: Substring
        let rest: Substring
        if authority.hasPrefix("[") {
            host = authority.dropFirst().prefix { $0 != "]" }
            rest = authority.dropFirst(host.count + 1)
            guard rest.hasPrefix("]") else { return nil }
            return isPort(rest.dropFirst()) ? host.lowercased() : nil
        }
        host = authority.prefix { $0 != ":" }
        rest = authority.dropFirst(host.count)
        return isPort(rest) ? host.lowercased() : nil
    }

    /// Nothing, or `:` and a port number (digits only, at most 65535; `:` alone is the default).
    private static func isPort(_ text: Substring) -> Bool {
        if text.isEmpty { return true }
        guard text.first == ":" else { return false }
        let digits = text.dropFirst()
        return digits.count <= 5 && digits.allSatisfy { $0.isASCII && $0.isNumber } && (Int(digits) ?? 0) <= 65535
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
