/// The replies of `DataControl`'s commands, as the host sends them. A reply that names the
/// target carries it as the caller named it (`target`) and as the address it resolved to (`to`).

/// `send`'s reply: what went to the port, and the first answer if one came in time.
public struct StreamSent: ControlReplyData {
    /// The target as the caller named it.
    public var target: String
    /// The address it resolved to.
    public var to: String
    /// The port.
    public var port: UInt16
    /// Bytes sent.
    public var bytes: Int
    /// The first answer, as text; nil if none came.
    public var reply: String?

    /// A stream's report.
    public init(target: String, to: String, port: UInt16, bytes: Int, reply: String?) {
        self.target = target
        self.to = to
        self.port = port
        self.bytes = bytes
        self.reply = reply
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"), port: try fields.integer("port", as: UInt16.self),
            bytes: try fields.integer("bytes", as: Int.self), reply: try fields.optionalString("reply"))
    }

    public var json: JSON {
        var fields: [String: JSON] = [
            "target": .string(target), "to": .string(to), "port": .integer(Int64(port)), "bytes": .integer(Int64(bytes)),
        ]
        if let reply { fields["reply"] = .string(reply) }
        return .object(fields)
    }
}

/// `send-datagram`'s reply: what went to the port.
public struct DatagramSent: ControlReplyData {
    /// The target as the caller named it.
    public var target: String
    /// The address it resolved to.
    public var to: String
    /// The port.
    public var port: UInt16
    /// Bytes sent.
    public var bytes: Int

    /// A datagram's report.
    public init(target: String, to: String, port: UInt16, bytes: Int) {
        self.target = target
        self.to = to
        self.port = port
        self.bytes = bytes
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"), port: try fields.integer("port", as: UInt16.self),
            bytes: try fields.integer("bytes", as: Int.self))
    }

    public var json: JSON {
        ["target": .string(target), "to": .string(to), "port": .integer(Int64(port)), "bytes": .integer(Int64(bytes))]
    }
}

/// `bench`'s reply: bytes through the echo port and back, verified, and how fast.
public struct BenchReport: ControlReplyData {
    /// The target as the caller named it.
    public var target: String
    /// The address it resolved to.
    public var to: String
    /// Bytes sent.
    public var bytes: Int
    /// Bytes that came back (all of them: a bench whose echo stops short is an error).
    public var receivedBytes: Int
    /// Seconds from the first byte sent to the last byte back (to the millisecond).
    public var seconds: Double
    /// Milliseconds from the first byte sent to the last handed to the stream.
    public var sendMilliseconds: Int
    /// Decimal megabytes per second (to two places).
    public var megabytesPerSecond: Double

    /// A bench's report.
    public init(target: String, to: String, bytes: Int, receivedBytes: Int, seconds: Double, sendMilliseconds: Int, megabytesPerSecond: Double) {
        self.target = target
        self.to = to
        self.bytes = bytes
        self.receivedBytes = receivedBytes
        self.seconds = seconds
        self.sendMilliseconds = sendMilliseconds
        self.megabytesPerSecond = megabytesPerSecond
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"), bytes: try fields.integer("bytes", as: Int.self),
            receivedBytes: try fields.integer("recv_bytes", as: Int.self), seconds: try fields.double("seconds"),
            sendMilliseconds: try fields.integer("send_duration_ms", as: Int.self), megabytesPerSecond: try fields.double("mb_per_second"))
    }

    /// Ours (`bytes`, `seconds`, `mb_per_second` in decimal MB, `verified`: the echo was compared
    /// byte for byte) and 1.18's: `sent_bytes`, `recv_bytes`, the durations in whole
    /// milliseconds, and `send_mbps`/`total_mbps` in MiB per second, as 1.18 counts them.
    public var json: JSON {
        let totalMilliseconds = Int((seconds * 1000).rounded())
        return [
            "target": .string(target), "to": .string(to), "bytes": .integer(Int64(bytes)), "seconds": .double(seconds),
            "mb_per_second": .double(megabytesPerSecond), "verified": true, "complete": .bool(receivedBytes >= bytes),
            "sent_bytes": .integer(Int64(bytes)), "recv_bytes": .integer(Int64(receivedBytes)),
            "send_duration_ms": .integer(Int64(sendMilliseconds)), "total_duration_ms": .integer(Int64(totalMilliseconds)),
            "send_mbps": .double(Self.mebibytesPerSecond(bytes, milliseconds: sendMilliseconds)),
            "total_mbps": .double(Self.mebibytesPerSecond(bytes, milliseconds: totalMilliseconds)),
        ]
    }

    /// `bytes` in MiB per second over `milliseconds` (at least 1), to two places.
    private static func mebibytesPerSecond(_ bytes: Int, milliseconds: Int) -> Double {
        (Double(bytes) / Double(1 << 20) / (Double(max(milliseconds, 1)) / 1000) * 100).rounded() / 100
    }
}

/// `traceroute`'s reply: 1.18's keys (`target`, `setup_ms`, `rtt_samples` of `bytes` and
/// `rtt_ms`), and ours: `to`, and `path` (`direct`, `relay` through the beacon, or `local` for
/// an identity of the same host).
public struct TracerouteReport: ControlReplyData {
    /// One round trip.
    public struct Sample: Hashable, Sendable {
        public var bytes: Int
        public var milliseconds: Double

        public init(bytes: Int, milliseconds: Double) {
            self.bytes = bytes
            self.milliseconds = milliseconds
        }
    }

    /// The target's address.
    public var target: String
    /// The target as the caller named it.
    public var to: String
    /// Milliseconds to set up the stream (a key exchange first, if there was no session).
    public var setupMilliseconds: Double
    public var samples: [Sample]
    /// How frames to the target travel.
    public var path: String

    public init(target: String, to: String, setupMilliseconds: Double, samples: [Sample], path: String) {
        self.target = target
        self.to = to
        self.setupMilliseconds = setupMilliseconds
        self.samples = samples
        self.path = path
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"), setupMilliseconds: try fields.double("setup_ms"),
            samples: try fields.objects("rtt_samples") { sample throws(ControlFailure) in
                Sample(bytes: try sample.integer("bytes", as: Int.self), milliseconds: try sample.double("rtt_ms"))
            },
            path: try fields.string("path"))
    }

    public var json: JSON {
        [
            "target": .string(target), "to": .string(to), "setup_ms": .double(setupMilliseconds), "path": .string(path),
            "rtt_samples": .array(samples.map { ["bytes": .integer(Int64($0.bytes)), "rtt_ms": .double($0.milliseconds)] }),
        ]
    }
}

/// `ping`'s reply: one result per probe.
public struct PingReport: ControlReplyData {
    /// One probe: its round trip, or why it failed.
    public struct Probe: Hashable, Sendable {
        /// Its number, from 0.
        public var sequence: Int
        /// Bytes echoed; nil if it failed.
        public var bytes: Int?
        /// The round trip in milliseconds; nil if it failed.
        public var milliseconds: Double?
        /// Why it failed; nil if it did not.
        public var error: String?

        /// A probe answered in `milliseconds`.
        public init(sequence: Int, bytes: Int, milliseconds: Double) {
            self.sequence = sequence
            self.bytes = bytes
            self.milliseconds = milliseconds
        }

        /// A probe that failed.
        public init(sequence: Int, error: String) {
            self.sequence = sequence
            self.error = error
        }

        init(fields: ControlFields) throws(ControlFailure) {
            sequence = try fields.integer("seq", as: Int.self)
            bytes = try fields.optionalInteger("bytes", as: Int.self)
            milliseconds = try fields.optionalDouble("rtt_ms")
            error = try fields.optionalString("error")
        }

        var json: JSON {
            var fields: [String: JSON] = ["seq": .integer(Int64(sequence))]
            if let bytes { fields["bytes"] = .integer(Int64(bytes)) }
            if let milliseconds { fields["rtt_ms"] = .double(milliseconds) }
            if let error { fields["error"] = .string(error) }
            return .object(fields)
        }
    }

    /// The target as the caller named it.
    public var target: String
    /// The address it resolved to.
    public var to: String
    /// The probes, in order.
    public var results: [Probe]
    /// Whether a probe went unanswered within the timeout.
    public var timeout: Bool

    /// A ping's report.
    public init(target: String, to: String, results: [Probe], timeout: Bool) {
        self.target = target
        self.to = to
        self.results = results
        self.timeout = timeout
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"),
            results: try fields.objects("results") { probe throws(ControlFailure) in try Probe(fields: probe) },
            timeout: try fields.bool("timeout"))
    }

    public var json: JSON {
        ["target": .string(target), "to": .string(to), "results": .array(results.map(\.json)), "timeout": .bool(timeout)]
    }
}

/// What arrived on a port: `recv`'s streams (their first bytes) or `listen`'s datagrams.
public struct PortArrivals: ControlReplyData {
    /// One stream or datagram.
    public struct Arrival: Hashable, Sendable {
        /// The sender's address.
        public var from: String
        /// The sender's port.
        public var port: UInt16
        /// Bytes received.
        public var bytes: Int
        /// They, as text.
        public var data: String

        /// An arrival from `from`'s `port`.
        public init(from: String, port: UInt16, bytes: Int, data: String) {
            self.from = from
            self.port = port
            self.bytes = bytes
            self.data = data
        }
    }

    /// Which list this is: `recv` lists `messages` with the sender's `port`, `listen` lists
    /// `datagrams` with its `src_port`.
    public enum Kind: Hashable, Sendable {
        case streams, datagrams

        var list: String { self == .streams ? "messages" : "datagrams" }
        var senderPort: String { self == .streams ? "port" : "src_port" }
    }

    /// Streams or datagrams.
    public var kind: Kind
    /// The port they arrived on.
    public var port: UInt16
    /// What arrived, in order.
    public var arrivals: [Arrival]
    /// Whether fewer than asked for came before the timeout.
    public var timeout: Bool

    /// A report of `arrivals` on `port`.
    public init(kind: Kind, port: UInt16, arrivals: [Arrival], timeout: Bool) {
        self.kind = kind
        self.port = port
        self.arrivals = arrivals
        self.timeout = timeout
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        let kind: Kind = fields.values[Kind.datagrams.list] != nil ? .datagrams : .streams
        self.init(
            kind: kind, port: try fields.integer("port", as: UInt16.self),
            arrivals: try fields.objects(kind.list) { entry throws(ControlFailure) in
                Arrival(
                    from: try entry.string("from"), port: try entry.integer(kind.senderPort, as: UInt16.self),
                    bytes: try entry.integer("bytes", as: Int.self), data: try entry.string("data"))
            },
            timeout: try fields.bool("timeout"))
    }

    public var json: JSON {
        [
            "port": .integer(Int64(port)), "timeout": .bool(timeout),
            kind.list: .array(arrivals.map { arrival in
                [
                    "from": .string(arrival.from), kind.senderPort: .integer(Int64(arrival.port)), "bytes": .integer(Int64(arrival.bytes)),
                    "data": .string(arrival.data),
                ]
            }),
        ]
    }
}

/// `connections`' reply: this identity's streams.
public struct ConnectionList: ControlReplyData {
    /// One stream.
    public struct Connection: Hashable, Sendable {
        /// This identity's port.
        public var localPort: UInt16
        /// The other end's address.
        public var remoteAddress: String
        /// The other end's port.
        public var remotePort: UInt16
        /// Its state, as the stream names it.
        public var state: String
        /// Bytes sent and not yet acknowledged.
        public var unacknowledgedBytes: Int
        /// 1.18's figures of the stream, by their keys (`figureKeys`); empty when not known.
        public var figures: [String: Int64]
        /// Whether it is recovering from a loss (1.18's `in_recovery`); nil when not known.
        public var inRecovery: Bool?
        /// What the peer SACKed, as `first-end` byte ranges (`sacked`); nil when not known.
        public var sacked: [String]?
        /// Whether the peer said it is pilot-host (`peer_pilot_host`); nil when not known.
        public var peerIsPilotHost: Bool?

        /// A stream's description.
        public init(
            localPort: UInt16, remoteAddress: String, remotePort: UInt16, state: String, unacknowledgedBytes: Int,
            figures: [String: Int64] = [:], inRecovery: Bool? = nil, sacked: [String]? = nil, peerIsPilotHost: Bool? = nil
        ) {
            self.localPort = localPort
            self.remoteAddress = remoteAddress
            self.remotePort = remotePort
            self.state = state
            self.unacknowledgedBytes = unacknowledgedBytes
            self.figures = figures
            self.inRecovery = inRecovery
            self.sacked = sacked
            self.peerIsPilotHost = peerIsPilotHost
        }
    }

    /// The counters and windows 1.18 lists for a stream (`conn_list`, `connections`), by key:
    /// windows and what is in flight in bytes, round trips in whole milliseconds.
    public static let figureKeys = [
        "id", "bytes_sent", "bytes_recv", "segs_sent", "segs_recv", "sack_sent", "sack_recv", "fast_retx", "retransmits", "dup_acks",
        "cong_win", "ssthresh", "peer_recv_win", "recv_win", "unacked", "in_flight", "ooo_buf", "srtt_ms", "rttvar_ms",
    ]

    /// pilot-host's own figures beside 1.18's, for a stall: the oldest byte unacknowledged,
    /// the next byte to send and to receive (sequence numbers), SACKed and lost segments, ACKs
    /// that stopped at a SACKed segment, the cap on segments unacknowledged toward 1.18 (0
    /// toward pilot-host: none), milliseconds since the cumulative ACK last moved.
    public static let diagnosticKeys = [
        "snd_una", "snd_nxt", "rcv_nxt", "sacked_segs", "lost_segs", "reneged", "outstanding_limit", "since_progress_ms",
    ]

    /// The streams (this page of them).
    public var connections: [Connection]
    /// How many streams the identity has.
    public var total: Int
    /// The `after` of the next page (`ListPage`, by stream `id`); nil: this is the last.
    public var next: Int64?

    /// A list of `connections`, a page of `total` (nil: all of them).
    public init(connections: [Connection], total: Int? = nil, next: Int64? = nil) {
        self.connections = connections
        self.total = total ?? connections.count
        self.next = next
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        connections = try fields.objects("connections") { entry throws(ControlFailure) in
            Connection(
                localPort: try entry.integer("local_port", as: UInt16.self), remoteAddress: try entry.string("remote_addr"),
                remotePort: try entry.integer("remote_port", as: UInt16.self), state: try entry.string("state"),
                unacknowledgedBytes: try entry.integer("unacked_bytes", as: Int.self),
                figures: try Self.figures(of: entry), inRecovery: try entry.optionalBool("in_recovery"),
                sacked: try entry.optionalStrings("sacked"), peerIsPilotHost: try entry.optionalBool("peer_pilot_host"))
        }
        total = try fields.optionalInteger("total", as: Int.self) ?? connections.count
        next = try fields.optionalInteger("next")
    }

    /// The `figureKeys` a row has.
    private static func figures(of row: ControlFields) throws(ControlFailure) -> [String: Int64] {
        var figures: [String: Int64] = [:]
        for key in figureKeys + diagnosticKeys { figures[key] = try row.optionalInteger(key) }
        return figures
    }

    /// The rows as `connections` and 1.18's `conn_list` have them.
    public var rows: [JSON] { connections.map(Self.row) }

    /// One stream as `connections` and 1.18's `conn_list` have it.
    public static func row(_ connection: Connection) -> JSON {
        var fields: [String: JSON] = [
            "local_port": .integer(Int64(connection.localPort)), "remote_addr": .string(connection.remoteAddress),
            "remote_port": .integer(Int64(connection.remotePort)), "state": .string(connection.state),
            "unacked_bytes": .integer(Int64(connection.unacknowledgedBytes)),
        ]
        for (key, value) in connection.figures { fields[key] = .integer(value) }
        if let inRecovery = connection.inRecovery { fields["in_recovery"] = .bool(inRecovery) }
        if let sacked = connection.sacked { fields["sacked"] = .array(sacked.map { .string($0) }) }
        if let pilotHost = connection.peerIsPilotHost { fields["peer_pilot_host"] = .bool(pilotHost) }
        return .object(fields)
    }

    public var json: JSON {
        var fields: [String: JSON] = ["total": .integer(Int64(total)), "connections": .array(rows)]
        if let next { fields["next"] = .integer(next) }
        return .object(fields)
    }
}

/// `peers`' reply: the nodes this identity has a tunnel with.
public struct PeerList: ControlReplyData {
    /// One tunnel.
    public struct Peer: Hashable, Sendable {
        /// The node.
        public var nodeID: UInt32
        /// Its address.
        public var address: String
        /// Its UDP endpoint, `host:port`.
        public var endpoint: String
        /// Whether this identity trusts it.
        public var trusted: Bool
        /// Whether the tunnel goes through the beacon.
        public var relayed: Bool
        /// Seconds since it was last heard from (to a tenth).
        public var lastHeardSeconds: Double
        /// Seconds since the tunnel last turned relayed or direct, or since it was first set
        /// up (to a tenth).
        public var pathSeconds: Double

        /// The path the tunnel takes, as `path` says it: `"relay"` or `"direct"`.
        public var path: String { relayed ? "relay" : "direct" }

        /// A tunnel's description.
        public init(nodeID: UInt32, address: String, endpoint: String, trusted: Bool, relayed: Bool, lastHeardSeconds: Double, pathSeconds: Double) {
            self.nodeID = nodeID
            self.address = address
            self.endpoint = endpoint
            self.trusted = trusted
            self.relayed = relayed
            self.lastHeardSeconds = lastHeardSeconds
            self.pathSeconds = pathSeconds
        }
    }

    /// The tunnels (this page of them).
    public var peers: [Peer]
    /// How many tunnels the identity has.
    public var total: Int
    /// The `after` of the next page (`ListPage`, by node id); nil: this is the last.
    public var next: Int64?

    /// A list of `peers`, a page of `total` (nil: all of them).
    public init(peers: [Peer], total: Int? = nil, next: Int64? = nil) {
        self.peers = peers
        self.total = total ?? peers.count
        self.next = next
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        peers = try fields.objects("peers") { entry throws(ControlFailure) in
            Peer(
                nodeID: try entry.integer("node_id", as: UInt32.self), address: try entry.string("address"),
                endpoint: try entry.string("endpoint"), trusted: try entry.bool("trusted"), relayed: try entry.bool("relay"),
                lastHeardSeconds: try entry.double("last_heard_seconds"), pathSeconds: try entry.double("path_seconds"))
        }
        total = try fields.optionalInteger("total", as: Int.self) ?? peers.count
        next = try fields.optionalInteger("next")
    }

    /// One tunnel: `encrypted` and `authenticated`, as 1.18 reports every one; `relay` is 1.18's
    /// field, `path` and `path_seconds` (the time since it last changed) are ours.
    public static func row(_ peer: Peer) -> JSON {
        [
            "node_id": .integer(Int64(peer.nodeID)), "address": .string(peer.address), "endpoint": .string(peer.endpoint),
            "encrypted": true, "authenticated": true, "trusted": .bool(peer.trusted), "relay": .bool(peer.relayed),
            "path": .string(peer.path), "path_seconds": .double(peer.pathSeconds), "last_heard_seconds": .double(peer.lastHeardSeconds),
        ]
    }

    /// The top-level `encrypted`, 1.18's count of encrypted peers, is `total`.
    public var json: JSON {
        var fields: [String: JSON] = ["total": .integer(Int64(total)), "encrypted": .integer(Int64(total)), "peers": .array(peers.map(Self.row))]
        if let next { fields["next"] = .integer(next) }
        return .object(fields)
    }
}
