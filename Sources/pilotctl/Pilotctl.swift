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

    /// Sends `request` to `socket`, prints the reply, and exits 1 on an error reply.
    func run(_ request: ControlRequest, on socket: String, text: (JSON) -> String) throws {
        let reply = self.reply(request, on: socket)
        guard case .ok(let data) = reply else { try fail(reply) }
        print(json ? reply.json.encodedString() : text(data))
    }

    /// The data of `request`'s reply; an error reply is printed and exits 1.
    func call(_ request: ControlRequest, on socket: String) throws -> JSON {
        let reply = self.reply(request, on: socket)
        guard case .ok(let data) = reply else { try fail(reply) }
        return data
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
        try global.run(ControlRequest("info"), on: try global.identitySocket(), text: IdentityCommand.describe)
    }
}

/// Runs `command` on the chosen identity's socket and prints the identity as it is afterwards.
private func identityChange(_ global: GlobalOptions, _ command: String, _ arguments: [String: JSON] = [:]) throws {
    try global.run(ControlRequest(command, arguments), on: try global.identitySocket(), text: IdentityCommand.describe)
}

struct SetHostname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-hostname", abstract: "Set this identity's hostname.")
    @OptionGroup var global: GlobalOptions
    @Argument var hostname: String
    func run() throws { try identityChange(global, "set-hostname", ["hostname": .string(hostname)]) }
}

struct ClearHostname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear-hostname", abstract: "Remove this identity's hostname.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, "clear-hostname") }
}

struct SetTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-tags", abstract: "Replace this identity's tags.")
    @OptionGroup var global: GlobalOptions
    @Argument var tags: [String]
    func run() throws { try identityChange(global, "set-tags", ["tags": .array(tags.map(JSON.string))]) }
}

struct ClearTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear-tags", abstract: "Remove this identity's tags.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, "clear-tags") }
}

struct SetPublic: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-public", abstract: "Let any node resolve this identity's endpoint.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, "set-public") }
}

struct SetPrivate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-private", abstract: "Show this identity's endpoint only to trusted peers.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, "set-private") }
}

/// Prints a registry answer as `key: value` lines.
private func fields(_ data: JSON) -> String {
    (data.objectValue ?? [:]).keys.sorted().map { key in
        let value = data[key] ?? .null
        return "\(key): \(value.stringValue ?? value.encodedString())"
    }.joined(separator: "\n")
}

struct Lookup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Look a node up in the registry by node id or address.")
    @OptionGroup var global: GlobalOptions
    @Argument var target: String
    func run() throws {
        try global.run(ControlRequest("lookup", ["target": .string(target)]), on: try global.identitySocket(), text: fields)
    }
}

struct Find: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Find a node's address by hostname.")
    @OptionGroup var global: GlobalOptions
    @Argument var hostname: String
    func run() throws {
        try global.run(ControlRequest("find", ["hostname": .string(hostname)]), on: try global.identitySocket(), text: fields)
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
        let request = ControlRequest(
            "ping", ["target": .string(target), "count": .integer(Int64(count)), "timeout": .integer(Int64(timeout))])
        try global.run(request, on: try global.identitySocket()) { data in
            let to = data["to"]?.stringValue ?? target
            let lines = (data["results"]?.arrayValue ?? []).map { result in
                let sequence = result["seq"]?.integerValue ?? -1
                if let error = result["error"]?.stringValue { return "seq=\(sequence): \(error)" }
                let rtt = result["rtt_ms"]?.doubleValue ?? 0
                return "reply from \(to): seq=\(sequence) bytes=\(result["bytes"]?.integerValue ?? 0) time=\(String(format: "%.3f", rtt)) ms"
            }
            return (["PING \(target) (\(to))"] + lines).joined(separator: "\n")
        }
    }
}

struct SendMessage: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "send-message", abstract: "Send a message to a node's data-exchange port (1001).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Option(help: "The message (- reads standard input).") var data: String
    @Option(help: "text, json or binary.") var type = "text"

    func run() throws {
        let body = data == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : data
        let request = ControlRequest("send-message", ["target": .string(target), "data": .string(body), "type": .string(type)])
        try global.run(request, on: try global.identitySocket()) { data in
            "sent \(data["bytes"]?.integerValue ?? 0) bytes to \(data["to"]?.stringValue ?? target): \(data["ack"]?.stringValue ?? "")"
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stream MB mebibytes through a node's echo port and time it.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument var megabytes = 1

    func run() throws {
        let request = ControlRequest("bench", ["target": .string(target), "megabytes": .integer(Int64(megabytes))])
        try global.run(request, on: try global.identitySocket()) { data in
            "\(megabytes) MB to \(data["to"]?.stringValue ?? target) and back in \(data["seconds"]?.doubleValue ?? 0) s: \(data["mb_per_second"]?.doubleValue ?? 0) MB/s"
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
        let request = ControlRequest(
            "send", ["target": .string(target), "port": .integer(Int64(port)), "data": .string(data), "timeout": .integer(Int64(timeout))])
        try global.run(request, on: try global.identitySocket()) { data in
            "sent \(data["bytes"]?.integerValue ?? 0) bytes" + (data["reply"]?.stringValue.map { "\n\($0)" } ?? "")
        }
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
        let request = ControlRequest(
            "send", ["target": .string(target), "port": .integer(Int64(port)), "data": .string(message), "timeout": .integer(Int64(timeout))])
        try global.run(request, on: try global.identitySocket()) { data in data["reply"]?.stringValue ?? "(no answer)" }
    }
}

struct Listen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the datagrams that arrive on a port.")
    @OptionGroup var global: GlobalOptions
    @Argument var port: Int
    @Option(help: "How many datagrams.") var count = 1
    @Option(help: "Seconds to wait.") var timeout = 30

    func run() throws {
        let request = ControlRequest("listen", ["port": .integer(Int64(port)), "count": .integer(Int64(count)), "timeout": .integer(Int64(timeout))])
        try global.run(request, on: try global.identitySocket()) { data in
            let datagrams = data["datagrams"]?.arrayValue ?? []
            guard !datagrams.isEmpty else { return "nothing arrived" }
            return datagrams.map { "\($0["from"]?.stringValue ?? "?"):\($0["src_port"]?.integerValue ?? 0): \($0["data"]?.stringValue ?? "")" }
                .joined(separator: "\n")
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
        let request = ControlRequest("send-datagram", ["target": .string(target), "port": .integer(Int64(port)), "data": .string(data)])
        try global.run(request, on: try global.identitySocket()) { data in "sent \(data["bytes"]?.integerValue ?? 0) bytes" }
    }
}

struct Recv: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Accept streams on a port and print what each sends first.")
    @OptionGroup var global: GlobalOptions
    @Argument var port: Int
    @Option(help: "How many streams to accept.") var count = 1
    @Option(help: "Seconds to wait.") var timeout = 30

    func run() throws {
        let request = ControlRequest("recv", ["port": .integer(Int64(port)), "count": .integer(Int64(count)), "timeout": .integer(Int64(timeout))])
        try global.run(request, on: try global.identitySocket()) { data in
            let messages = data["messages"]?.arrayValue ?? []
            guard !messages.isEmpty else { return "nothing arrived" }
            return messages.map { "\($0["from"]?.stringValue ?? "?"): \($0["data"]?.stringValue ?? "")" }.joined(separator: "\n")
        }
    }
}

struct Connections: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "This identity's streams.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(ControlRequest("connections"), on: try global.identitySocket()) { data in
            let rows = data["connections"]?.arrayValue ?? []
            guard !rows.isEmpty else { return "no connections" }
            return rows.map { row in
                ":\(row["local_port"]?.integerValue ?? 0) ↔ \(row["remote_addr"]?.stringValue ?? "?"):\(row["remote_port"]?.integerValue ?? 0)  \(row["state"]?.stringValue ?? "?")"
            }.joined(separator: "\n")
        }
    }
}

struct Peers: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The nodes this identity has an encrypted tunnel with.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(ControlRequest("peers"), on: try global.identitySocket()) { data in
            let rows = data["peers"]?.arrayValue ?? []
            guard !rows.isEmpty else { return "no peers" }
            return rows.map { row in
                "\(row["address"]?.stringValue ?? "?")  \(row["endpoint"]?.stringValue ?? "")  \(row["trusted"]?.boolValue == true ? "trusted" : "not trusted")"
            }.joined(separator: "\n")
        }
    }
}

struct Inbox: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Messages that arrived on this identity's data-exchange port.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Delete them after listing.") var clear = false

    func run() throws {
        try global.run(ControlRequest("inbox", ["clear": .bool(clear)]), on: try global.identitySocket()) { data in
            let messages = data["messages"]?.arrayValue ?? []
            guard !messages.isEmpty else { return "inbox is empty" }
            return messages.map { message in
                let body = message["data"]?.stringValue ?? "(\(message["bytes"]?.integerValue ?? 0) bytes, base64 in --json)"
                return "\(message["received_at"]?.stringValue ?? "?")  \(message["from"]?.stringValue ?? "?")  \(message["type"]?.stringValue ?? "?")  \(body)"
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
        let request = ControlRequest(
            "subscribe",
            ["target": .string(target), "topic": .string(topic), "count": .integer(Int64(count)), "timeout": .integer(Int64(timeout))])
        try global.run(request, on: try global.identitySocket()) { data in
            let events = data["events"]?.arrayValue ?? []
            let lines = events.map { "[\($0["topic"]?.stringValue ?? "?")] \($0["data"]?.stringValue ?? "")" }
            return (lines + (data["timeout"] == true ? ["(\(events.count) of \(count) events before the timeout)"] : [])).joined(separator: "\n")
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
        let request = ControlRequest("publish", ["target": .string(target), "topic": .string(topic), "data": .string(data)])
        try global.run(request, on: try global.identitySocket()) { data in
            "published \(data["bytes"]?.integerValue ?? 0) bytes to \(topic) on \(data["target"]?.stringValue ?? target)"
        }
    }
}

struct SendFile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-file", abstract: "Send a file (at most 16 MiB) to a node's data-exchange port (1001).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var target: String
    @Argument(help: "The file; read with your rights, not the host's.") var path: String

    /// Bytes per upload request (base64 makes them a third larger; a frame holds 1 MiB).
    static let chunk = 512 << 10

    func run() throws {
        let socket = try global.identitySocket()
        guard let contents = FileManager.default.contents(atPath: path) else {
            try global.fail(.error(ControlFailure(.invalidArgument, "cannot read \(path)")))
        }
        let name = (path as NSString).lastPathComponent
        let upload = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        var offset = 0
        repeat {
            let piece = contents[offset..<min(offset + Self.chunk, contents.count)]
            _ = try global.call(
                ControlRequest("upload", [
                    "upload": .string(upload), "size": .integer(Int64(contents.count)), "offset": .integer(Int64(offset)),
                    "data": .string(Base64.encode(piece)),
                ]), on: socket)
            offset += piece.count
        } while offset < contents.count
        let request = ControlRequest("send-file", ["target": .string(target), "name": .string(name), "upload": .string(upload)])
        try global.run(request, on: socket) { data in
            "sent \(name) (\(data["bytes"]?.integerValue ?? 0) bytes) to \(data["to"]?.stringValue ?? target): \(data["ack"]?.stringValue ?? "")"
        }
    }
}

struct Received: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Files that arrived on this identity's data-exchange port.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Write them into this directory (with your rights), as NAME, or NAME-ID if NAME is taken.") var save: String?
    @Flag(help: "Delete them from the host after listing (and saving).") var clear = false

    func run() throws {
        let socket = try global.identitySocket()
        var listing = try global.call(ControlRequest("received", ["clear": .bool(clear && save == nil)]), on: socket)
        if let save {
            var files: [JSON] = []
            for file in listing["files"]?.arrayValue ?? [] {
                guard let id = file["id"]?.integerValue, let name = file["name"]?.stringValue, let size = file["bytes"]?.integerValue else { continue }
                var contents = Data()
                while contents.count < size {
                    let chunk = try global.call(ControlRequest("received-chunk", ["id": .integer(id), "offset": .integer(Int64(contents.count))]), on: socket)
                    guard let bytes = chunk["data"]?.stringValue.flatMap({ try? Base64.decode($0) }), !bytes.isEmpty else { break }
                    contents += bytes
                }
                var path = (save as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: path) { path += "-\(id)" }
                guard FileManager.default.createFile(atPath: path, contents: contents) else {
                    try global.fail(.error(ControlFailure(.invalidArgument, "cannot write \(path)")))
                }
                var saved = file.objectValue ?? [:]
                saved["saved_to"] = .string(path)
                files.append(.object(saved))
            }
            listing = ["total": .integer(Int64(files.count)), "files": .array(files)]
            if clear { _ = try global.call(ControlRequest("received", ["clear": true]), on: socket) }
        }
        let reply = ControlReply.ok(listing)
        guard !global.json else { return print(reply.json.encodedString()) }
        let files = listing["files"]?.arrayValue ?? []
        print(files.isEmpty ? "no files received" : files.map { file in
            let saved = file["saved_to"]?.stringValue.map { "  -> \($0)" } ?? ""
            return "\(file["received_at"]?.stringValue ?? "?")  \(file["from"]?.stringValue ?? "?")  \(file["name"]?.stringValue ?? "?")  \(file["bytes"]?.integerValue ?? 0) bytes\(saved)"
        }.joined(separator: "\n"))
    }
}

/// Unix seconds as a readable UTC time.
private func time(_ value: JSON?) -> String {
    guard let seconds = value?.integerValue else { return "?" }
    return ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
}

/// Prints a trust command's status line.
private func status(_ data: JSON) -> String {
    "\(data["status"]?.stringValue ?? "ok"): node \(data["node_id"]?.integerValue.map(String.init) ?? "?")"
}

struct Handshake: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a node for trust, with a reason.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var peer: String
    @Argument var reason: String = ""
    func run() throws {
        try global.run(ControlRequest("handshake", ["peer": .string(peer), "reason": .string(reason)]), on: try global.identitySocket(), text: status)
    }
}

struct Pending: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Handshake requests waiting for approval.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(ControlRequest("pending"), on: try global.identitySocket()) { data in
            let entries = data["pending"]?.arrayValue ?? []
            guard !entries.isEmpty else { return "no pending requests" }
            return entries.map { entry in
                "node \(entry["node_id"]?.integerValue ?? 0)  \(time(entry["received_at"]))  \(entry["justification"]?.stringValue ?? "")"
            }.joined(separator: "\n")
        }
    }
}

struct Approve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Approve a pending handshake request.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    func run() throws {
        try global.run(ControlRequest("approve", ["peer": .string(peer)]), on: try global.identitySocket(), text: status)
    }
}

struct Reject: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reject a pending handshake request.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    @Argument var reason: String = ""
    func run() throws {
        try global.run(ControlRequest("reject", ["peer": .string(peer), "reason": .string(reason)]), on: try global.identitySocket(), text: status)
    }
}

struct Untrust: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke the trust of a node.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    func run() throws {
        try global.run(ControlRequest("untrust", ["peer": .string(peer)]), on: try global.identitySocket(), text: status)
    }
}

struct TrustList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "trust", abstract: "The nodes this identity trusts.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        try global.run(ControlRequest("trust"), on: try global.identitySocket()) { data in
            let entries = data["trusted"]?.arrayValue ?? []
            guard !entries.isEmpty else { return "no trusted nodes" }
            return entries.map { entry in
                "node \(entry["node_id"]?.integerValue ?? 0)  since \(time(entry["approved_at"]))\(entry["mutual"]?.boolValue == true ? "  mutual" : "")"
            }.joined(separator: "\n")
        }
    }
}

struct IdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity", abstract: "Manage identities (admin socket).",
        subcommands: [Create.self, List.self, Show.self, Delete.self, SetOwner.self])

    static func describe(_ data: JSON) -> String {
        let groups = data["groups"]?.arrayValue?.compactMap(\.integerValue).map(String.init).joined(separator: ",") ?? ""
        let tags = data["tags"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ",") ?? ""
        return """
            \(data["name"]?.stringValue ?? "?")  \(data["address"]?.stringValue ?? "?")
              owner     \(data["owner"]?.stringValue ?? "?") (uid \(data["owner_uid"]?.integerValue ?? -1))\(groups.isEmpty ? "" : ", groups \(groups)")
              hostname  \(data["hostname"]?.stringValue ?? "-")
              tags      \(tags.isEmpty ? "-" : tags)
              public    \(data["public"]?.boolValue == true ? "yes" : "no")\(data["ephemeral"]?.boolValue == true ? ", ephemeral" : "")\(data["auto_approve"]?.boolValue == true ? ", auto-approve" : "")
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
            var arguments: [String: JSON] = [
                "name": .string(name), "owner": .string(owner ?? String(getuid())), "groups": .array(group.map(JSON.string)),
                "public": .bool(self.public), "ephemeral": .bool(ephemeral), "auto_approve": .bool(autoApprove),
            ]
            if let hostname { arguments["hostname"] = .string(hostname) }
            if let tags { arguments["tags"] = .array(tags.split(separator: ",").map { .string(String($0)) }) }
            try global.run(ControlRequest("identity.create", arguments), on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List identities.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try global.run(ControlRequest("identity.list"), on: global.runtime + "/admin.sock") { data in
                let rows = data["identities"]?.arrayValue ?? []
                guard !rows.isEmpty else { return "no identities" }
                return rows.map { row in
                    "\(row["name"]?.stringValue ?? "?")\t\(row["address"]?.stringValue ?? "?")\t\(row["owner"]?.stringValue ?? "?")\t\(row["hostname"]?.stringValue ?? "-")"
                }.joined(separator: "\n")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one identity.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(ControlRequest("identity.show", ["name": .string(name)]), on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deregister and delete an identity.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(ControlRequest("identity.delete", ["name": .string(name)]), on: global.runtime + "/admin.sock") { _ in "deleted \(name)" }
        }
    }

    struct SetOwner: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-owner", abstract: "Give an identity to another user.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var user: String

        func run() throws {
            try global.run(
                ControlRequest("identity.set-owner", ["name": .string(name), "owner": .string(user)]), on: global.runtime + "/admin.sock",
                text: IdentityCommand.describe)
        }
    }
}
