/// `host.db`'s inbox and received files: what peers sent each identity, within its quotas.
extension HostStore {
    /// Stores a message for `identity`, unless the same sender's message with the same id is
    /// there already (a sender re-sending after its ACK was lost): then nothing is stored. Refused
    /// with `StoreError` when `identity` holds `quota.messages` messages or `quota.bytes` bytes
    /// already. Returns the message as stored, or the copy that was there.
    public func addMessage(_ message: InboxMessage, identity: String, quota: InboxQuota = .unlimited) throws -> (message: InboxMessage, added: Bool) {
        try db.transaction {
            guard let owner = try db.rows("SELECT id FROM identity WHERE name = ?", [.text(identity)]).first?.first?.integer else {
                throw StoreError(code: 12, message: "no identity named \(identity)")
            }
            if let messageID = message.messageID,
                let row = try db.rows(
                    "\(Self.messageColumns) WHERE identity_id = ? AND sender = ? AND message_id = ? LIMIT 1",
                    [.integer(owner), .text(message.sender), .text(messageID)]
                ).first
            {
                return (Self.message(row), false)
            }
            let held = try db.rows("SELECT count(*), coalesce(sum(length(data)), 0) FROM inbox WHERE identity_id = ?", [.integer(owner)])[0]
            let (count, bytes) = (Int(held[0].integer ?? 0), Int(held[1].integer ?? 0))
            guard count < quota.messages, bytes + message.data.count <= quota.bytes else {
                throw StoreError(code: 13, message: "inbox full: \(count) messages, \(bytes) bytes (at most \(quota.messages), \(quota.bytes) bytes)")
            }
            try db.run(
                """
                INSERT INTO inbox (identity_id, sender, type, data, message_id, reply_to, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .integer(owner), .text(message.sender), .text(message.type), .blob(message.data),
                    message.messageID.map(SQLValue.text) ?? .null, message.replyTo.map(SQLValue.text) ?? .null,
                    .integer(message.receivedAt),
                ])
            var stored = message
            stored.id = db.lastInsertRowID
            return (stored, true)
        }
    }

    /// `identity`'s messages with an id above `after`, oldest first, at most `limit`.
    public func messages(identity: String, after: Int64, limit: Int = .max) throws -> [InboxMessage] {
        try db.rows(
            """
            \(Self.messageColumns) WHERE identity_id = (SELECT id FROM identity WHERE name = ?) AND inbox.id > ? ORDER BY inbox.id LIMIT ?
            """, [.text(identity), .integer(after), .integer(Int64(min(limit, Int(Int64.max))))]
        ).map(Self.message)
    }

    /// A page of `identity`'s messages: at most `limit` with ids above `after`, oldest first,
    /// each with at most its first `inline` bytes read (`size` says how many it has).
    public func messagePage(identity: String, after: Int64, limit: Int, inline: Int) throws -> [InboxMessage] {
        try db.rows(
            """
            \(Self.messageColumns(data: "substr(data, 1, ?)"))
            WHERE identity_id = (SELECT id FROM identity WHERE name = ?) AND inbox.id > ? ORDER BY inbox.id LIMIT ?
            """, [.integer(Int64(inline)), .text(identity), .integer(after), .integer(Int64(limit))]
        ).map(Self.message)
    }

    /// How many messages `identity` holds.
    public func messageCount(identity: String) throws -> Int {
        Int(try db.rows("SELECT count(*) FROM inbox WHERE identity_id = (SELECT id FROM identity WHERE name = ?)", [.text(identity)])
            .first?.first?.integer ?? 0)
    }

    /// `length` bytes from `offset` of `identity`'s message `id` (nil: no such message).
    public func messageContents(identity: String, id: Int64, offset: Int, length: Int) throws -> [UInt8]? {
        try db.rows(
            "SELECT substr(data, ?, ?) FROM inbox WHERE identity_id = (SELECT id FROM identity WHERE name = ?) AND inbox.id = ?",
            [.integer(Int64(offset) + 1), .integer(Int64(length)), .text(identity), .integer(id)]
        ).first.map { $0[0].blob ?? [] }
    }

    /// Deletes `identity`'s messages with ids above `after` up to `through`; returns how many.
    @discardableResult
    public func clearMessages(identity: String, after: Int64, through: Int64) throws -> Int {
        try db.transaction {
            try db.run(
                "DELETE FROM inbox WHERE identity_id = (SELECT id FROM identity WHERE name = ?) AND id > ? AND id <= ?",
                [.text(identity), .integer(after), .integer(through)])
            return db.changes
        }
    }

    /// The id of `identity`'s newest message (0: none).
    public func lastMessageID(identity: String) throws -> Int64 {
        try db.rows(
            "SELECT coalesce(max(inbox.id), 0) FROM inbox WHERE identity_id = (SELECT id FROM identity WHERE name = ?)", [.text(identity)]
        ).first?.first?.integer ?? 0
    }

    /// Whether one of `sender`'s messages to `identity` answers another (names it in `reply_to`).
    public func senderNamesReplies(identity: String, sender: String) throws -> Bool {
        try !db.rows(
            """
            SELECT 1 FROM inbox WHERE identity_id = (SELECT id FROM identity WHERE name = ?) AND sender = ? AND reply_to IS NOT NULL LIMIT 1
            """, [.text(identity), .text(sender)]
        ).isEmpty
    }

    /// The columns `message` reads, with `data` (an expression on it) as the message's bytes.
    private static func messageColumns(data: String = "data") -> String {
        "SELECT inbox.id, sender, type, \(data), message_id, reply_to, received_at, length(data) FROM inbox"
    }

    private static var messageColumns: String { messageColumns() }

    private static func message(_ row: [SQLValue]) -> InboxMessage {
        InboxMessage(
            id: row[0].integer ?? 0, sender: row[1].text ?? "", type: row[2].text ?? "", data: row[3].blob ?? [],
            messageID: row[4].text, replyTo: row[5].text, receivedAt: row[6].integer ?? 0, size: Int(row[7].integer ?? 0))
    }

    /// `identity`'s messages, oldest first.
    public func messages(identity: String) throws -> [InboxMessage] { try messages(identity: identity, after: 0) }

    /// Stores a file that arrived for `identity`, unless its files would then pass `quota` bytes
    /// or `files` files (then nothing is stored and `StoreError` says so); returns the file's id.
    public func addFile(_ file: ReceivedFile, contents: some Collection<UInt8>, identity: String, quota: Int, files: Int = .max) throws -> Int64 {
        try db.transaction {
            let row = try db.rows(
                "SELECT coalesce(sum(length(data)), 0), count(*) FROM received_file JOIN identity ON identity.id = identity_id WHERE identity.name = ?",
                [.text(identity)]
            ).first
            let held = row?[0].integer ?? 0
            guard Int(held) + contents.count <= quota else {
                throw StoreError(code: 13, message: "received-files quota: \(held) + \(contents.count) bytes > \(quota)")
            }
            guard Int(row?[1].integer ?? 0) < files else { throw StoreError(code: 13, message: "received-files quota: \(files) files held") }
            try db.run(
                """
                INSERT INTO received_file (identity_id, sender, name, data, received_at)
                SELECT id, ?, ?, ?, ? FROM identity WHERE name = ?
                """,
                [.text(file.sender), .text(file.name), .blob(Array(contents)), .integer(file.receivedAt), .text(identity)])
            guard db.changes == 1 else { throw StoreError(code: 12, message: "no identity named \(identity)") }
            return db.lastInsertRowID
        }
    }

    /// `identity`'s received files, oldest first, without their contents.
    public func files(identity: String) throws -> [ReceivedFile] {
        try db.rows(
            """
            SELECT received_file.id, sender, received_file.name, length(data), received_at FROM received_file
            JOIN identity ON identity.id = received_file.identity_id WHERE identity.name = ? ORDER BY received_file.id
            """, [.text(identity)]
        ).map { row in
            ReceivedFile(
                id: row[0].integer ?? 0, sender: row[1].text ?? "", name: row[2].text ?? "", size: Int(row[3].integer ?? 0),
                receivedAt: row[4].integer ?? 0)
        }
    }

    /// Up to `length` bytes of file `id` of `identity` from `offset`; nil if there is no such file.
    public func fileContents(identity: String, id: Int64, offset: Int, length: Int) throws -> [UInt8]? {
        try db.rows(
            """
            SELECT substr(data, ?, ?) FROM received_file JOIN identity ON identity.id = received_file.identity_id
            WHERE identity.name = ? AND received_file.id = ?
            """, [.integer(Int64(offset) + 1), .integer(Int64(length)), .text(identity), .integer(id)]
        ).first.map { $0[0].blob ?? [] }
    }

    /// Deletes `identity`'s received files with ids above `after` up to `through`; returns how many.
    @discardableResult
    public func clearFiles(identity: String, after: Int64, through: Int64) throws -> Int {
        try db.transaction {
            try db.run(
                "DELETE FROM received_file WHERE identity_id = (SELECT id FROM identity WHERE name = ?) AND id > ? AND id <= ?",
                [.text(identity), .integer(after), .integer(through)])
            return db.changes
        }
    }
}
