/// The replies of `MessageControl`'s listing and sending commands, as the host sends them.

/// `send-file`'s reply: the file as sent, and the receiver's ACK.
public struct FileSent: ControlReplyData {
    /// The target as the caller named it.
    public var target: String
    /// The address it resolved to.
    public var to: String
    /// The file's name.
    public var name: String
    /// Its size.
    public var bytes: Int
    /// The receiver's ACK text.
    public var ack: String

    /// A sent file's report.
    public init(target: String, to: String, name: String, bytes: Int, ack: String) {
        self.target = target
        self.to = to
        self.name = name
        self.bytes = bytes
        self.ack = ack
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), to: try fields.string("to"), name: try fields.string("name"),
            bytes: try fields.integer("bytes", as: Int.self), ack: try fields.string("ack"))
    }

    public var json: JSON {
        ["target": .string(target), "to": .string(to), "name": .string(name), "bytes": .integer(Int64(bytes)), "ack": .string(ack)]
    }
}

/// `publish`'s reply: the event as delivered to the broker.
public struct EventPublished: ControlReplyData {
    /// The broker's address.
    public var target: String
    /// The topic.
    public var topic: String
    /// The event's size.
    public var bytes: Int

    /// A published event's report.
    public init(target: String, topic: String, bytes: Int) {
        self.target = target
        self.topic = topic
        self.bytes = bytes
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(target: try fields.string("target"), topic: try fields.string("topic"), bytes: try fields.integer("bytes", as: Int.self))
    }

    public var json: JSON { ["target": .string(target), "topic": .string(topic), "bytes": .integer(Int64(bytes))] }
}

/// `subscribe`'s reply: the events that came before `count` or the timeout.
public struct EventsReceived: ControlReplyData {
    /// One event.
    public struct Event: Hashable, Sendable {
        /// Its topic.
        public var topic: String
        /// It, as text.
        public var data: String
        /// Its size.
        public var bytes: Int

        /// An event on `topic`.
        public init(topic: String, data: String, bytes: Int) {
            self.topic = topic
            self.data = data
            self.bytes = bytes
        }
    }

    /// The broker's address.
    public var target: String
    /// The topic subscribed to.
    public var topic: String
    /// The events, in order.
    public var events: [Event]
    /// Whether fewer than asked for came before the timeout.
    public var timeout: Bool

    /// A subscription's report.
    public init(target: String, topic: String, events: [Event], timeout: Bool) {
        self.target = target
        self.topic = topic
        self.events = events
        self.timeout = timeout
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            target: try fields.string("target"), topic: try fields.string("topic"),
            events: try fields.objects("events") { event throws(ControlFailure) in
                Event(topic: try event.string("topic"), data: try event.string("data"), bytes: try event.integer("bytes", as: Int.self))
            },
            timeout: try fields.bool("timeout"))
    }

    public var json: JSON {
        [
            "target": .string(target), "topic": .string(topic), "timeout": .bool(timeout),
            "events": .array(events.map { ["topic": .string($0.topic), "data": .string($0.data), "bytes": .integer(Int64($0.bytes))] }),
        ]
    }
}

/// `inbox`'s reply: the messages that arrived, as the reference's `pilotctl inbox` lists them,
/// plus each whole message.
public struct InboxListing: ControlReplyData {
    /// One message.
    public struct Message: Hashable, Sendable {
        /// The record's name, `TYPE-YYYYMMDD-HHMMSS.mmm-NNNNNN` (as 1.18 names its inbox files).
        public var id: String
        /// TEXT, JSON, BINARY or FILE.
        public var type: String
        /// The sender's address.
        public var from: String
        /// Its size.
        public var bytes: Int
        /// When it arrived, RFC 3339 with fractional seconds.
        public var receivedAt: String
        /// The message as text (nil for binary data, which is in `base64`).
        public var text: String?
        /// Its first 120 characters, with `text`.
        public var preview: String?
        /// The message in base64, when it is not text.
        public var base64: String?
        /// The id it was tagged with, if any.
        public var messageID: String?
        /// The message it answers, if any.
        public var replyTo: String?

        /// A message's description.
        public init(
            id: String, type: String, from: String, bytes: Int, receivedAt: String, text: String? = nil, preview: String? = nil,
            base64: String? = nil, messageID: String? = nil, replyTo: String? = nil
        ) {
            self.id = id
            self.type = type
            self.from = from
            self.bytes = bytes
            self.receivedAt = receivedAt
            self.text = text
            self.preview = preview
            self.base64 = base64
            self.messageID = messageID
            self.replyTo = replyTo
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                id: try fields.string("id"), type: try fields.string("type"), from: try fields.string("from"),
                bytes: try fields.integer("bytes", as: Int.self), receivedAt: try fields.string("received_at"),
                text: try fields.optionalString("data"), preview: try fields.optionalString("preview"),
                base64: try fields.optionalString("data_b64"), messageID: try fields.optionalString("message_id"),
                replyTo: try fields.optionalString("reply_to"))
            truncated = try fields.bool("truncated")
        }

        /// Too large for a listing: `data`/`data_b64` are left out (`preview` stays); `inbox-chunk`
        /// reads it whole.
        public var truncated = false

        /// The message's number in the inbox: the last part of `id` (nil if `id` has none).
        public var number: Int64? { id.split(separator: "-").last.flatMap { Int64($0) } }

        public var json: JSON {
            var fields: [String: JSON] = [
                "id": .string(id), "type": .string(type), "from": .string(from), "bytes": .integer(Int64(bytes)),
                "received_at": .string(receivedAt),
            ]
            for (key, value) in [("data", text), ("preview", preview), ("data_b64", base64), ("message_id", messageID), ("reply_to", replyTo)] {
                if let value { fields[key] = .string(value) }
            }
            fields["data_encoding"] = text == nil && (base64 != nil || type == "BINARY") ? "base64" : "utf8"
            if truncated { fields["truncated"] = true }
            return .object(fields)
        }
    }

    /// The messages.
    public var messages: [Message]
    /// The directory they are files in too, the reference's `dir`: the identity's spool inbox
    /// (`spool-dir`), or nil (`null`) when pilot-host keeps them in `host.db` only.
    public var directory: String?

    /// How many messages the inbox holds (more than `messages` when this is one page of it).
    public var total: Int
    /// The `after` of the next page: the number of this page's last message; nil when none
    /// follows.
    public var next: Int64?

    /// A listing of `messages`, a page of `total` (nil: all of them).
    public init(messages: [Message], directory: String? = nil, total: Int? = nil, next: Int64? = nil) {
        self.messages = messages
        self.directory = directory
        self.total = total ?? messages.count
        self.next = next
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        messages = try fields.objects("messages") { message throws(ControlFailure) in try Message(fields: message) }
        directory = try fields.optionalString("dir")
        total = try fields.optionalInteger("total", as: Int.self) ?? messages.count
        next = try fields.optionalInteger("next")
    }

    public var json: JSON {
        var fields: [String: JSON] = [
            "total": .integer(Int64(total)), "shown": .integer(Int64(messages.count)), "messages": .array(messages.map(\.json)),
            "dir": directory.map(JSON.string) ?? .null,
        ]
        if let next { fields["next"] = .integer(next) }
        return .object(fields)
    }
}

/// `received`'s reply: the files that arrived.
public struct ReceivedFiles: ControlReplyData {
    /// One file.
    public struct File: Hashable, Sendable {
        /// Its id, for `received-chunk`.
        public var id: Int64
        /// Its name, as the sender gave it.
        public var name: String
        /// The sender's address.
        public var from: String
        /// Its size.
        public var bytes: Int
        /// When it arrived, RFC 3339 with fractional seconds.
        public var receivedAt: String
        /// Where `pilotctl received --save` wrote it (the host never sets it).
        public var savedTo: String?

        /// A file's description.
        public init(id: Int64, name: String, from: String, bytes: Int, receivedAt: String, savedTo: String? = nil) {
            self.id = id
            self.name = name
            self.from = from
            self.bytes = bytes
            self.receivedAt = receivedAt
            self.savedTo = savedTo
        }
    }

    /// The files.
    public var files: [File]
    /// The directory `pilotctl received --save` wrote them into, the reference's `dir` (nil:
    /// not saved, they are in the host's `host.db` only).
    public var directory: String?

    /// How many files the identity holds (more than `files` when this is one page of them).
    public var total: Int
    /// The `after` of the next page (`ListPage`); nil: this is the last.
    public var next: Int64?

    /// A listing of `files`, a page of `total` (nil: all of them).
    public init(files: [File], directory: String? = nil, total: Int? = nil, next: Int64? = nil) {
        self.files = files
        self.total = total ?? files.count
        self.next = next
        self.directory = directory
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        files = try fields.objects("files") { file throws(ControlFailure) in
            File(
                id: try file.integer("id"), name: try file.string("name"), from: try file.string("from"),
                bytes: try file.integer("bytes", as: Int.self), receivedAt: try file.string("received_at"),
                savedTo: try file.optionalString("saved_to"))
        }
        directory = try fields.optionalString("dir")
        total = try fields.optionalInteger("total", as: Int.self) ?? files.count
        next = try fields.optionalInteger("next")
    }

    /// One file as the reply lists it.
    public static func row(_ file: File) -> JSON {
        var fields: [String: JSON] = [
            "id": .integer(file.id), "name": .string(file.name), "from": .string(file.from), "bytes": .integer(Int64(file.bytes)),
            "received_at": .string(file.receivedAt), "modified": .string(file.receivedAt),
            "path": file.savedTo.map(JSON.string) ?? .null,
        ]
        if let savedTo = file.savedTo { fields["saved_to"] = .string(savedTo) }
        return .object(fields)
    }

    /// The reference's keys (`dir`, `shown`, `total`; a file's `name`, `bytes`, `path`,
    /// `modified`) and ours: a file's `path` is where `--save` wrote it (`null` unsaved), and
    /// `modified` is when it arrived, which is when the host wrote it.
    public var json: JSON {
        var fields: [String: JSON] = [
            "total": .integer(Int64(total)), "shown": .integer(Int64(files.count)), "dir": directory.map(JSON.string) ?? .null,
            "files": .array(files.map(Self.row)),
        ]
        if let next { fields["next"] = .integer(next) }
        return .object(fields)
    }
}
