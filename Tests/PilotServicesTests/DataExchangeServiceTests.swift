import Logging
import NIOConcurrencyHelpers
import PilotNet
import PilotServices
import PilotWire
import XCTest

/// The data-exchange service over fake streams: each frame a peer sends is kept in the inbox and
/// answered, in order, with 1.18's ACK or ERR text; and the client's side, `exchange`.
final class DataExchangeServiceTests: XCTestCase {
    /// What the service kept, for whom; refuses everything when told to.
    private final class RecordingInbox: DataExchangeInbox {
        struct Failure: Error {}

        private struct Kept {
            var messages: [(identity: String, message: DataExchangeService.Message)] = []
            var files: [(identity: String, file: DataExchangeService.File)] = []
        }

        private let kept = NIOLockedValueBox(Kept())
        private let refuses: Bool

        init(refuses: Bool = false) { self.refuses = refuses }

        var messages: [DataExchangeService.Message] { kept.withLockedValue { $0.messages.map(\.message) } }
        var files: [DataExchangeService.File] { kept.withLockedValue { $0.files.map(\.file) } }
        var identities: [String] { kept.withLockedValue { $0.messages.map(\.identity) + $0.files.map(\.identity) } }

        func keep(_ message: DataExchangeService.Message, for identity: String) async throws {
            guard !refuses else { throw Failure() }
            kept.withLockedValue { $0.messages.append((identity, message)) }
        }

        func keep(_ file: DataExchangeService.File, for identity: String) async throws {
            guard !refuses else { throw Failure() }
            kept.withLockedValue { $0.files.append((identity, file)) }
        }
    }

    private let here = Address(node: 1)
    private let peer = Address(node: 42)

    /// A stream a peer opened to alice's port 1001, served: the served end and the peer's.
    private func served(by inbox: RecordingInbox) -> (served: FakeStream, peer: FakeStream) {
        let (served, peerEnd) = FakeStream.pair(local: here, remote: peer)
        DataExchangeService(inbox: inbox, logger: Logger(label: "data-exchange-test")).serve(served, for: "alice")
        return (served, peerEnd)
    }

    /// The frames `stream` wrote, decoded.
    private func frames(writtenBy stream: FakeStream) throws -> [DataExchangeFrame] {
        var decoder = DataExchangeFrame.Decoder()
        decoder.append(stream.written)
        var frames: [DataExchangeFrame] = []
        while let frame = try decoder.next() { frames.append(frame) }
        XCTAssertEqual(decoder.bufferedCount, 0, "a partial frame was written")
        return frames
    }

    /// The answers the service wrote once it has written `count`; fails if it does not within 5 s.
    private func answers(_ count: Int, from stream: FakeStream, file: StaticString = #filePath, line: UInt = #line) async throws -> [String] {
        let answered = await eventually { stream.writes.count >= count }
        XCTAssertTrue(answered, "\(stream.writes.count) answers, not \(count)", file: file, line: line)
        let frames = try frames(writtenBy: stream)
        XCTAssertEqual(frames.map(\.kind), Array(repeating: .text, count: frames.count), "answers are TEXT frames", file: file, line: line)
        return frames.map { String(decoding: $0.payload, as: UTF8.self) }
    }

    func testServesPort1001() {
        XCTAssertEqual(DataExchangeService.port, 1001)
        XCTAssertEqual(DataExchangeService.port, Port.dataExchange)
    }

    // MARK: Serving

    func testTextJSONAndBinaryAreKeptAndAcknowledgedWithTheirTypeAndSize() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        let sent: [(DataExchangeFrame.Kind, [UInt8])] = [
            (.text, Array("hello".utf8)), (.json, Array("{\"a\": [1, 2]}".utf8)), (.binary, [0, 1, 2, 255]),
        ]
        for (kind, payload) in sent {
            try await peerEnd.write(DataExchangeFrame(kind: kind, payload: payload).encoded())
        }
        let answers = try await answers(3, from: served)
        XCTAssertEqual(answers, ["ACK TEXT 5 bytes", "ACK JSON 13 bytes", "ACK BINARY 4 bytes"])
        XCTAssertEqual(inbox.messages.map(\.kind), [.text, .json, .binary])
        XCTAssertEqual(inbox.messages.map(\.payload), sent.map(\.1))
        XCTAssertEqual(inbox.messages.map(\.sender), [peer, peer, peer])
        XCTAssertEqual(inbox.messages.map(\.messageID), [nil, nil, nil])
        XCTAssertEqual(inbox.messages.map(\.replyTo), [nil, nil, nil])
        XCTAssertEqual(inbox.identities, ["alice", "alice", "alice"])
        XCTAssertEqual(inbox.files.count, 0)
        XCTAssertFalse(served.isClosed, "the service closed while the peer could send more")
    }

    func testATaggedFrameIsKeptAsItsInnerFrameWithItsIDs() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        let payload = Array("{\"ok\":true}".utf8)
        try await peerEnd.write(DataExchangeFrame.tagged(DataExchangeFrame(kind: .json, payload: payload), messageID: "m-2", replyTo: "m-1").encoded())
        try await peerEnd.write(DataExchangeFrame.tagged(DataExchangeFrame(kind: .text, payload: Array("hi".utf8)), messageID: "m-3").encoded())
        let answers = try await answers(2, from: served)
        XCTAssertEqual(answers, ["ACK JSON 11 bytes", "ACK TEXT 2 bytes"])
        XCTAssertEqual(inbox.messages.map(\.kind), [.json, .text])
        XCTAssertEqual(inbox.messages.first?.payload, payload)
        XCTAssertEqual(inbox.messages.map(\.messageID), ["m-2", "m-3"])
        XCTAssertEqual(inbox.messages.map(\.replyTo), ["m-1", nil])
    }

    func testAFileIsKeptUnderASafeBaseNameAndItsContentsAreCounted() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        let contents = Array("root:x:0:0".utf8)
        try await peerEnd.write(DataExchangeFrame.file(name: "../../etc/passwd", contents: contents).encoded())
        try await peerEnd.write(DataExchangeFrame.file(name: "..", contents: [7]).encoded())
        try await peerEnd.write(DataExchangeFrame.file(name: "report.pdf", contents: []).encoded())
        let answers = try await answers(3, from: served)
        XCTAssertEqual(answers, ["ACK FILE 10 bytes", "ACK FILE 1 bytes", "ACK FILE 0 bytes"])
        XCTAssertEqual(inbox.files.map(\.name), ["passwd", "file", "report.pdf"])
        XCTAssertEqual(inbox.files.map(\.contents), [contents, [7], []])
        XCTAssertEqual(inbox.files.map(\.sender), [peer, peer, peer])
        XCTAssertEqual(inbox.messages.count, 0)
    }

    func testAnUnsupportedKindIsRefusedAndTheStreamServesOn() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        try await peerEnd.write(DataExchangeFrame(kind: DataExchangeFrame.Kind(rawValue: 99), payload: [1, 2, 3]).encoded())
        try await peerEnd.write(DataExchangeFrame(kind: .text, payload: Array("after".utf8)).encoded())
        let answers = try await answers(2, from: served)
        XCTAssertEqual(answers, ["ERR UNKNOWN(99) unsupported frame type", "ACK TEXT 5 bytes"])
        XCTAssertEqual(inbox.messages.map(\.payload), [Array("after".utf8)])
    }

    func testWhatTheInboxRefusesIsAnsweredWithSaveFailed() async throws {
        let inbox = RecordingInbox(refuses: true)
        let (served, peerEnd) = served(by: inbox)
        try await peerEnd.write(DataExchangeFrame(kind: .text, payload: Array("hello".utf8)).encoded())
        try await peerEnd.write(DataExchangeFrame.file(name: "a.txt", contents: [1]).encoded())
        try await peerEnd.write(DataExchangeFrame.tagged(DataExchangeFrame(kind: .json, payload: Array("{}".utf8)), messageID: "m-9").encoded())
        let answers = try await answers(3, from: served)
        XCTAssertEqual(answers.count, 3)
        XCTAssertTrue(answers[0].hasPrefix("ERR TEXT save failed"), answers[0])
        XCTAssertTrue(answers[1].hasPrefix("ERR FILE save failed"), answers[1])
        // A tagged frame's ERR names its message's kind, as its ACK would.
        XCTAssertTrue(answers[2].hasPrefix("ERR JSON save failed"), answers[2])
    }

    func testTwoFramesInOneWriteGetTwoAnswersInOrder() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        let first = DataExchangeFrame(kind: .text, payload: Array("one".utf8)).encoded()
        let second = DataExchangeFrame(kind: .binary, payload: Array("two!!".utf8)).encoded()
        try await peerEnd.write(first + second)
        let answers = try await answers(2, from: served)
        XCTAssertEqual(answers, ["ACK TEXT 3 bytes", "ACK BINARY 5 bytes"])
        XCTAssertEqual(inbox.messages.map(\.payload), [Array("one".utf8), Array("two!!".utf8)])
    }

    func testAFrameSplitAcrossWritesIsAnsweredOnceWhole() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        let frame = DataExchangeFrame(kind: .text, payload: Array("split in three".utf8)).encoded()
        try await peerEnd.write(Array(frame[0..<3]))
        try await peerEnd.write(Array(frame[3..<10]))
        try await peerEnd.write(Array(frame[10...]))
        let answers = try await answers(1, from: served)
        XCTAssertEqual(answers, ["ACK TEXT 14 bytes"])
        XCTAssertEqual(inbox.messages.map(\.payload), [Array("split in three".utf8)])
    }

    func testTheStreamIsClosedWhenThePeerFinishes() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        try await peerEnd.write(DataExchangeFrame(kind: .text, payload: Array("bye".utf8)).encoded())
        try await peerEnd.close()
        let closed = await eventually { served.isClosed }
        XCTAssertTrue(closed)
        XCTAssertEqual(try frames(writtenBy: served).count, 1, "the frame before the finish was not answered")
    }

    func testAFrameLongerThanTheLimitEndsTheStreamUnanswered() async throws {
        let inbox = RecordingInbox()
        let (served, peerEnd) = served(by: inbox)
        var header = ByteWriter(capacity: 8)
        header.writeUInt32(DataExchangeFrame.Kind.binary.rawValue)
        header.writeUInt32(UInt32(DataExchangeFrame.maxPayload + 1))
        try await peerEnd.write(header.bytes)
        let closed = await eventually { served.isClosed }
        XCTAssertTrue(closed, "the stream stayed open after a frame over the limit")
        XCTAssertEqual(served.written, [])
        XCTAssertEqual(inbox.messages.count, 0)
    }

    // MARK: The client's side

    /// Reads one frame on `stream`, the server's end, and answers it with `reply` (or finishes
    /// without a word); returns the frame.
    private func answer(on stream: FakeStream, with reply: String?) -> Task<DataExchangeFrame?, any Error> {
        Task {
            var decoder = DataExchangeFrame.Decoder()
            for await event in stream.events {
                guard case .data(let bytes) = event else { break }
                decoder.append(bytes)
                guard let frame = try decoder.next() else { continue }
                if let reply {
                    try await stream.write(DataExchangeFrame(kind: .text, payload: Array(reply.utf8)).encoded())
                } else {
                    try await stream.close()
                }
                return frame
            }
            return nil
        }
    }

    func testExchangeWritesTheFrameAndReturnsTheACK() async throws {
        let (client, server) = FakeStream.pair(local: peer, remote: here)
        let frame = DataExchangeFrame.tagged(DataExchangeFrame(kind: .text, payload: Array("hello".utf8)), messageID: "m-1")
        let received = answer(on: server, with: "ACK TEXT 5 bytes")
        let ack = try await withTimeout(.seconds(5)) { try await DataExchangeService.exchange(frame, over: client) }
        XCTAssertEqual(ack, "ACK TEXT 5 bytes")
        XCTAssertEqual(client.writes, [frame.encoded()])
        let serverSaw = try await received.value
        XCTAssertEqual(serverSaw, frame)
        XCTAssertTrue(client.isClosed, "the stream was left open once answered")
    }

    func testExchangeAgainstTheServiceKeepsTheFrame() async throws {
        let inbox = RecordingInbox()
        let (client, served) = FakeStream.pair(local: peer, remote: here)
        DataExchangeService(inbox: inbox, logger: Logger(label: "data-exchange-test")).serve(served, for: "alice")
        let ack = try await withTimeout(.seconds(5)) {
            try await DataExchangeService.exchange(DataExchangeFrame.file(name: "notes.txt", contents: [1, 2, 3]), over: client)
        }
        XCTAssertEqual(ack, "ACK FILE 3 bytes")
        XCTAssertEqual(inbox.files.map(\.name), ["notes.txt"])
        // The client closed: the service closes its end too.
        let closed = await eventually { served.isClosed }
        XCTAssertTrue(closed)
    }

    func testExchangeThrowsTheRefusalOnERR() async throws {
        let (client, server) = FakeStream.pair(local: peer, remote: here)
        _ = answer(on: server, with: "ERR TEXT save failed: disk full")
        do {
            let ack = try await withTimeout(.seconds(5)) {
                try await DataExchangeService.exchange(DataExchangeFrame(kind: .text, payload: [1]), over: client)
            }
            XCTFail("an ERR was taken for an answer: \(ack)")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .connectionFailed)
            XCTAssertTrue(failure.message.contains("ERR TEXT save failed: disk full"), failure.message)
        }
        XCTAssertTrue(client.isClosed)
    }

    func testExchangeThrowsWhenThePeerFinishesWithoutAnswering() async throws {
        let (client, server) = FakeStream.pair(local: peer, remote: here)
        _ = answer(on: server, with: nil)
        do {
            let ack = try await withTimeout(.seconds(5)) {
                try await DataExchangeService.exchange(DataExchangeFrame(kind: .text, payload: [1]), over: client)
            }
            XCTFail("no answer was taken for one: \(ack)")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .connectionFailed)
            XCTAssertTrue(failure.message.contains("without an answer"), failure.message)
        }
        XCTAssertTrue(client.isAborted, "the stream with no answer was left open")
    }

    func testExchangeResetsTheStreamWhenTheAnswerIsNotAFrame() async throws {
        let (client, server) = FakeStream.pair(local: peer, remote: here)
        Task {
            for await event in server.events {
                guard case .data = event else { break }
                // A length far past what a frame may carry.
                try? await server.write([0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 8))
                break
            }
        }
        do {
            let ack = try await withTimeout(.seconds(5)) {
                try await DataExchangeService.exchange(DataExchangeFrame(kind: .text, payload: [1]), over: client)
            }
            XCTFail("garbage was taken for an answer: \(ack)")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .connectionFailed)
            XCTAssertTrue(failure.message.contains("not a frame"), failure.message)
        }
        XCTAssertTrue(client.isAborted, "the stream that answered garbage was left open")
    }
}
