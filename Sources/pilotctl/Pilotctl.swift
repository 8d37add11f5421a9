import ArgumentParser
import Foundation
import PilotClient
import PilotWire

/// pilotctl: talks to pilot-host's admin socket and to an identity's own socket.
@main
struct Pilotctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilotctl", abstract: "Control pilot-host and its identities.",
        subcommands: [
            IdentityCommand.self, InfoCommand.self, SetHostname.self, ClearHostname.self, SetTags.self, ClearTags.self,
            SetPublic.self, SetPrivate.self, Lookup.self, Find.self, Ping.self,
            Handshake.self, Pending.self, Approve.self, Reject.self, Untrust.self, TrustList.self, SendMessage.self, Inbox.self, SendFile.self, Received.self, Subscribe.self, Publish.self, Bench.self, Connections.self, Peers.self, Send.self, Connect.self, Recv.self, Listen.self, SendDatagram.self,
            NetworkCommand.self, Broadcast.self,
        ])
}

struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print the reference pilotctl's JSON envelope.") var json = false
    @Option(help: "Identity to act as (or $PILOT_IDENTITY).") var identity: String?
    @Option(help: "pilot-host's runtime directory (or $PILOT_RUNTIME_DIR).") var runtimeDir: String?

    var runtime: String {
        runtimeDir ?? ProcessInfo.processInfo.environment["PILOT_RUNTIME_DIR"] ?? "/run/pilot-host"
    }

    /// The identity named on the command line or in the environment, else the only identity
    /// socket this caller may open.
    func identitySocket() throws -> String {
        if let name = identity ?? ProcessInfo.processInfo.environment["PILOT_IDENTITY"] {
            return runtime + "/id/\(name).sock"
        }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: runtime + "/id")) ?? [])
            .filter { $0.hasSuffix(".sock") }.map { String($0.dropLast(5)) }.sorted()
        let usable = names.filter { access(runtime + "/id/\($0).sock", R_OK | W_OK) == 0 }
        guard usable.count == 1, let only = usable.first else {
            throw ControlClientError(
                usable.isEmpty
                    ? "no identity socket you may use under \(runtime)/id; name one with --identity"
                    : "several identities are yours (\(usable.joined(separator: ", "))): pick one with --identity")
        }
        return runtime + "/id/\(only).sock"
    }

    /// Sends `command` to `socket`, prints the reply (with --json, as it came), and exits 1 on
    /// an error reply.
    func run<Command: ControlCommand>(_ command: Command, on socket: String, text: (Command.Reply) -> String) throws {
        let reply = self.reply(command.request, on: socket)
        let data = try decode(reply, of: Command.self)
        print(json ? reply.json.encodedString() : text(data))
    }

    /// The data of `command`'s reply; an error reply is printed and exits 1.
    func call<Command: ControlCommand>(_ command: Command, on socket: String) throws -> Command.Reply {
        try decode(self.reply(command.request, on: socket), of: Command.self)
    }

    /// The value `check` gives; its failure is printed as an error reply and exits 1.
    func checked<Value>(_ check: () throws(ControlFailure) -> Value) throws -> Value {
        do {
            return try check()
        } catch {
            try fail(.error(error))
        }
    }

    /// `value` as `Command`'s port, checked as the host checks it.
    func port<Command: ControlCommand>(_ value: Int, for command: Command.Type) throws -> UInt16 {
        try checked { () throws(ControlFailure) in try ControlFields.port(value, of: Command.name) }
    }

    /// `value` as `Command`'s network id, checked as the host checks it.
    func networkID<Command: ControlCommand>(_ value: Int, for command: Command.Type) throws -> UInt16 {
        try checked { () throws(ControlFailure) in try ControlFields.networkID(value, of: Command.name) }
    }

    /// The typed data of `reply`; an error reply, or data that is not the command's, is printed
    /// and exits 1.
    private func decode<Command: ControlCommand>(_ reply: ControlReply, of command: Command.Type) throws -> Command.Reply {
        do {
            return try Command.data(of: reply)
        } catch {
            try fail(.error(error))
        }
    }

    /// Prints an error reply (as the reference's JSON envelope with --json) and exits 1.
    func fail(_ reply: ControlReply) throws -> Never {
        let message: String
        if case .error(let failure) = reply, !json { message = "error: \(failure.message)" } else { message = reply.json.encodedString() }
        FileHandle.standardError.write(Data((message + "\n").utf8))
        throw ExitCode(1)
    }

    /// `request`'s reply from `socket`; a socket that cannot be reached becomes an error reply.
    func reply(_ request: ControlRequest, on socket: String) -> ControlReply {
        do {
            return try ControlConnection(path: socket).request(request)
        } catch let error as ControlClientError {
            // The host runs (its admin socket is there) but this identity's socket is not: no such identity.
            let missing = socket.hasPrefix(runtime + "/id/") && !FileManager.default.fileExists(atPath: socket)
                && FileManager.default.fileExists(atPath: runtime + "/admin.sock")
            if missing {
                return .error(ControlFailure(.notFound, "no identity named \(socket.dropFirst(runtime.count + 4).dropLast(5)) on this host"))
            }
            return .error(ControlFailure(error.permission ? .permissionDenied : .notRunning, error.description))
        } catch {
            return .error(ControlFailure(.notRunning, "\(error)"))
        }
    }
}

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show this identity.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(IdentityControl.Info(), on: try global.identitySocket(), text: IdentityCommand.describe)
    }
}

/// Runs `command` on the chosen identity's socket and prints the identity as it is afterwards.
private func identityChange<Command: ControlCommand>(_ global: GlobalOptions, _ command: Command) throws where Command.Reply == IdentityInfo {
    try global.run(command, on: try global.identitySocket(), text: IdentityCommand.describe)
}

struct SetHostname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-hostname", abstract: "Set this identity's hostname.")
    @OptionGroup var global: GlobalOptions
    @Argument var hostname: String
    func run() throws { try identityChange(global, IdentityControl.SetHostname(hostname: hostname)) }
}

struct ClearHostname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear-hostname", abstract: "Remove this identity's hostname.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.ClearHostname()) }
}

struct SetTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-tags", abstract: "Replace this identity's tags.")
    @OptionGroup var global: GlobalOptions
    @Argument var tags: [String]
    func run() throws { try identityChange(global, IdentityControl.SetTags(tags: tags)) }
}

struct ClearTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear-tags", abstract: "Remove this identity's tags.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.ClearTags()) }
}

struct SetPublic: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-public", abstract: "Let any node resolve this identity's endpoint.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.SetPublic()) }
}

struct SetPrivate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-private", abstract: "Show this identity's endpoint only to trusted peers.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.SetPrivate()) }
}

/// Prints a registry answer as `key: value` lines.
private func fields(_ data: ControlData) -> String {
    data.values.keys.sorted().map { key in
        let value = data[key] ?? .null
        return "\(key): \(value.stringValue ?? value.encodedString())"
    }.joined(separator: "\n")
}

struct Lookup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Look a node up in the registry by node id or address.")
    @OptionGroup var global: GlobalOptions
    @Argument var target: String
    func run() throws {
        try global.run(IdentityControl.Lookup(target: target), on: try global.identitySocket(), text: fields)
    }
}

struct Find: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Find a node's address by hostname.")
    @OptionGroup var global: GlobalOptions
    @Argument var hostname: String
    func run() throws {
        try global.run(IdentityControl.Find(hostname: hostname), on: try global.identitySocket(), text: fields)
    }
}

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
    static let configuration = CommandConfiguration(commandName: "send-datagram", abstract: "Send one datagram to a node's port.")
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
            return list.peers.map { row in "\(row.address)  \(row.endpoint)  \(row.trusted ? "trusted" : "not trusted")" }
                .joined(separator: "\n")
        }
    }
}

struct Inbox: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Messages that arrived on this identity's data-exchange port.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Delete them after listing.") var clear = false

    func run() throws {
        try global.run(MessageControl.Inbox(clear: clear), on: try global.identitySocket()) { inbox in
            guard !inbox.messages.isEmpty else { return "inbox is empty" }
            return inbox.messages.map { message in
                let body = message.text ?? "(\(message.bytes) bytes, base64 in --json)"
                return "\(message.receivedAt)  \(message.from)  \(message.type)  \(body)"
            }.joined(separator: "\n")
        }
    }
}

struct Subscribe: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Subscribe to a topic on a node's event stream (1002) and print its events.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument(help: "The topic (* for every topic).") var topic: String
    @Option(help: "Stop after this many events.") var count = 1
    @Option(help: "Seconds to wait for them.") var timeout = 30

    func run() throws {
        let request = MessageControl.Subscribe(target: target, topic: topic, count: count, timeout: timeout)
        try global.run(request, on: try global.identitySocket()) { received in
            let lines = received.events.map { "[\($0.topic)] \($0.data)" }
            return (lines + (received.timeout ? ["(\(received.events.count) of \(count) events before the timeout)"] : [])).joined(separator: "\n")
        }
    }
}

struct Publish: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish an event to a topic on a node's event stream (1002).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument var topic: String
    @Option(help: "The event.") var data: String

    func run() throws {
        let request = MessageControl.Publish(target: target, topic: topic, data: data)
        try global.run(request, on: try global.identitySocket()) { published in
            "published \(published.bytes) bytes to \(topic) on \(published.target)"
        }
    }
}

struct SendFile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-file", abstract: "Send a file (at most 16 MiB) to a node's data-exchange port (1001).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument(help: "The file; read with your rights, not the host's.") var path: String

    func run() throws {
        let socket = try global.identitySocket()
        guard let contents = FileManager.default.contents(atPath: path) else {
            try global.fail(.error(ControlFailure(.invalidArgument, "cannot read \(path)")))
        }
        let name = (path as NSString).lastPathComponent
        let upload = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        var offset = 0
        repeat {
            let piece = contents[offset..<min(offset + FileChunk.size, contents.count)]
            _ = try global.call(
                MessageControl.Upload(upload: upload, size: contents.count, offset: offset, data: Base64.encode(piece)), on: socket)
            offset += piece.count
        } while offset < contents.count
        let request = MessageControl.SendFile(target: target, file: name, upload: upload)
        try global.run(request, on: socket) { sent in "sent \(name) (\(sent.bytes) bytes) to \(sent.to): \(sent.ack)" }
    }
}

struct Received: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Files that arrived on this identity's data-exchange port.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Write them into this directory (with your rights), as NAME, or NAME-ID if NAME is taken.") var save: String?
    @Flag(help: "Delete them from the host after listing (and saving).") var clear = false

    func run() throws {
        let socket = try global.identitySocket()
        var listing = try global.call(MessageControl.Received(clear: clear && save == nil), on: socket)
        if let save {
            var files: [ReceivedFiles.File] = []
            for var file in listing.files {
                var contents = Data()
                while contents.count < file.bytes {
                    let chunk = try global.call(MessageControl.ReceivedChunk(id: file.id, offset: contents.count), on: socket)
                    guard let bytes = try? Base64.decode(chunk.data), !bytes.isEmpty else { break }
                    contents += bytes
                }
                var path = (save as NSString).appendingPathComponent(file.name)
                if FileManager.default.fileExists(atPath: path) { path += "-\(file.id)" }
                guard FileManager.default.createFile(atPath: path, contents: contents) else {
                    try global.fail(.error(ControlFailure(.invalidArgument, "cannot write \(path)")))
                }
                file.savedTo = path
                files.append(file)
            }
            listing = ReceivedFiles(files: files)
            if clear { _ = try global.call(MessageControl.Received(clear: true), on: socket) }
        }
        let reply = ControlReply.ok(listing.json)
        guard !global.json else { return print(reply.json.encodedString()) }
        print(listing.files.isEmpty ? "no files received" : listing.files.map { file in
            "\(file.receivedAt)  \(file.from)  \(file.name)  \(file.bytes) bytes\(file.savedTo.map { "  -> \($0)" } ?? "")"
        }.joined(separator: "\n"))
    }
}

/// Unix seconds as a readable UTC time.
private func time(_ seconds: Int64) -> String {
    ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
}

/// Prints a trust command's status line.
private func status(_ change: TrustChange) -> String {
    "\(change.status): node \(change.nodeID)"
}

struct Handshake: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a node for trust, with a reason.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var peer: String
    @Argument var reason: String = ""
    func run() throws {
        try global.run(TrustControl.Handshake(peer: peer, reason: reason), on: try global.identitySocket(), text: status)
    }
}

struct Pending: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Handshake requests waiting for approval.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(TrustControl.Pending(), on: try global.identitySocket()) { data in
            guard !data.pending.isEmpty else { return "no pending requests" }
            return data.pending.map { entry in "node \(entry.nodeID)  \(time(entry.receivedAt))  \(entry.justification)" }
                .joined(separator: "\n")
        }
    }
}

struct Approve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Approve a pending handshake request.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    func run() throws {
        try global.run(TrustControl.Approve(peer: peer), on: try global.identitySocket(), text: status)
    }
}

struct Reject: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reject a pending handshake request.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    @Argument var reason: String = ""
    func run() throws {
        try global.run(TrustControl.Reject(peer: peer, reason: reason), on: try global.identitySocket(), text: status)
    }
}

struct Untrust: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke the trust of a node.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    func run() throws {
        try global.run(TrustControl.Untrust(peer: peer), on: try global.identitySocket(), text: status)
    }
}

struct TrustList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "trust", abstract: "The nodes this identity trusts.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(TrustControl.Trusted(), on: try global.identitySocket()) { data in
            guard !data.trusted.isEmpty else { return "no trusted nodes" }
            return data.trusted.map { entry in "node \(entry.nodeID)  since \(time(entry.approvedAt))\(entry.mutual ? "  mutual" : "")" }
                .joined(separator: "\n")
        }
    }
}

struct IdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity", abstract: "Manage identities (admin socket).",
        subcommands: [Create.self, List.self, Show.self, Delete.self, SetOwner.self])

    static func describe(_ identity: IdentityInfo) -> String {
        let groups = identity.groups.map(String.init).joined(separator: ",")
        let tags = identity.tags.joined(separator: ",")
        return """
            \(identity.name)  \(identity.address)
              owner     \(identity.owner) (uid \(identity.ownerUID))\(groups.isEmpty ? "" : ", groups \(groups)")
              hostname  \(identity.hostname ?? "-")
              tags      \(tags.isEmpty ? "-" : tags)
              public    \(identity.isPublic ? "yes" : "no")\(identity.isEphemeral ? ", ephemeral" : "")\(identity.autoApprove ? ", auto-approve" : "")
            """
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an identity, register it, and print its address.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Option(help: "Owner (user name or uid); default: the caller.") var owner: String?
        @Option(help: "A group whose members may also use it (repeatable).") var group: [String] = []
        @Option var hostname: String?
        @Option(help: "Comma-separated tags.") var tags: String?
        @Flag var `public` = false
        @Flag(help: "Deregister and delete it when pilot-host stops.") var ephemeral = false
        @Flag(help: "Trust every node that asks (a service identity).") var autoApprove = false

        func run() throws {
            let command = AdminControl.CreateIdentity(
                identity: name, owner: owner ?? String(getuid()), groups: group, hostname: hostname,
                tags: tags.map { $0.split(separator: ",").map(String.init) }, isPublic: self.public, isEphemeral: ephemeral,
                autoApprove: autoApprove)
            try global.run(command, on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List identities.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try global.run(AdminControl.ListIdentities(), on: global.runtime + "/admin.sock") { data in
                guard !data.identities.isEmpty else { return "no identities" }
                return data.identities.map { row in "\(row.name)\t\(row.address)\t\(row.owner)\t\(row.hostname ?? "-")" }
                    .joined(separator: "\n")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one identity.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(AdminControl.ShowIdentity(identity: name), on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deregister and delete an identity.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(AdminControl.DeleteIdentity(identity: name), on: global.runtime + "/admin.sock") { _ in "deleted \(name)" }
        }
    }

    struct SetOwner: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-owner", abstract: "Give an identity to another user.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var user: String

        func run() throws {
            try global.run(
                AdminControl.SetOwner(identity: name, owner: user), on: global.runtime + "/admin.sock",
                text: IdentityCommand.describe)
        }
    }
}
