/// Messages, files and events from an identity's own socket: the data-exchange port (1001) and
/// the event stream (1002) of another node, and what arrived on this identity's.
public enum MessageControl {
    /// The kind of a message `send-message` sends.
    public enum MessageType: String, Hashable, Sendable, CaseIterable {
        case text, json, binary

        /// The kind `text` names, as `send-message`'s `type` field.
        public init(parsing text: String) throws(ControlFailure) {
            guard let type = MessageType(rawValue: text) else {
                throw ControlFailure(.invalidArgument, "\(SendMessage.name): type must be text, json or binary, not \(text.prefix(32))")
            }
            self = type
        }
    }

    /// `send-message`: one message to `target`'s data-exchange port, and its ACK; with `wait`,
    /// also the reply (`docs/PROTOCOL.md` §12.1).
    public struct SendMessage: ControlCommand {
        public typealias Reply = MessageSent
        public static let name = "send-message"
        /// Longest a reply is waited for: 10 minutes.
        public static let longestWait = 600_000
        /// An address, a node id, or a hostname.
        public var target: String
        /// The message, when it is UTF-8 text.
        public var data: String
        /// The message in base64, when it is not UTF-8 (nil: `data` is the message).
        public var base64: String?
        /// Its kind; nil means text.
        public var type: MessageType?
        /// The message this one answers: its `message_id`, or its id in this identity's inbox.
        public var replyTo: String?
        /// Milliseconds to wait for the reply once the receiver has acknowledged; nil: no wait.
        public var wait: Int?

        /// The command sending `data` to `target`.
        public init(target: String, data: String, type: MessageType? = nil, replyTo: String? = nil, wait: Int? = nil) {
            self.init(target: target, bytes: Array(data.utf8), type: type, replyTo: replyTo, wait: wait)
            self.data = data
        }

        /// The command sending `bytes` (which need not be UTF-8: sent as `data_b64`) to `target`.
        public init(target: String, bytes: [UInt8], type: MessageType? = nil, replyTo: String? = nil, wait: Int? = nil) {
            self.target = target
            self.data = String(validating: bytes, as: UTF8.self) ?? ""
            self.base64 = String(validating: bytes, as: UTF8.self) == nil ? Base64.encode(bytes) : nil
            self.type = type
            self.replyTo = replyTo
            self.wait = wait
        }

        /// The message's bytes.
        public var bytes: [UInt8] {
            get throws(ControlFailure) {
                guard let base64 else { return Array(data.utf8) }
                guard let bytes = try? Base64.decode(base64) else { throw ControlFailure(.invalidArgument, "\(Self.name): data_b64 must be base64") }
                return bytes
            }
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            let type = try fields.optionalString("type").map { text throws(ControlFailure) in try MessageType(parsing: text) }
            let wait = try fields.optionalInteger("wait", as: Int.self)
            if let wait, !(1...Self.longestWait).contains(wait) {
                throw ControlFailure(.invalidArgument, "\(Self.name): wait must be 1 to \(Self.longestWait) milliseconds")
            }
            let (text, base64) = (try fields.optionalString("data"), try fields.optionalString("data_b64"))
            guard (text == nil) != (base64 == nil) else { throw ControlFailure(.invalidArgument, "\(Self.name): give data or data_b64, one of them") }
            self.target = try fields.string("target")
            self.data = text ?? ""
            self.base64 = base64
            self.type = type
            self.replyTo = try fields.optionalString("reply_to")
            self.wait = wait
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["target": .string(target)]
            if let base64 { arguments["data_b64"] = .string(base64) } else { arguments["data"] = .string(data) }
            if let type { arguments["type"] = .string(type.rawValue) }
            if let replyTo { arguments["reply_to"] = .string(replyTo) }
            if let wait { arguments["wait"] = .integer(Int64(wait)) }
            return arguments
        }
    }

    /// `inbox`: a page of the messages that arrived, oldest first; with `clear`, the messages
    /// the page lists are deleted after listing (none that came meanwhile).
    public struct Inbox: ControlCommand {
        public typealias Reply = InboxListing
        public static let name = "inbox"
        /// Most messages in a page, and the default.
        public static let longestPage = 5000
        /// A message larger than this is listed without its data (`truncated`).
        public static let inlineBytes = 64 << 10
        /// A page stops before its messages' data passes this.
        public static let pageBytes = 640 << 10
        public var clear: Bool
        /// The number of the message the page starts after (`next` of the page before); nil:
        /// from the first.
        public var after: Int64?
        /// Messages at most (1 to `longestPage`; nil: `longestPage`).
        public var limit: Int?

        /// The command listing the inbox.
        public init(clear: Bool = false, after: Int64? = nil, limit: Int? = nil) {
            self.clear = clear
            self.after = after
            self.limit = limit
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(clear: try fields.bool("clear"), after: try fields.optionalInteger("after"), limit: try fields.optionalInteger("limit", as: Int.self))
            if let limit, !(1...Self.longestPage).contains(limit) { throw fields.failure("limit", "1 to \(Self.longestPage)") }
            if let after, after < 0 { throw fields.failure("after", "a message number (0 or more)") }
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["clear": .bool(clear)]
            if let after { arguments["after"] = .integer(after) }
            if let limit { arguments["limit"] = .integer(Int64(limit)) }
            return arguments
        }
    }

    /// `inbox-chunk`: a piece of one message, from `offset` (for one listed `truncated`).
    public struct InboxChunk: PieceCommand {
        public static let name = "inbox-chunk"
        /// The message's number (`InboxListing.Message.number`).
        public var id: Int64
        public var offset: Int

        /// The piece of message `id` from `offset`.
        public init(id: Int64, offset: Int) {
            self.id = id
            self.offset = offset
        }
    }

    /// `upload`: one piece of a file for `send-file`, held by the host under `upload`.
    public struct Upload: ControlCommand {
        public typealias Reply = UploadReceived
        public static let name = "upload"
        /// The upload's id, chosen by the caller.
        public var upload: String
        /// The whole file's size.
        public var size: Int
        /// Where this piece starts.
        public var offset: Int
        /// The piece, in base64.
        public var data: String

        /// The piece `data` (base64) at `offset` of a `size`-byte file.
        public init(upload: String, size: Int, offset: Int, data: String) {
            self.upload = upload
            self.size = size
            self.offset = offset
            self.data = data
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                upload: try fields.string("upload"), size: try fields.integer("size", as: Int.self),
                offset: try fields.integer("offset", as: Int.self), data: try fields.string("data"))
        }

        public var arguments: [String: JSON] {
            ["upload": .string(upload), "size": .integer(Int64(size)), "offset": .integer(Int64(offset)), "data": .string(data)]
        }

        /// A new upload id: 16 random hex digits.
        public static func newID() -> String {
            Hex.lowercase((0..<8).map { _ in UInt8.random(in: 0...255) })
        }

        /// `contents` as the pieces of upload `upload`, in order, each at most `FileChunk.size`
        /// bytes (one empty piece for an empty file).
        public static func pieces(of contents: [UInt8], upload: String) -> [Upload] {
            stride(from: 0, to: max(contents.count, 1), by: FileChunk.size).map { offset in
                let piece = contents[offset..<min(offset + FileChunk.size, contents.count)]
                return Upload(upload: upload, size: contents.count, offset: offset, data: Base64.encode(piece))
            }
        }
    }

    /// `send-file`: an uploaded file sent to `target`'s data-exchange port, and its ACK.
    public struct SendFile: ControlCommand {
        public typealias Reply = FileSent
        public static let name = "send-file"
        /// An address, a node id, or a hostname.
        public var target: String
        /// The file's name.
        public var file: String
        /// The upload that holds it.
        public var upload: String

        /// The command sending the upload `upload` as `file`.
        public init(target: String, file: String, upload: String) {
            self.target = target
            self.file = file
            self.upload = upload
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(target: try fields.string("target"), file: try fields.string("name"), upload: try fields.string("upload"))
        }

        public var arguments: [String: JSON] { ["target": .string(target), "name": .string(file), "upload": .string(upload)] }
    }

    /// `received`: the files that arrived, optionally deleted after listing.
    /// `received`: a page of the files that arrived (by id, `ListPage`); with `clear`, the
    /// files the page lists are deleted after listing (none that came meanwhile).
    public struct Received: ControlCommand {
        public typealias Reply = ReceivedFiles
        public static let name = "received"
        public var clear: Bool
        public var page: ListPage
        /// The command listing the received files.
        public init(clear: Bool = false, page: ListPage = ListPage()) {
            self.clear = clear
            self.page = page
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(clear: try fields.bool("clear"), page: try ListPage(fields: fields))
        }

        public var arguments: [String: JSON] { page.arguments.merging(["clear": .bool(clear)]) { $1 } }
    }

    /// `received-chunk`: a piece of a received file, from `offset`.
    public struct ReceivedChunk: PieceCommand {
        public static let name = "received-chunk"
        /// The file's id in `received`'s listing.
        public var id: Int64
        public var offset: Int

        /// The piece of file `id` from `offset`.
        public init(id: Int64, offset: Int) {
            self.id = id
            self.offset = offset
        }
    }

    /// `subscribe`: events on `topic` from `target`'s event stream, until `count` or `timeout`.
    public struct Subscribe: ControlCommand {
        public typealias Reply = EventsReceived
        public static let name = "subscribe"
        /// An address, a node id, or a hostname.
        public var target: String
        /// The topic (`*` for every topic).
        public var topic: String
        /// How many events (1 to 10000; nil: 1).
        public var count: Int?
        /// Seconds to wait (1 to 3600; nil: 30).
        public var timeout: Int?

        /// The command subscribing to `topic` on `target`.
        public init(target: String, topic: String, count: Int? = nil, timeout: Int? = nil) {
            self.target = target
            self.topic = topic
            self.count = count
            self.timeout = timeout
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                target: try fields.string("target"), topic: try fields.string("topic"),
                count: try fields.optionalInteger("count", as: Int.self), timeout: try fields.optionalInteger("timeout", as: Int.self))
        }

        public var arguments: [String: JSON] {
            ControlArguments(["target": .string(target), "topic": .string(topic)]).with(count: count, timeout: timeout)
        }
    }

    /// `publish`: one event on `topic` to `target`'s event stream.
    public struct Publish: ControlCommand {
        public typealias Reply = EventPublished
        public static let name = "publish"
        /// An address, a node id, or a hostname.
        public var target: String
        /// The topic.
        public var topic: String
        /// The event.
        public var data: String

        /// The command publishing `data` on `topic`.
        public init(target: String, topic: String, data: String) {
            self.target = target
            self.topic = topic
            self.data = data
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(target: try fields.string("target"), topic: try fields.string("topic"), data: try fields.string("data"))
        }

        public var arguments: [String: JSON] { ["target": .string(target), "topic": .string(topic), "data": .string(data)] }
    }
}

/// `send-message`'s reply: the message as sent, the receiver's ACK, and the reply when waited for.
public struct MessageSent: ControlReplyData {
    /// The target as the caller named it.
    public var target: String
    /// The address it resolved to.
    public var to: String
    /// The message's kind: text, json or binary.
    public var type: String
    /// The message's size.
    public var bytes: Int
    /// The receiver's ACK text.
    public var ack: String
    /// The id the message was tagged with.
    public var messageID: String
    /// The `message_id` it answered, if it was a reply.
    public var replyTo: String?
    /// The reply that arrived (with `wait`).
    public var reply: InboxListing.Message?
    /// Which of several sends this was (`pilotctl send-message --count`), from 0.
    public var sequence = 0

    /// A sent message's report.
    public init(
        target: String, to: String, type: String, bytes: Int, ack: String, messageID: String, replyTo: String? = nil,
        reply: InboxListing.Message? = nil
    ) {
        self.target = target
        self.to = to
        self.type = type
        self.bytes = bytes
        self.ack = ack
        self.messageID = messageID
        self.replyTo = replyTo
        self.reply = reply
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"), type: try fields.string("type"),
            bytes: try fields.integer("bytes", as: Int.self), ack: try fields.string("ack"), messageID: try fields.string("message_id"),
            replyTo: try fields.optionalString("reply_to"),
            reply: try fields.optionalObject("reply").map { reply throws(ControlFailure) in try InboxListing.Message(fields: reply) })
        sequence = try fields.optionalInteger("seq", as: Int.self) ?? 0
    }

    /// With 1.18's constant fields: `tagged` true, `reused` false.
    public var json: JSON {
        var fields: [String: JSON] = [
            "target": .string(target), "to": .string(to), "type": .string(type), "bytes": .integer(Int64(bytes)),
            "ack": .string(ack), "message_id": .string(messageID), "tagged": true, "seq": .integer(Int64(sequence)), "reused": false,
        ]
        if let replyTo { fields["reply_to"] = .string(replyTo) }
        if let reply { fields["reply"] = reply.json }
        return .object(fields)
    }
}

/// `upload`'s reply: how many bytes of the upload the host holds.
public struct UploadReceived: ControlReplyData {
    /// Bytes held so far.
    public var received: Int

    /// The reply for `received` bytes.
    public init(received: Int) { self.received = received }
    public init(fields: ControlFields) throws(ControlFailure) { received = try fields.integer("received", as: Int.self) }
    public var json: JSON { ["received": .integer(Int64(received))] }
}

/// `received-chunk`'s reply: a piece of a received file, in base64 (empty past its end).
public struct FileChunk: ControlReplyData {
    /// Bytes of a file per control frame, each way (`upload` and `received-chunk`): 512 KiB,
    /// well inside a 1 MiB frame in base64.
    public static let size = 512 << 10

    /// Where the piece starts.
    public var offset: Int
    /// The piece, in base64.
    public var data: String

    /// The piece `data` at `offset`.
    public init(offset: Int, data: String) {
        self.offset = offset
        self.data = data
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(offset: try fields.integer("offset", as: Int.self), data: try fields.string("data"))
    }

    public var json: JSON { ["offset": .integer(Int64(offset)), "data": .string(data)] }
}

/// A command reading one piece (`FileChunk.size` bytes at most) of something the host keeps,
/// `id`, from `offset`: `received-chunk` and `inbox-chunk`.
public protocol PieceCommand: ControlCommand where Reply == FileChunk {
    var id: Int64 { get }
    /// Where the piece starts (not negative).
    var offset: Int { get }
    init(id: Int64, offset: Int)
}

extension PieceCommand {
    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(id: try fields.integer("id"), offset: try fields.integer("offset", as: Int.self))
        guard offset >= 0 else { throw fields.failure("offset", "0 or more") }
    }

    public var arguments: [String: JSON] { ["id": .integer(id), "offset": .integer(Int64(offset))] }
}
