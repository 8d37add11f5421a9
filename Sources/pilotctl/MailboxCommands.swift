import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// What arrived for the identity: its inbox, events, files.

/// `inbox`: the messages that arrived, filtered as the reference's `pilotctl inbox` filters
/// them (`--from`, `--since`, `--limit`), or one of them (`inbox read ID` / `--latest`). The
/// host lists the whole inbox; the filters are applied here.
struct Inbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Messages that arrived on this identity's data-exchange port.",
        discussion: "inbox [--from NODE] [--since TIME] [--limit N] [--clear] lists them; inbox read ID | --latest shows one.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "read, to show one message (by ID, or the newest with --latest).") var action: String?
    @Argument(help: "The message's id (as the list shows it).") var id: String?
    @Flag(help: "Delete them all after listing.") var clear = false
    @Option(help: "Only messages from this node (an address or a node id).") var from: String?
    @Option(help: "Only messages received since then: an RFC 3339 time, or a duration back from now (90s, 10m, 2h).") var since: String?
    @Option(help: "Only the newest N.") var limit: Int?
    @Flag(help: "With read: the newest message.") var latest = false

    func validate() throws {
        if let action, action != "read" { throw ValidationError("inbox takes no argument but read ID | read --latest, got \(action)") }
        if action == "read" {
            guard (id == nil) != !latest else { throw ValidationError("inbox read takes a message id or --latest, one of them") }
            guard !clear, from == nil, since == nil, limit == nil else { throw ValidationError("inbox read takes no filters") }
        }
        if clear, from != nil || since != nil || limit != nil {
            throw ValidationError("--clear deletes the whole inbox: it cannot be combined with --from, --since or --limit")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let since, Self.instant(since) == nil { throw ValidationError("--since: an RFC 3339 time or a duration like 90s, 10m, 2h, got \(since)") }
        if let from, Self.sender(from) == nil { throw ValidationError("--from: an address or a node id, got \(from)") }
    }

    func run() throws {
        let socket = try global.identitySocket()
        let inbox = try pages(on: socket)
        if action == "read" { return try read(inbox, on: socket) }
        let sender = from.flatMap(Self.sender)
        let after = since.flatMap(Self.instant)
        var shown = inbox.messages.filter { message in
            (sender == nil || message.from == sender) && (after == nil || (Self.instant(message.receivedAt).map { $0 >= after! } ?? false))
        }
        if let limit, shown.count > limit { shown = Array(shown.suffix(limit)) }
        if global.json {
            let listing = InboxListing(messages: shown).json.objectValue ?? [:]
            var data = listing
            data["total"] = .integer(Int64(inbox.messages.count))
            print(ControlReply.ok(.object(data)).json.encodedString())
            return
        }
        guard !shown.isEmpty else { return print(inbox.messages.isEmpty ? "inbox is empty" : "no message matches") }
        print(shown.map(Self.line).joined(separator: "\n"))
    }

    /// The whole inbox, page after page (with --clear each page deletes what it listed).
    private func pages(on socket: String) throws -> InboxListing {
        var whole = InboxListing(messages: [])
        var after: Int64?
        repeat {
            let page = try global.call(MessageControl.Inbox(clear: clear, after: after), on: socket)
            whole.messages += page.messages
            whole.directory = page.directory
            after = page.next
        } while after != nil
        whole.total = whole.messages.count
        return whole
    }

    /// `inbox read ID` / `--latest`: the message, whole (a large one read in pieces).
    private func read(_ inbox: InboxListing, on socket: String) throws {
        guard let found = latest ? inbox.messages.last : inbox.messages.first(where: { $0.id == id }) else {
            try global.fail(.error(ControlFailure(.notFound, latest ? "inbox is empty" : "no message \(id ?? "") in the inbox")))
        }
        let message = try global.whole(found, on: socket)
        let listed = InboxListing(messages: [message]).json["messages"]?.arrayValue?.first ?? .null
        print(global.json ? ControlReply.ok(listed).json.encodedString() : (message.text ?? message.base64 ?? ""))
    }

    private static func line(_ message: InboxListing.Message) -> String {
        let body = message.truncated
            ? "\(message.preview ?? "")… (\(message.bytes) bytes: inbox read \(message.id))"
            : message.text ?? "(\(message.bytes) bytes, base64 in --json)"
        return "\(message.id)  \(message.receivedAt)  \(message.from)  \(message.type)  \(body)"
    }

    /// `text` as a sender's address, as the inbox writes it: an address or a node id.
    static func sender(_ text: String) -> String? {
        guard case .address(let address) = NodeTarget(text) else { return nil }
        return address.description
    }

    /// An RFC 3339 time (with or without fractional seconds), or a duration back from now.
    static func instant(_ text: String) -> Date? {
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last.flatMap({ units[$0] }), let amount = Double(text.dropLast()), amount >= 0 else { return nil }
        return Date().addingTimeInterval(-amount * unit)
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
        let upload = try global.upload(Array(contents), on: socket)
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
        var listing = ReceivedFiles(files: [], directory: save)
        var page = ListPage()
        while true {
            // Without --save, --clear deletes each page as it is listed; with it, once the
            // page's files are written (the same page asked for again with clear: the files
            // that came meanwhile are not in it).
            let part = try global.call(MessageControl.Received(clear: clear && save == nil, page: page), on: socket)
            listing.files += try save.map { try saved(part.files, into: $0, on: socket) } ?? part.files
            listing.total = clear ? listing.files.count : part.total
            if clear, save != nil, !part.files.isEmpty {
                _ = try global.call(MessageControl.Received(clear: true, page: ListPage(after: page.after, limit: part.files.count)), on: socket)
            }
            guard let next = part.next else { break }
            page = ListPage(after: next)
        }
        let reply = ControlReply.ok(listing.json)
        guard !global.json else { return print(reply.json.encodedString()) }
        print(listing.files.isEmpty ? "no files received" : listing.files.map { file in
            "\(file.receivedAt)  \(file.from)  \(file.name)  \(file.bytes) bytes\(file.savedTo.map { "  -> \($0)" } ?? "")"
        }.joined(separator: "\n"))
    }

    /// `files` written into `save`, read from the host in pieces.
    private func saved(_ files: [ReceivedFiles.File], into save: String, on socket: String) throws -> [ReceivedFiles.File] {
        var written: [ReceivedFiles.File] = []
        for var file in files {
            let contents = Data(try global.pieces(MessageControl.ReceivedChunk.self, id: file.id, bytes: file.bytes, on: socket))
            var path = (save as NSString).appendingPathComponent(file.name)
            if FileManager.default.fileExists(atPath: path) { path += "-\(file.id)" }
            guard FileManager.default.createFile(atPath: path, contents: contents) else {
                try global.fail(.error(ControlFailure(.invalidArgument, "cannot write \(path)")))
            }
            file.savedTo = path
            written.append(file)
        }
        return written
    }
}
