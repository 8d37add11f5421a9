import FoundationEssentials
import Glibc
import PilotServices
import PilotStore
import PilotWire

/// Every identity's mailbox: the messages and files peers sent it (port 1001), kept in
/// `host.db` until its owner reads and clears them. It has a connection of its own to
/// `host.db` (WAL: the pool's writes and these do not wait for each other's actor), and what it
/// keeps goes away with the identity (the rows cascade).
actor Mailbox: DataExchangeInbox {
    /// What one identity's received files may hold in all; a file beyond is refused (its sender
    /// gets an ERR) and nothing is lost of what is held.
    static let receivedFilesQuota = 256 << 20
    /// What one identity's inbox may hold; a message beyond is refused the same way.
    static let inboxQuota = InboxQuota(messages: 10_000, bytes: 256 << 20)
    /// How long a reply without `reply_to`, from a peer that names what its replies answer, is
    /// held back in case the one naming the message follows (1.18's rule).
    static let namedReplyGrace: Duration = .milliseconds(750)

    private let store: HostStore
    private let spool: InboxSpool?
    /// The uid that owns an identity (nil: no such identity), for its spool.
    private let owner: @Sendable (String) async -> uid_t?
    /// Messages kept per identity since start: a reply's waiter looks at `host.db` only when
    /// this moved.
    private var arrivals: [String: UInt64] = [:]

    /// The mailbox in the `host.db` at `path` (opened, not created: the pool made it), copying
    /// what it keeps into `spool` for the identity's owner (`owner`).
    init(path: String, spool: InboxSpool? = nil, owner: @escaping @Sendable (String) async -> uid_t? = { _ in nil }) throws {
        store = try HostStore(path: path)
        self.spool = spool
        self.owner = owner
    }

    /// Keeps a message that arrived for `identity`; throws if `identity` does not exist or its
    /// inbox is full. A message its sender sent before with the same id (a re-send after a lost
    /// ACK) is acknowledged and not kept twice.
    func keep(_ message: DataExchangeService.Message, for identity: String) async throws {
        let (stored, added) = try store.addMessage(
            InboxMessage(
                sender: message.sender.description, type: message.kind.description, data: message.payload, messageID: message.messageID,
                replyTo: message.replyTo, receivedAt: Self.now),
            identity: identity, quota: Self.inboxQuota)
        guard added else { return }
        arrivals[identity, default: 0] &+= 1
        if let spool, let uid = await owner(identity) { spool.write(stored, of: identity, owner: uid) }
    }

    /// Writes `identity`'s spool (made if needed, `owner`'s): whole when its inbox directory is
    /// new, so an owner sees what arrived before the spool was there (or after it was removed).
    func prepareSpool(of identity: String, owner uid: uid_t) throws {
        guard let spool, spool.prepare(identity, owner: uid) else { return }
        for message in try store.messages(identity: identity) { spool.write(message, of: identity, owner: uid) }
        for file in try store.files(identity: identity) {
            if let contents = try store.fileContents(identity: identity, id: file.id, offset: 0, length: file.size) {
                spool.write(file: file, contents: contents, of: identity, owner: uid)
            }
        }
    }

    /// Where `identity`'s inbox is copied for the official pilotctl, if it is.
    nonisolated func spoolInbox(of identity: String) -> String? { spool?.home(of: identity).map { $0 + "/.pilot/inbox" } }

    /// Removes `identity`'s spool (deleted, or given to another owner).
    func removeSpool(of identity: String) { spool?.remove(identity) }

    /// The id of `identity`'s newest message: what a reply must come after.
    func lastMessageID(of identity: String) throws -> Int64 { try store.lastMessageID(identity: identity) }

    /// The `message_id` of `identity`'s inbox record `name` (`TYPE-YYYYMMDD-HHMMSS.mmm-NNNNNN`),
    /// nil when `name` is not a record's name.
    func messageID(ofRecord name: String, of identity: String) throws(ControlFailure) -> String? {
        guard let id = InboxSpool.inboxID(ofRecord: name) else { return nil }
        let found: InboxMessage?
        do { found = try store.messages(identity: identity, after: id - 1, limit: 1).first } catch {
            throw ControlFailure(.unavailable, "inbox: \(error)")
        }
        guard let found, found.id == id, InboxSpool.recordName(found) == name else { throw ControlFailure(.notFound, "no inbox message \(name)") }
        guard let messageID = found.messageID else { throw ControlFailure(.invalidArgument, "inbox message \(name) carries no message id to answer") }
        return messageID
    }

    /// The reply from `sender` to `messageID` that reaches `identity`'s inbox after message
    /// `after`, within `limit`; nil if none came. 1.18's matching: a message naming `messageID`
    /// in `reply_to` wins; one naming another message is never taken; else the oldest new one
    /// from `sender` without `reply_to`, held back `namedReplyGrace` after it arrived when
    /// `sender` is known to name what its replies answer.
    func reply(to messageID: String, from sender: String, for identity: String, after: Int64, within limit: Duration) async throws -> InboxMessage? {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        var seen: UInt64?
        var unnamed: (message: InboxMessage, since: ContinuousClock.Instant)?
        while true {
            let count = arrivals[identity, default: 0]
            if seen != count {
                seen = count
                let new = try store.messages(identity: identity, after: after).filter { $0.sender == sender }
                if let named = new.first(where: { $0.replyTo == messageID }) { return named }
                if unnamed == nil, let first = new.first(where: { $0.replyTo == nil }) {
                    if !(try store.senderNamesReplies(identity: identity, sender: sender)) { return first }
                    unnamed = (first, clock.now)
                }
            }
            if let (message, since) = unnamed, clock.now >= since + Self.namedReplyGrace { return message }
            guard clock.now < deadline else { return unnamed?.message }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Keeps a file that arrived for `identity`, within its quota.
    func keep(_ file: DataExchangeService.File, for identity: String) async throws {
        var received = ReceivedFile(sender: file.sender.description, name: file.name, size: file.contents.count, receivedAt: Self.now)
        received.id = try store.addFile(
            received, contents: file.contents, identity: identity, quota: Self.receivedFilesQuota, files: Self.inboxQuota.messages)
        if let spool, let uid = await owner(identity) { spool.write(file: received, contents: file.contents, of: identity, owner: uid) }
    }

    /// A page of `identity`'s inbox (`MessageControl.Inbox`): up to `limit` messages after
    /// number `after`, whole when small, a message over `inlineBytes` without its data
    /// (`truncated`), and fewer messages when their data would pass `pageBytes`. With `clear`,
    /// what the page lists is deleted (from the spool too). Returns the page, how many the inbox
    /// held, and whether more follow.
    func page(of identity: String, after: Int64, limit: Int, clear: Bool) throws -> (messages: [InboxMessage], total: Int, more: Bool) {
        let total = try store.messageCount(identity: identity)
        let inline = MessageControl.Inbox.inlineBytes
        let rows = try store.messagePage(identity: identity, after: after, limit: limit + 1, inline: inline + 1)
        var page: [InboxMessage] = []
        var bytes = 0
        for row in rows.prefix(limit) {
            let shown = row.size > inline ? 0 : row.size
            if !page.isEmpty, bytes + shown > MessageControl.Inbox.pageBytes { break }
            bytes += shown
            page.append(row)
        }
        if clear, let last = page.last {
            try store.clearMessages(identity: identity, after: after, through: last.id)
            if let spool { for message in page { spool.remove(message, of: identity) } }
        }
        return (page, total, page.count < rows.count)
    }

    /// `length` bytes from `offset` of `identity`'s message `id` (nil: no such message).
    func messageContents(of identity: String, id: Int64, offset: Int, length: Int) throws -> [UInt8]? {
        try store.messageContents(identity: identity, id: id, offset: offset, length: length)
    }

    /// `identity`'s messages, oldest first.
    func messages(of identity: String) throws -> [InboxMessage] { try store.messages(identity: identity) }

    /// A page of `identity`'s received files (by id, `ListPage`), and with `clear` those it
    /// lists deleted (from the spool too). Returns the page, how many files there were, and the
    /// next page's `after`.
    func filePage(of identity: String, page: ListPage, clear: Bool, describe: (ReceivedFile) -> ReceivedFiles.File) throws
        -> (files: [ReceivedFile], total: Int, next: Int64?)
    {
        let all = try store.files(identity: identity)
        let (rows, next) = Paging.page(all, key: \.id, json: { ReceivedFiles.row(describe($0)) }, page: page)
        if clear, let last = rows.last {
            try store.clearFiles(identity: identity, after: page.after ?? 0, through: last.id)
            if let spool { for file in rows { spool.remove(file: file, of: identity) } }
        }
        return (rows, all.count, next)
    }

    /// `identity`'s received files, oldest first, without their contents.
    func files(of identity: String) throws -> [ReceivedFile] { try store.files(identity: identity) }

    /// `length` bytes from `offset` of `identity`'s file `id` (nil: no such file).
    func fileContents(of identity: String, id: Int64, offset: Int, length: Int) throws -> [UInt8]? {
        try store.fileContents(identity: identity, id: id, offset: offset, length: length)
    }

    /// Unix milliseconds.
    private static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
