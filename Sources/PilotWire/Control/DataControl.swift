/// Streams and datagrams from an identity's own socket: probes and transfers to another node's
/// ports, and what arrives on this identity's. A `target` is an address, a node id or a
/// hostname (`NodeTarget`).
public enum DataControl {
    /// `ping`: round trips timed to `target`'s echo port, a stream per probe.
    public struct Ping: ControlCommand {
        public typealias Reply = PingReport
        public static let name = "ping"
        /// The node.
        public var target: String
        /// How many probes (1 to 100; nil: 4).
        public var count: Int?
        /// Seconds to wait for each probe (1 to 300; nil: 10).
        public var timeout: Int?

        /// The command probing `target`.
        public init(target: String, count: Int? = nil, timeout: Int? = nil) {
            self.target = target
            self.count = count
            self.timeout = timeout
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                target: try fields.string("target"), count: try fields.optionalInteger("count", as: Int.self),
                timeout: try fields.optionalInteger("timeout", as: Int.self))
        }

        public var arguments: [String: JSON] { ControlArguments(["target": .string(target)]).with(count: count, timeout: timeout) }
    }

    /// `bench`: megabytes streamed through `target`'s echo port and timed.
    public struct Bench: ControlCommand {
        public typealias Reply = BenchReport
        public static let name = "bench"
        /// The node.
        public var target: String
        /// How many MB (1 to 1024; nil: 1).
        public var megabytes: Int?

        /// The command timing `megabytes` to `target` and back.
        public init(target: String, megabytes: Int? = nil) {
            self.target = target
            self.megabytes = megabytes
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(target: try fields.string("target"), megabytes: try fields.optionalInteger("megabytes", as: Int.self))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["target": .string(target)]
            if let megabytes { arguments["megabytes"] = .integer(Int64(megabytes)) }
            return arguments
        }
    }

    /// `send` (and pilotctl's `connect`): a stream to `target`'s `port`, `data` sent, and the
    /// first answer within `timeout`.
    public struct Send: ControlCommand {
        public typealias Reply = StreamSent
        public static let name = "send"
        /// The node.
        public var target: String
        /// Its port.
        public var port: UInt16
        /// What to send.
        public var data: String
        /// Seconds to wait for an answer (1 to 3600; nil: 5).
        public var timeout: Int?

        /// The command sending `data` to `target`'s `port`.
        public init(target: String, port: UInt16, data: String, timeout: Int? = nil) {
            self.target = target
            self.port = port
            self.data = data
            self.timeout = timeout
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                target: try fields.string("target"), port: try fields.port(), data: try fields.string("data"),
                timeout: try fields.optionalInteger("timeout", as: Int.self))
        }

        public var arguments: [String: JSON] {
            ControlArguments(["target": .string(target), "port": .integer(Int64(port)), "data": .string(data)]).with(timeout: timeout)
        }
    }

    /// `recv`: streams accepted on this identity's `port`, and what each sends first.
    public struct Receive: PortWaitCommand {
        public typealias Reply = PortArrivals
        public static let name = "recv"
        public var port: UInt16
        /// How many streams (1 to 1000; nil: 1).
        public var count: Int?
        public var timeout: Int?

        /// The command accepting `count` streams on `port`.
        public init(port: UInt16, count: Int? = nil, timeout: Int? = nil) {
            self.port = port
            self.count = count
            self.timeout = timeout
        }
    }

    /// `listen`: datagrams that arrive on this identity's `port`.
    public struct Listen: PortWaitCommand {
        public typealias Reply = PortArrivals
        public static let name = "listen"
        public var port: UInt16
        /// How many datagrams (1 to 1000; nil: 1).
        public var count: Int?
        public var timeout: Int?

        /// The command waiting for `count` datagrams on `port`.
        public init(port: UInt16, count: Int? = nil, timeout: Int? = nil) {
            self.port = port
            self.count = count
            self.timeout = timeout
        }
    }

    /// `send-datagram`: one datagram to `target`'s `port`.
    public struct SendDatagram: ControlCommand {
        public typealias Reply = DatagramSent
        public static let name = "send-datagram"
        /// The node.
        public var target: String
        /// Its port.
        public var port: UInt16
        /// What to send.
        public var data: String

        /// The command sending `data` to `target`'s `port`.
        public init(target: String, port: UInt16, data: String) {
            self.target = target
            self.port = port
            self.data = data
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(target: try fields.string("target"), port: try fields.port(), data: try fields.string("data"))
        }

        public var arguments: [String: JSON] { ["target": .string(target), "port": .integer(Int64(port)), "data": .string(data)] }
    }

    /// `connections`: this identity's streams, by `id`, a page at a time.
    public struct Connections: PagedListCommand {
        public typealias Reply = ConnectionList
        public static let name = "connections"
        public var page: ListPage
        /// The command for `page` (the first, by default).
        public init(page: ListPage = ListPage()) { self.page = page }
    }

    /// `traceroute`: the path to a node, as 1.18 measures it: a stream to its echo port (the
    /// time to set it up), then three round trips of 7 bytes on it.
    public struct Traceroute: ControlCommand {
        public typealias Reply = TracerouteReport
        public static let name = "traceroute"
        /// The node.
        public var target: String
        /// Milliseconds for all of it (1 to 300000; nil: 30000).
        public var timeout: Int?

        /// The command tracing `target`.
        public init(target: String, timeout: Int? = nil) {
            self.target = target
            self.timeout = timeout
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(target: try fields.string("target"), timeout: try fields.optionalInteger("timeout", as: Int.self))
            if let timeout, !(1...300_000).contains(timeout) { throw fields.failure("timeout", "1 to 300000 milliseconds") }
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["target": .string(target)]
            if let timeout { arguments["timeout"] = .integer(Int64(timeout)) }
            return arguments
        }
    }

    /// `disconnect`: closes one of this identity's streams by its `id` in `connections` (a FIN
    /// to the peer), as 1.18's.
    public struct Disconnect: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "disconnect"
        /// The stream's `id`.
        public var connection: Int

        /// The command closing stream `connection`.
        public init(connection: Int) { self.connection = connection }
        public init(fields: ControlFields) throws(ControlFailure) {
            connection = try fields.integer("conn_id", as: Int.self)
            guard connection > 0 else { throw fields.failure("conn_id", "a stream's id from connections (1 or more)") }
        }
        public var arguments: [String: JSON] { ["conn_id": .integer(Int64(connection))] }
    }

    /// `peers`: the nodes this identity has a tunnel with, by node id, a page at a time.
    public struct Peers: PagedListCommand {
        public typealias Reply = PeerList
        public static let name = "peers"
        public var page: ListPage
        /// The command for `page` (the first, by default).
        public init(page: ListPage = ListPage()) { self.page = page }
    }
}

/// A command that waits on one of this identity's ports for `count` arrivals or `timeout`.
public protocol PortWaitCommand: ControlCommand {
    /// The port.
    var port: UInt16 { get }
    /// How many arrivals to wait for; nil: 1.
    var count: Int? { get }
    /// Seconds to wait (1 to 3600; nil: 30).
    var timeout: Int? { get }
    /// The command waiting on `port`.
    init(port: UInt16, count: Int?, timeout: Int?)
}

extension PortWaitCommand {
    /// The command; `port` must be 1 to 65535, `count` and `timeout` integers if there.
    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            port: try fields.port(), count: try fields.optionalInteger("count", as: Int.self),
            timeout: try fields.optionalInteger("timeout", as: Int.self))
    }

    /// `port`, and `count` and `timeout` unless nil.
    public var arguments: [String: JSON] { ControlArguments(["port": .integer(Int64(port))]).with(count: count, timeout: timeout) }
}

/// A request's arguments with the optional `count` and `timeout` most waiting commands take.
struct ControlArguments {
    var values: [String: JSON]

    init(_ values: [String: JSON]) { self.values = values }

    func with(count: Int? = nil, timeout: Int? = nil) -> [String: JSON] {
        var values = values
        if let count { values["count"] = .integer(Int64(count)) }
        if let timeout { values["timeout"] = .integer(Int64(timeout)) }
        return values
    }
}
