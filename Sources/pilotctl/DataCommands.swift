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
    static let configuration = CommandConfiguration(commandName: "send-message", abstract: "Send a message to a node's data-exchange port (1001).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Option(help: "The message (- reads standard input).") var data: String
    @Option(help: "text, json or binary.") var type = MessageControl.MessageType.text.rawValue

    func run() throws {
        let body = data == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : data
        let kind = try global.checked { () throws(ControlFailure) in try MessageControl.MessageType(parsing: type) }
        let request = MessageControl.SendMessage(target: target, data: body, type: kind)
        try global.run(request, on: try global.identitySocket()) { sent in "sent \(sent.bytes) bytes to \(sent.to): \(sent.ack)" }
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
        try global.run(DataControl.Connections(), on: try global.identitySocket()) { list in
            guard !list.connections.isEmpty else { return "no connections" }
            return list.connections.map { row in ":\(row.localPort) ↔ \(row.remoteAddress):\(row.remotePort)  \(row.state)" }
                .joined(separator: "\n")
        }
    }
}

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The nodes this identity has an encrypted tunnel with.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(DataControl.Peers(), on: try global.identitySocket()) { list in
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
