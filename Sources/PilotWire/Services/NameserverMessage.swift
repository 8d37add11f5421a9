/// The nameserver's text protocol on port 53 (`docs/PROTOCOL.md §11.6`): one ASCII request per stream,
/// no terminator, one reply, then the server closes.
///
///     QUERY A <name>                    A <name> <addr>
///     QUERY N <name>                    N <name> <net>
///     QUERY S <net> <port>              S <name> <addr> <port>   (one line each, or a bare S)
///     REGISTER A <name> <addr>          OK
///     REGISTER N <name> <net>           OK
///     REGISTER S <name> <addr> <net> <port>
///                                       ERR <message>, for any request
public enum NameserverRequest: Hashable, Sendable {
    /// `QUERY A <name>`: the address registered under a name.
    case queryAddress(name: String)
    /// `QUERY N <name>`: the network registered under a name.
    case queryNetwork(name: String)
    /// `QUERY S <net> <port>`: the services on a port of a network.
    case queryService(network: UInt16, port: UInt16)
    /// `REGISTER A <name> <addr>`.
    case registerAddress(name: String, address: Address)
    /// `REGISTER N <name> <net>`.
    case registerNetwork(name: String, network: UInt16)
    /// `REGISTER S <name> <addr> <net> <port>`.
    case registerService(name: String, address: Address, network: UInt16, port: UInt16)

    /// The nameserver's port.
    public static let port = Port.nameserver
    /// The reference reads a request with one read of at most this many bytes.
    public static let maxSize = 65535
    /// Names are at most this long (a DNS name's limit) and printable ASCII without spaces.
    public static let maxName = 253

    /// Parses one request; throws on an unknown verb, a wrong number of words, a bad name, address
    /// or number, or more than `maxSize` bytes.
    public init(decoding bytes: some Collection<UInt8>) throws(WireError) {
        guard bytes.count <= Self.maxSize else { throw .oversized(field: "nameserver request", limit: Self.maxSize, actual: bytes.count) }
        let words = try NameserverWords(bytes, what: "nameserver request")
        func arity(_ count: Int) throws(WireError) {
            guard words.count == count else {
                throw .invalidValue(field: "nameserver request", reason: "\(words[0]) \(words[1]) takes \(count - 2) arguments, got \(words.count - 2)")
            }
        }
        guard words.count >= 2 else {
            throw .invalidValue(field: "nameserver request", reason: "must be QUERY or REGISTER, a record type (A, N, S) and arguments")
        }
        switch (words[0], words[1]) {
        case ("QUERY", "A"):
            try arity(3)
            self = .queryAddress(name: try words.name(2))
        case ("QUERY", "N"):
            try arity(3)
            self = .queryNetwork(name: try words.name(2))
        case ("QUERY", "S"):
            try arity(4)
            self = .queryService(network: try words.number(2, "network"), port: try words.number(3, "port"))
        case ("REGISTER", "A"):
            try arity(4)
            self = .registerAddress(name: try words.name(2), address: try words.address(3))
        case ("REGISTER", "N"):
            try arity(4)
            self = .registerNetwork(name: try words.name(2), network: try words.number(3, "network"))
        case ("REGISTER", "S"):
            try arity(6)
            self = .registerService(
                name: try words.name(2), address: try words.address(3), network: try words.number(4, "network"),
                port: try words.number(5, "port"))
        default:
            throw .invalidValue(field: "nameserver request", reason: "unknown request \(words[0].prefix(16)) \(words[1].prefix(16))")
        }
    }

    /// The request's text, without a terminator.
    public var encoded: [UInt8] {
        let text: String
        switch self {
        case .queryAddress(let name): text = "QUERY A \(name)"
        case .queryNetwork(let name): text = "QUERY N \(name)"
        case .queryService(let network, let port): text = "QUERY S \(network) \(port)"
        case .registerAddress(let name, let address): text = "REGISTER A \(name) \(address)"
        case .registerNetwork(let name, let network): text = "REGISTER N \(name) \(network)"
        case .registerService(let name, let address, let network, let port): text = "REGISTER S \(name) \(address) \(network) \(port)"
        }
        return Array(text.utf8)
    }
}

/// A nameserver's answer to one request.
public enum NameserverReply: Hashable, Sendable {
    /// One service of an `S` reply.
    public struct Service: Hashable, Sendable {
        /// The service's registered name.
        public var name: String
        /// The node that offers it.
        public var address: Address
        /// The port it listens on.
        public var port: UInt16
        /// A service from its parts.
        public init(name: String, address: Address, port: UInt16) {
            self.name = name
            self.address = address
            self.port = port
        }
    }

    /// `A <name> <addr>`.
    case address(name: String, address: Address)
    /// `N <name> <net>`.
    case network(name: String, network: UInt16)
    /// Every service on a (network, port); empty encodes as a bare `S`.
    case services([Service])
    /// `OK`, after a registration.
    case ok
    /// `ERR <message>`.
    case error(String)

    /// The reply's text; services one line each.
    public var encoded: [UInt8] {
        let text: String
        switch self {
        case .address(let name, let address): text = "A \(name) \(address)"
        case .network(let name, let network): text = "N \(name) \(network)"
        case .services(let services):
            text = services.isEmpty ? "S" : services.map { "S \($0.name) \($0.address) \($0.port)" }.joined(separator: "\n")
        case .ok: text = "OK"
        case .error(let message): text = "ERR \(message)"
        }
        return Array(text.utf8)
    }

    /// Parses one reply; throws on an unknown form or more than `NameserverRequest.maxSize` bytes.
    public init(decoding bytes: some Collection<UInt8>) throws(WireError) {
        guard bytes.count <= NameserverRequest.maxSize else {
            throw .oversized(field: "nameserver reply", limit: NameserverRequest.maxSize, actual: bytes.count)
        }
        if bytes.starts(with: Array("ERR ".utf8)) {
            guard let message = String(validating: bytes.dropFirst(4), as: UTF8.self) else {
                throw .invalidValue(field: "nameserver reply", reason: "error message is not UTF-8")
            }
            self = .error(message)
            return
        }
        if Array(bytes) == Array("S".utf8) {
            self = .services([])
            return
        }
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        var services: [Service] = []
        for line in lines {
            let words = try NameserverWords(line, what: "nameserver reply")
            switch (words[0], words.count) {
            case ("OK", 1) where lines.count == 1:
                self = .ok
                return
            case ("A", 3) where lines.count == 1:
                self = .address(name: try words.name(1), address: try words.address(2))
                return
            case ("N", 3) where lines.count == 1:
                self = .network(name: try words.name(1), network: try words.number(2, "network"))
                return
            case ("S", 4):
                services.append(Service(name: try words.name(1), address: try words.address(2), port: try words.number(3, "port")))
            default:
                throw .invalidValue(field: "nameserver reply", reason: "unexpected line starting \(words[0].prefix(16))")
            }
        }
        self = .services(services)
    }
}

/// The space-separated words of one line of the protocol, with typed accessors.
private struct NameserverWords {
    private let words: [String]
    private let what: String

    init(_ bytes: some Collection<UInt8>, what: String) throws(WireError) {
        // One trailing newline is tolerated (a request typed by hand).
        var line = Array(bytes)
        if line.last == UInt8(ascii: "\n") { line.removeLast() }
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw .invalidValue(field: what, reason: "must be one line of printable ASCII")
        }
        words = String(decoding: line, as: UTF8.self).split(separator: " ").map(String.init)
        self.what = what
        guard !words.isEmpty else { throw .invalidValue(field: what, reason: "is empty") }
    }

    var count: Int { words.count }
    subscript(index: Int) -> String { words[index] }

    func name(_ index: Int) throws(WireError) -> String {
        let name = words[index]
        guard name.utf8.count <= NameserverRequest.maxName else {
            throw .oversized(field: "\(what) name", limit: NameserverRequest.maxName, actual: name.utf8.count)
        }
        return name
    }

    func address(_ index: Int) throws(WireError) -> Address {
        guard let address = Address(words[index]) else {
            throw .invalidValue(field: "\(what) address", reason: "must be N:XXXX.YYYY.YYYY")
        }
        return address
    }

    func number(_ index: Int, _ field: String) throws(WireError) -> UInt16 {
        let word = words[index]
        guard word.count <= 5, word.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt16(word) else {
            throw .invalidValue(field: "\(what) \(field)", reason: "must be a number 0...65535")
        }
        return value
    }
}
