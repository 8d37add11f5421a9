import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// What arrived for the identity: its inbox, events, files.

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
