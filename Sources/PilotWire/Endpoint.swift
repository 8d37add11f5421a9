/// A `host:port` pair as the configuration, the command line and the registry write it:
/// `192.0.2.7:9000`, `[2001:db8::1]:9000` or `registry.example:9000`.
///
/// `host` is kept without brackets; `description` puts them back for IPv6. Parsing is total:
/// anything else is an `EndpointError` that says what is wrong. Nothing is resolved.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    /// An IPv4 address, an IPv6 address (no brackets) or a hostname.
    public let host: String
    /// The port; 0 lets the kernel pick one where the endpoint is bound.
    public let port: UInt16

    /// An endpoint from parts already checked by the caller.
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port` or, when `defaultHost` is given, `:port` (the host left
    /// out means `defaultHost`, as in a listen address `:9000`).
    public init(parsing text: String, defaultHost: String? = nil) throws(EndpointError) {
        guard let colon = text.lastIndex(of: ":"), !(text.hasPrefix("[") && text.hasSuffix("]")) else { throw .missingPort(text) }
        let hostText = text[..<colon]
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw .invalidPort(text)
        }
        guard let port = UInt16(portText) else { throw .portOutOfRange(text) }
        if hostText.isEmpty {
            guard let defaultHost else { throw .missingHost(text) }
            self.init(host: defaultHost, port: port)
            return
        }
        if hostText.hasPrefix("[") {
            guard hostText.hasSuffix("]"), hostText.count > 2 else { throw .invalidIPv6(text) }
            let inner = hostText.dropFirst().dropLast()
            guard Self.isIPv6(inner) else { throw .invalidIPv6(text) }
            self.init(host: String(inner), port: port)
            return
        }
        if hostText.contains(":") { throw .unbracketedIPv6(text) }
        let labels = hostText.split(separator: ".", omittingEmptySubsequences: false)
        // A name whose last label is all digits is an IPv4 address (RFC 1123 §2.1).
        if let last = labels.last, !last.isEmpty, last.utf8.allSatisfy({ (0x30...0x39).contains($0) }) {
            guard labels.count == 4, labels.allSatisfy(Self.isOctet) else { throw .invalidIPv4(text) }
        } else {
            guard Self.isHostname(hostText, labels: labels) else { throw .invalidHostname(text) }
        }
        self.init(host: String(hostText), port: port)
    }

    /// `host:port`, with the host in brackets when it is an IPv6 address.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// 0 to 255 in decimal, without leading zeros (which some parsers read as octal).
    private static func isOctet(_ label: Substring) -> Bool {
        guard (1...3).contains(label.utf8.count), label.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            label == "0" || !label.hasPrefix("0"), let value = Int(label)
        else { return false }
        return value <= 255
    }

    /// RFC 1123 names: labels of 1 to 63 letters, digits and inner hyphens, 253 bytes in all;
    /// underscores too, as container and compose service names have them and resolvers take them.
    private static func isHostname(_ text: Substring, labels: [Substring]) -> Bool {
        guard text.utf8.count <= 253 else { return false }
        return labels.allSatisfy { label in
            let bytes = Array(label.utf8)
            guard let first = bytes.first, let last = bytes.last, bytes.count <= 63, first != 0x2D, last != 0x2D else { return false }
            return bytes.allSatisfy { byte in
                (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x2D || byte == 0x5F
            }
        }
    }

    /// The textual forms of RFC 4291 §2.2: up to eight groups of 1 to 4 hex digits, at most one
    /// `::`, and optionally a dotted IPv4 address in place of the last two groups.
    private static func isIPv6(_ text: Substring) -> Bool {
        guard text.utf8.count <= 45 else { return false }
        var groups = 0
        var sawDoubleColon = false
        var rest = text
        if rest.hasPrefix("::") {
            sawDoubleColon = true
            rest = rest.dropFirst(2)
            if rest.isEmpty { return true }
        } else if rest.hasPrefix(":") {
            return false
        }
        while true {
            let end = rest.firstIndex(of: ":") ?? rest.endIndex
            let piece = rest[..<end]
            if end == rest.endIndex, piece.contains(".") {
                let octets = piece.split(separator: ".", omittingEmptySubsequences: false)
                guard octets.count == 4, octets.allSatisfy(isOctet) else { return false }
                groups += 2
                break
            }
            guard (1...4).contains(piece.utf8.count), piece.utf8.allSatisfy({ $0.isHexDigit }) else { return false }
            groups += 1
            if end == rest.endIndex { break }
            rest = rest[rest.index(after: end)...]
            if rest.hasPrefix(":") {
                guard !sawDoubleColon else { return false }
                sawDoubleColon = true
                rest = rest.dropFirst()
                if rest.isEmpty { break }
            } else if rest.isEmpty {
                return false
            }
        }
        return sawDoubleColon ? groups <= 7 : groups == 8
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x46).contains(self) || (0x61...0x66).contains(self)
    }
}

/// Why text is not a `host:port` endpoint; each case carries the text as given.
public enum EndpointError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No `:port` at the end.
    case missingPort(String)
    /// The port is empty or not 1 to 5 decimal digits.
    case invalidPort(String)
    /// The port is above 65535.
    case portOutOfRange(String)
    /// Nothing before `:port`, where a host is required.
    case missingHost(String)
    /// The host has colons but no brackets: an IPv6 address must be written `[v6]:port`.
    case unbracketedIPv6(String)
    /// The text in brackets is not an IPv6 address.
    case invalidIPv6(String)
    /// Digits and dots that do not make four numbers from 0 to 255 (without leading zeros).
    case invalidIPv4(String)
    /// Not a hostname of letters, digits and inner hyphens.
    case invalidHostname(String)

    /// What is wrong and which rule the text breaks.
    public var description: String {
        switch self {
        case .missingPort(let text): "\(text) is not host:port: no port"
        case .invalidPort(let text): "\(text) is not host:port: the port must be a number from 0 to 65535"
        case .portOutOfRange(let text): "\(text): the port is above 65535"
        case .missingHost(let text): "\(text) is not host:port: no host"
        case .unbracketedIPv6(let text): "\(text): an IPv6 address must be in brackets, as [::1]:9000"
        case .invalidIPv6(let text): "\(text): not an IPv6 address in brackets"
        case .invalidIPv4(let text): "\(text): not an IPv4 address (four numbers from 0 to 255)"
        case .invalidHostname(let text): "\(text): not a hostname (letters, digits, underscores, inner hyphens and dots)"
        }
    }
}

extension Endpoint {
    /// The host's four bytes when it is a dotted IPv4 address (each part 0 to 255, at most three
    /// digits); nil for anything else.
    public var ipv4Octets: [UInt8]? {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ (1...3).contains($0.count) }) else { return nil }
        let octets = parts.compactMap { UInt8($0) }
        return octets.count == 4 ? octets : nil
    }

    /// Whether IPv4 `octets` are private (10/8, 172.16/12, 192.168/16) or link-local
    /// (169.254/16): the addresses 1.18 lists as its LAN and will not take from a STUN answer.
    public static func isPrivateOrLinkLocal(ipv4 octets: [UInt8]) -> Bool {
        guard octets.count == 4 else { return false }
        let (a, b) = (octets[0], octets[1])
        return a == 10 || (a == 172 && b & 0xF0 == 16) || (a == 192 && b == 168) || (a == 169 && b == 254)
    }
}
