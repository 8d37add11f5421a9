import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// The commands that reach another node: ping, messages, streams, datagrams, bench.

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time round trips to a node's echo port (a stream per probe, as the reference's pilotctl ping).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address N:XXXX.YYYY.YYYY, a node id, or a hostname.") var target: String
    @Option(help: "How many probes.") var count = 4
    @Option(help: "Seconds to wait for each probe.") var timeout = 10

    func run() throws {
        let request = DataControl.Ping(target: target, count: count, timeout: timeout)
        try global.run(request, on: try global.identitySocket()) { report in
            let lines = report.results.map { probe in
                if let error = probe.error { return "seq=\(probe.sequence): \(error)" }
                let rtt = String(format: "%.3f", probe.milliseconds ?? 0)
                return "reply from \(report.to): seq=\(probe.sequence) bytes=\(probe.bytes ?? 0) time=\(rtt) ms"
            }
            return (["PING \(target) (\(report.to))"] + lines).joined(separator: "\n")
        }
    }
}

struct SendMessage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-message", abstract: "Send a message to a node's data-exchange port (1001), and wait for its reply if asked.",
        discussion: """
            Every message carries a new message id (message_id in --json). --wait takes the reply             from that node whose reply_to is that id, never one naming another message; a reply             without reply_to is matched by sender and arrival (held 0.75 s when the node is known             to name what its replies answer). --wait alone waits 30s, counted from the receiver's             acknowledgement.
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Option(help: "The message (- reads standard input).") var data: String?
    @Option(help: "Read the message from this file (with your rights).") var dataFile: String?
    @Option(help: "text, json or binary.") var type = MessageType.text.rawValue
    @Option(help: "Send it this many times, each with its own id.") var count = 1
    @Option(help: "Answer this message: its message_id, or its inbox id.") var replyTo: String?
    @Option(help: "Wait this long for the reply (30s, 500ms, 2m; --wait alone: 30s).") var wait: String?

    typealias MessageType = MessageControl.MessageType

    /// What `--wait` alone means.
    static let defaultWait = "30s"

    func validate() throws {
        guard (data == nil) != (dataFile == nil) else { throw ValidationError("give --data or --data-file, one of them") }
        guard (1...10_000).contains(count) else { throw ValidationError("--count must be 1 to 10000") }
        if let wait {
            guard let milliseconds = Self.milliseconds(wait), (1...MessageControl.SendMessage.longestWait).contains(milliseconds) else {
                throw ValidationError("--wait takes a duration from 1ms to 10m, such as 30s or 500ms, not \(wait)")
            }
        }
    }

    func run() throws {
        let body = try global.checked { () throws(ControlFailure) in try message() }
        let kind = try global.checked { () throws(ControlFailure) in try MessageType(parsing: type) }
        let socket = try global.identitySocket()
        for sequence in 0..<count {
            let last = sequence == count - 1
            let request = MessageControl.SendMessage(
                target: target, bytes: body, type: kind, replyTo: replyTo, wait: last ? wait.flatMap(Self.milliseconds) : nil)
            var sent = try global.call(request, on: socket)
            sent.sequence = sequence
            // One JSON document: the last send's (its seq tells how many went before).
            if global.json {
                if last { print(ControlReply.ok(sent.json).json.encodedString()) }
                continue
            }
            print("sent \(sent.bytes) bytes to \(sent.to) (message \(sent.messageID)): \(sent.ack)")
            if let reply = sent.reply {
                print("reply from \(reply.from) (\(reply.type), \(reply.bytes) bytes): \(reply.text ?? reply.base64 ?? "")")
            }
        }
    }

    /// The message's bytes: `--data`, standard input, or `--data-file`.
    private func message() throws(ControlFailure) -> [UInt8] {
        if let dataFile {
            guard let contents = FileManager.default.contents(atPath: dataFile) else {
                throw ControlFailure(.notFound, "cannot read \(dataFile)")
            }
            return Array(contents)
        }
        if data == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        return Array((data ?? "").utf8)
    }

    /// `arguments` with `--wait` given its value when it stands alone (at the end, or before
    /// another option), as the reference's `--wait [<dur>]`.
    static func filledWait(_ arguments: [String]) -> [String] {
        guard arguments.first == "send-message" || arguments.contains("send-message") else { return arguments }
        var filled: [String] = []
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        for (index, word) in arguments.enumerated() {
            filled.append(word)
            guard index < end, word == "--wait" else { continue }
            let next = index + 1 < end ? arguments[index + 1] : nil
            if next.map({ milliseconds($0) == nil }) ?? true { filled.append(defaultWait) }
        }
        return filled
    }

    /// A duration as Go writes it (`1m30s`, `500ms`, `2h`), or a bare number of seconds, in
    /// milliseconds; nil if it is neither.
    static func milliseconds(_ text: String) -> Int? {
        if let seconds = Double(text), seconds >= 0 { return Int(seconds * 1000) }
        let units: [(String, Double)] = [("ms", 1), ("us", 0.001), ("µs", 0.001), ("ns", 0.000_001), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
        var rest = Substring(text)
        var total = 0.0
        guard !rest.isEmpty else { return nil }
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return total > Double(Int.max / 2) ? nil : Int(total.rounded())
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stream MB mebibytes through a node's echo port and time it.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument var megabytes = 1

    func run() throws {
        let request = DataControl.Bench(target: target, megabytes: megabytes)
        try global.run(request, on: try global.identitySocket()) { report in
            "\(megabytes) MB to \(report.to) and back in \(report.seconds) s: \(report.megabytesPerSecond) MB/s"
        }
    }
}

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open a stream to a port, send data, print one answer.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument var port: Int
    @Option(help: "What to send.") var data: String
    @Option(help: "Seconds to wait for an answer.") var timeout = 5

    func run() throws {
        let request = DataControl.Send(
            target: target, port: try global.port(port, for: DataControl.Send.self),
            data: data, timeout: timeout)
        try global.run(request, on: try global.identitySocket()) { sent in "sent \(sent.bytes) bytes" + (sent.reply.map { "\n\($0)" } ?? "") }
    }
}

struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open a stream (default port 1000), send a message, print one answer.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument var port = 1000
    @Option(help: "What to send.") var message: String
    @Option(help: "Seconds to wait for an answer.") var timeout = 30

    func run() throws {
        let request = DataControl.Send(
            target: target, port: try global.port(port, for: DataControl.Send.self),
            data: message, timeout: timeout)
        try global.run(request, on: try global.identitySocket()) { sent in sent.reply ?? "(no answer)" }
    }
}

struct Listen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the datagrams that arrive on a port.")
    @OptionGroup var global: GlobalOptions
    @Argument var port: Int
    @Option(help: "How many datagrams.") var count = 1
    @Option(help: "Seconds to wait.") var timeout = 30

    func run() throws {
        let request = DataControl.Listen(
            port: try global.port(port, for: DataControl.Listen.self), count: count, timeout: timeout)
        try global.run(request, on: try global.identitySocket()) { report in
            guard !report.arrivals.isEmpty else { return "nothing arrived" }
            return report.arrivals.map { "\($0.from):\($0.port): \($0.data)" }.joined(separator: "\n")
        }
    }
}

struct SendDatagram: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-datagram", abstract: "Send one datagram to a node's port.", aliases: ["dgram"])
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument var port: Int
    @Option(help: "What to send.") var data: String

    func run() throws {
        let request = DataControl.SendDatagram(
            target: target, port: try global.port(port, for: DataControl.SendDatagram.self), data: data)
        try global.run(request, on: try global.identitySocket()) { sent in "sent \(sent.bytes) bytes" }
    }
}

struct Recv: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accept streams on a port and print what each sends first.")
    @OptionGroup var global: GlobalOptions
    @Argument var port: Int
    @Option(help: "How many streams to accept.") var count = 1
    @Option(help: "Seconds to wait.") var timeout = 30

    func run() throws {
        let request = DataControl.Receive(
            port: try global.port(port, for: DataControl.Receive.self), count: count, timeout: timeout)
        try global.run(request, on: try global.identitySocket()) { report in
            guard !report.arrivals.isEmpty else { return "nothing arrived" }
            return report.arrivals.map { "\($0.from): \($0.data)" }.joined(separator: "\n")
        }
    }
}

struct Connections: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "This identity's streams.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        let socket = try global.identitySocket()
        try global.runPages(DataControl.Connections.self, on: socket, next: \.next, join: { $0.connections += $1.connections; $0.next = $1.next }) { list in
            guard !list.connections.isEmpty else { return "no connections" }
            return list.connections.map { row in
                let stream = "\(row.figures["id"].map { "#\($0)  " } ?? ""):\(row.localPort) ↔ \(row.remoteAddress):\(row.remotePort)  \(row.state)"
                let shown = ["snd_una", "snd_nxt", "rcv_nxt", "in_flight", "retransmits", "since_progress_ms"].compactMap { key in row.figures[key].map { "\(key) \($0)" } }
                let sacked = row.sacked.map { $0.isEmpty ? [] : ["sacked \($0.joined(separator: ","))"] } ?? []
                return ([stream] + shown + sacked).joined(separator: "  ")
            }.joined(separator: "\n")
        }
    }
}

/// 1.18's `traceroute`: a stream to the node's echo port, its setup time and three round trips.
struct Traceroute: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time the setup of a stream to a node and three round trips on it; say the path.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Option(help: "Deadline for all of it (30s, 500ms, 2m).") var timeout = "30s"

    func validate() throws {
        guard let milliseconds = SendMessage.milliseconds(timeout), (1...300_000).contains(milliseconds) else {
            throw ValidationError("--timeout takes a duration from 1ms to 5m, such as 30s, not \(timeout)")
        }
    }

    func run() throws {
        let request = DataControl.Traceroute(target: target, timeout: SendMessage.milliseconds(timeout))
        try global.run(request, on: try global.identitySocket()) { report in
            let samples = report.samples.map { String(format: "%.3f ms", $0.milliseconds) }.joined(separator: "  ")
            return "traceroute to \(report.to) (\(report.target)), \(report.path): setup \(String(format: "%.3f", report.setupMilliseconds)) ms, round trips \(samples)"
        }
    }
}

/// 1.18's `disconnect`: closes one of this identity's streams, by its id in `connections`.
struct Disconnect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Close one of this identity's streams (its id in connections); the peer gets a FIN.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The stream's id, as pilotctl connections shows it.") var id: Int
    func run() throws {
        let request = try global.checked { () throws(ControlFailure) in
            try DataControl.Disconnect(fields: ControlFields(["conn_id": .integer(Int64(id))], context: DataControl.Disconnect.name))
        }
        try global.run(request, on: try global.identitySocket()) { _ in "closed stream \(id)" }
    }
}

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The nodes this identity has an encrypted tunnel with.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        let socket = try global.identitySocket()
        try global.runPages(DataControl.Peers.self, on: socket, next: \.next, join: { $0.peers += $1.peers; $0.next = $1.next }) { list in
            guard !list.peers.isEmpty else { return "no peers" }
            return list.peers.map { row in
                let endpoint = row.endpoint.isEmpty ? "-" : row.endpoint
                return "\(row.address)  \(endpoint)  \(row.trusted ? "trusted" : "not trusted")  \(row.path) for \(Int(row.pathSeconds)) s"
            }.joined(separator: "\n")
        }
    }
}

/// 1.18's `prefer-direct`: a session relayed through the beacon is tried directly at once.
struct PreferDirect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prefer-direct", abstract: "Try a peer relayed through the beacon directly again, now.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A node id, an address or a hostname.") var peer: String
    func run() throws {
        try global.run(IdentityControl.PreferDirect(peer: peer), on: try global.identitySocket()) { report in
            let path = !report.hadTunnel ? "no tunnel" : report.wasRelayActive ? "relayed" : "direct"
            let attempt = report.directAttempt ? ", trying direct now" : ""
            let resolve = report.resolveError.isEmpty ? "" : "\nregistry: \(report.resolveError)"
            return "node \(report.nodeID): \(path)\(attempt)\(resolve)"
        }
    }
}
