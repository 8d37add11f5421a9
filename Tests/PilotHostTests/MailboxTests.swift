import PilotServices
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

@testable import PilotHost

/// The mailbox keeps what the data-exchange service hands it in `host.db`, for existing
/// identities only, within each identity's quota of received files.
final class MailboxTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-mailbox")
        let store = try HostStore(path: directory.path("host.db"))
        for name in ["alice", "bob"] {
            try store.create(IdentityRecord(name: name, sealedKey: [1], ownerUID: 1000, createdAt: 0))
        }
    }

    private let sender = Address(node: 0x2A)

    func testAMessageIsKeptWithItsKindTagsAndSenderAndReadBackThroughAnotherConnection() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        try await mailbox.keep(
            DataExchangeService.Message(sender: sender, kind: .json, payload: Array(#"{"a":1}"#.utf8), messageID: "m1", replyTo: "m0"),
            for: "alice")
        // Another connection (the pool's, say) sees the row: it is in host.db, not in memory.
        let rows = try HostStore(path: directory.path("host.db")).messages(identity: "alice")
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows.first?.sender, sender.description)
        XCTAssertEqual(rows.first?.type, "JSON")
        XCTAssertEqual(rows.first?.data, Array(#"{"a":1}"#.utf8))
        XCTAssertEqual(rows.first?.messageID, "m1")
        XCTAssertEqual(rows.first?.replyTo, "m0")
        let bobs = try await mailbox.messages(of: "bob")
        XCTAssertEqual(bobs, [], "a message went to the wrong identity")
        let cleared = try await mailbox.page(of: "alice", after: 0, limit: 5000, clear: true).messages.count
        XCTAssertEqual(cleared, 1)
        let left = try await mailbox.messages(of: "alice")
        XCTAssertEqual(left, [])
    }

    func testNothingIsKeptForAnIdentityThatDoesNotExist() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        do {
            try await mailbox.keep(DataExchangeService.Message(sender: sender, kind: .text, payload: [1], messageID: nil, replyTo: nil), for: "carol")
            XCTFail("a message for an unknown identity was kept")
        } catch {}
        do {
            try await mailbox.keep(DataExchangeService.File(sender: sender, name: "a", contents: [1]), for: "carol")
            XCTFail("a file for an unknown identity was kept")
        } catch {}
    }

    func testAFileIsKeptAndReadInPiecesAndTheQuotaRefusesWhatWouldPassIt() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        let contents = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await mailbox.keep(DataExchangeService.File(sender: sender, name: "report.bin", contents: contents), for: "alice")
        let files = try await mailbox.files(of: "alice")
        XCTAssertEqual(files.map(\.name), ["report.bin"])
        XCTAssertEqual(files.first?.size, contents.count)
        let id = try XCTUnwrap(files.first?.id)
        let piece = try await mailbox.fileContents(of: "alice", id: id, offset: 4000, length: 3000)
        XCTAssertEqual(piece, Array(contents[4000..<7000]))
        let missing = try await mailbox.fileContents(of: "bob", id: id, offset: 0, length: 10)
        XCTAssertNil(missing, "bob read alice's file")

        // Up to the quota, then refused; what was held stays.
        let big = [UInt8](repeating: 7, count: Mailbox.receivedFilesQuota - contents.count)
        try await mailbox.keep(DataExchangeService.File(sender: sender, name: "big", contents: big), for: "alice")
        do {
            try await mailbox.keep(DataExchangeService.File(sender: sender, name: "one-more", contents: [1]), for: "alice")
            XCTFail("a file past the quota was kept")
        } catch {}
        let held = try await mailbox.files(of: "alice")
        XCTAssertEqual(held.map(\.name), ["report.bin", "big"])
        // Bob's quota is his own.
        try await mailbox.keep(DataExchangeService.File(sender: sender, name: "b", contents: [1, 2, 3]), for: "bob")
        let describe: (ReceivedFile) -> ReceivedFiles.File = { ReceivedFiles.File(id: $0.id, name: $0.name, from: $0.sender, bytes: $0.size, receivedAt: "") }
        let cleared = try await mailbox.filePage(of: "alice", page: ListPage(), clear: true, describe: describe).files.count
        XCTAssertEqual(cleared, 2)
        let kept = try await mailbox.files(of: "bob")
        XCTAssertEqual(kept.map(\.name), ["b"], "clearing alice's files took bob's")
    }

    private func message(_ text: String, from sender: Address? = nil, id: String? = nil, replyTo: String? = nil) -> DataExchangeService.Message {
        DataExchangeService.Message(sender: sender ?? self.sender, kind: .text, payload: Array(text.utf8), messageID: id, replyTo: replyTo)
    }

    func testAMessageSentAgainWithItsIdIsKeptOnceAndAFullInboxRefusesMore() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        try await mailbox.keep(message("once", id: "m1"), for: "alice")
        try await mailbox.keep(message("once", id: "m1"), for: "alice")
        // Another sender may use the same id; no id is never a repeat.
        try await mailbox.keep(message("other", from: Address(node: 0x2B), id: "m1"), for: "alice")
        try await mailbox.keep(message("plain"), for: "alice")
        try await mailbox.keep(message("plain"), for: "alice")
        let kept = try await mailbox.messages(of: "alice").map { String(decoding: $0.data, as: UTF8.self) }
        XCTAssertEqual(kept, ["once", "other", "plain", "plain"])

        let store = try HostStore(path: directory.path("host.db"))
        let quota = InboxQuota(messages: 3, bytes: 1 << 20)
        for index in 0..<3 { _ = try store.addMessage(InboxMessage(sender: "s", type: "TEXT", data: [UInt8(index)], receivedAt: 0), identity: "bob", quota: quota) }
        XCTAssertThrowsError(try store.addMessage(InboxMessage(sender: "s", type: "TEXT", data: [9], receivedAt: 0), identity: "bob", quota: quota))
        XCTAssertThrowsError(
            try store.addMessage(InboxMessage(sender: "s", type: "TEXT", data: [UInt8](repeating: 1, count: 2 << 20), receivedAt: 0), identity: "alice", quota: quota),
            "a message past the byte quota was kept")
        XCTAssertEqual(try store.messages(identity: "bob").count, 3, "a refused message removed others")
    }

    func testAReplyNamingTheMessageWinsAndOneNamingAnotherIsNeverTaken() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        try await mailbox.keep(message("before"), for: "alice")
        let after = try await mailbox.lastMessageID(of: "alice")
        try await mailbox.keep(message("for another", id: "r1", replyTo: "other"), for: "alice")
        try await mailbox.keep(message("from a stranger", from: Address(node: 0x99), id: "r2", replyTo: "q1"), for: "alice")
        // The sender names what its replies answer, so its unnamed message is held back, and the
        // named one that follows within 0.75 s wins.
        try await mailbox.keep(message("unnamed", id: "r3"), for: "alice")
        let named = message("named", id: "r4", replyTo: "q1")
        Task {
            try await Task.sleep(for: .milliseconds(200))
            try await mailbox.keep(named, for: "alice")
        }
        let reply = try await mailbox.reply(to: "q1", from: sender.description, for: "alice", after: after, within: .seconds(5))
        XCTAssertEqual(reply.map { String(decoding: $0.data, as: UTF8.self) }, "named")

        // Nothing from the sender after `after` that fits: nil at the limit.
        let last = try await mailbox.lastMessageID(of: "alice")
        try await mailbox.keep(message("for another again", replyTo: "zzz"), for: "alice")
        let none = try await mailbox.reply(to: "q2", from: sender.description, for: "alice", after: last, within: .milliseconds(300))
        XCTAssertNil(none)
    }

    func testAnUnnamedReplyIsTakenAtOnceFromASenderThatNeverNamesReplies() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        let clock = ContinuousClock()
        let started = clock.now
        let sure = message("sure")
        Task {
            try await Task.sleep(for: .milliseconds(100))
            try await mailbox.keep(sure, for: "alice")
        }
        let reply = try await mailbox.reply(to: "q1", from: sender.description, for: "alice", after: 0, within: .seconds(5))
        XCTAssertEqual(reply.map { String(decoding: $0.data, as: UTF8.self) }, "sure")
        XCTAssertLessThan(clock.now - started, .seconds(4), "held back as if the sender named its replies")
    }

    func testTheInboxIsListedInPagesWithLargeMessagesLeftToBeReadInPieces() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        let large = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try await mailbox.keep(message("small one"), for: "alice")
        try await mailbox.keep(DataExchangeService.Message(sender: sender, kind: .binary, payload: large, messageID: nil, replyTo: nil), for: "alice")
        try await mailbox.keep(message("small two"), for: "alice")
        let (page, total, more) = try await mailbox.page(of: "alice", after: 0, limit: 5000, clear: false)
        XCTAssertEqual(total, 3)
        XCTAssertFalse(more)
        XCTAssertEqual(page.map(\.size), [9, 100_000, 9])
        XCTAssertLessThanOrEqual(page[1].data.count, MessageControl.Inbox.inlineBytes + 1, "a large message's data was read whole into the page")
        var whole: [UInt8] = []
        while whole.count < large.count {
            let piece = try await mailbox.messageContents(of: "alice", id: page[1].id, offset: whole.count, length: FileChunk.size)
            guard let piece, !piece.isEmpty else { break }
            whole += piece
        }
        XCTAssertEqual(whole, large)

        // Twenty messages of 60 KiB: a page stops before 640 KiB of data; the pages cover all, once.
        for index in 0..<20 {
            try await mailbox.keep(DataExchangeService.Message(sender: sender, kind: .binary, payload: [UInt8](repeating: UInt8(index), count: 60 << 10), messageID: nil, replyTo: nil), for: "bob")
        }
        var seen: [Int64] = []
        var after: Int64 = 0
        var pages = 0
        while pages < 10 {
            let (messages, _, more) = try await mailbox.page(of: "bob", after: after, limit: 5000, clear: false)
            pages += 1
            XCTAssertLessThanOrEqual(messages.reduce(0) { $0 + $1.data.count }, MessageControl.Inbox.pageBytes)
            seen += messages.map(\.id)
            guard more, let last = messages.last else { break }
            after = last.id
        }
        XCTAssertEqual(seen.count, 20)
        XCTAssertEqual(Set(seen).count, 20)
        XCTAssertGreaterThan(pages, 1)

        // clear deletes what the page listed, not what came after it.
        let (first, _, _) = try await mailbox.page(of: "bob", after: 0, limit: 5, clear: true)
        XCTAssertEqual(first.count, 5)
        let left = try await mailbox.messages(of: "bob").map(\.id)
        XCTAssertEqual(left, Array(seen.dropFirst(5)))
    }

    func testReceivedFilesAreListedInPagesAndClearedOnlyAsListed() async throws {
        let mailbox = try Mailbox(path: directory.path("host.db"))
        for index in 0..<3 { try await mailbox.keep(DataExchangeService.File(sender: sender, name: "f\(index)", contents: [UInt8(index)]), for: "alice") }
        let describe: (ReceivedFile) -> ReceivedFiles.File = { ReceivedFiles.File(id: $0.id, name: $0.name, from: $0.sender, bytes: $0.size, receivedAt: "") }
        let first = try await mailbox.filePage(of: "alice", page: ListPage(limit: 2), clear: true, describe: describe)
        XCTAssertEqual(first.files.map(\.name), ["f0", "f1"])
        XCTAssertEqual(first.total, 3)
        XCTAssertEqual(first.next, first.files.last?.id)
        // Cleared: the two listed; a file that came meanwhile stays with the one not listed.
        try await mailbox.keep(DataExchangeService.File(sender: sender, name: "late", contents: [9]), for: "alice")
        let left = try await mailbox.files(of: "alice").map(\.name)
        XCTAssertEqual(left, ["f2", "late"])
    }
}
