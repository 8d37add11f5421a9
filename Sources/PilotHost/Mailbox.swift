import Foundation
import PilotServices
import PilotStore
import PilotWire

/// Every identity's mailbox: the messages and files peers sent it (port 1001), kept in
/// `host.db` until its owner reads and clears them. It has a connection of its own to
/// `host.db` (WAL: the pool's writes and these do not wait for each other's actor), and what it
/// keeps goes away with the identity (the rows cascade).
actor Mailbox: DataExchangeInbox {
    /// What one identity's received files may hold in all; a file beyond is refused (its
    /// sender gets an ERR) and nothing is lost of what is held.
    static let receivedFilesQuota = 256 << 20

    private let store: HostStore

    /// The mailbox in the `host.db` at `path` (opened, not created: the pool made it).
    init(path: String) throws {
        store = try HostStore(path: path)
    }

    /// Keeps a message that arrived for `identity`; throws if `identity` does not exist.
    func keep(_ message: DataExchangeService.Message, for identity: String) throws {
        try store.addMessage(
            InboxMessage(
                sender: message.sender.description, type: message.kind.description, data: message.payload, messageID: message.messageID,
                replyTo: message.replyTo, receivedAt: Self.now),
            identity: identity)
    }

    /// Keeps a file that arrived for `identity`, within its quota.
    func keep(_ file: DataExchangeService.File, for identity: String) throws {
        _ = try store.addFile(
            ReceivedFile(sender: file.sender.description, name: file.name, size: file.contents.count, receivedAt: Self.now),
            contents: file.contents, identity: identity, quota: Self.receivedFilesQuota)
    }

    /// `identity`'s messages, oldest first.
    func messages(of identity: String) throws -> [InboxMessage] { try store.messages(identity: identity) }

    /// Deletes `identity`'s messages; returns how many there were.
    @discardableResult
    func clearMessages(of identity: String) throws -> Int { try store.clearMessages(identity: identity) }

    /// `identity`'s received files, oldest first, without their contents.
    func files(of identity: String) throws -> [ReceivedFile] { try store.files(identity: identity) }

    /// `length` bytes from `offset` of `identity`'s file `id` (nil: no such file).
    func fileContents(of identity: String, id: Int64, offset: Int, length: Int) throws -> [UInt8]? {
        try store.fileContents(identity: identity, id: id, offset: offset, length: length)
    }

    /// Deletes `identity`'s received files; returns how many there were.
    @discardableResult
    func clearFiles(of identity: String) throws -> Int { try store.clearFiles(identity: identity) }

    /// Unix milliseconds.
    private static var now: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
