public import Logging
import PilotNet
public import PilotWire

/// Where the data-exchange service puts what it receives: an identity's inbox and its received
/// files (pilot-host's mailbox in `host.db`; a test's array). A throw is answered with an ERR,
/// and the sender knows the message was not kept.
public protocol DataExchangeInbox: Sendable {
    /// Keeps `message` for `identity`.
    func keep(_ message: DataExchangeService.Message, for identity: String) async throws
    /// Keeps `file` for `identity`.
    func keep(_ file: DataExchangeService.File, for identity: String) async throws
}

/// The data-exchange service (port 1001, `docs/PROTOCOL.md` §11), as 1.18's: text, JSON and
/// binary frames go to the identity's inbox, FILE frames to its received files; each frame is
/// answered with `ACK <TYPE> <n> bytes`, or `ERR ...` when it cannot be kept or is of a kind this
/// side does not take (1.18's streamed files then fall back to FILE). The stream stays open for
/// more frames until the peer finishes.
public struct DataExchangeService: Sendable {
    /// The port it serves.
    public static let port = Port.dataExchange

    /// A message that arrived (text, JSON or binary).
    public struct Message: Sendable, Equatable {
        /// Who sent it (the address the tunnel authenticated).
        public let sender: Address
        /// Its kind: `.text`, `.json` or `.binary`.
        public let kind: DataExchangeFrame.Kind
        /// Its bytes.
        public let payload: [UInt8]
        /// The sender's id of it (a tagged frame), and what it answers.
        public let messageID: String?
        /// The id of the message it answers, if any.
        public let replyTo: String?

        /// A message from `sender`.
        public init(sender: Address, kind: DataExchangeFrame.Kind, payload: [UInt8], messageID: String?, replyTo: String?) {
            self.sender = sender
            self.kind = kind
            self.payload = payload
            self.messageID = messageID
            self.replyTo = replyTo
        }
    }

    /// A file that arrived.
    public struct File: Sendable, Equatable {
        /// Who sent it.
        public let sender: Address
        /// Its base name, made safe (`DataExchangeFrame.safeFileName`; "file" when nothing is left).
        public let name: String
        /// Its bytes.
        public let contents: [UInt8]

        /// A file from `sender`.
        public init(sender: Address, name: String, contents: [UInt8]) {
            self.sender = sender
            self.name = name
            self.contents = contents
        }
    }

    private let inbox: any DataExchangeInbox
    private let logger: Logger
    private let maxPayload: Int

    /// The service, keeping what arrives in `inbox`; a frame over `maxPayload` bytes ends its
    /// stream.
    public init(inbox: any DataExchangeInbox, maxPayload: Int = DataExchangeFrame.maxPayload, logger: Logger) {
        self.inbox = inbox
        self.logger = logger
        self.maxPayload = maxPayload
    }

    /// Serves `stream`, which a peer opened to `identity`'s port 1001, until the peer finishes or
    /// sends something that is not a frame. Returns at once; the serving goes on in a task.
    public func serve(_ stream: some ServiceStream, for identity: String) {
        Task { await serveNow(stream, for: identity) }
    }

    /// Serves `stream` until it ends, then closes it.
    func serveNow(_ stream: some ServiceStream, for identity: String) async {
        var decoder = DataExchangeFrame.Decoder(maxPayload: maxPayload)
        let sender = stream.remote
        reading: for await event in stream.events {
            guard case .data(let bytes) = event else { break }
            decoder.append(bytes)
            do {
                while let frame = try decoder.next() {
                    let reply = await answer(frame, from: sender, for: identity)
                    try await stream.write(DataExchangeFrame(kind: .text, payload: Array(reply.utf8)).encoded())
                }
            } catch {
                logger.info("data exchange stream closed", metadata: ["PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(sender)", "error": "\(error)"])
                break reading
            }
        }
        try? await stream.close()
    }

    /// Keeps one frame and says how it went, in 1.18's words.
    private func answer(_ frame: DataExchangeFrame, from sender: Address, for identity: String) async -> String {
        // The ERR names the kind the ACK would have named: a tagged frame's inner one.
        let untagged = try? frame.untagged()
        let kind = untagged?.frame.kind ?? frame.kind
        do {
            let (inner, messageID, replyTo) = try untagged ?? frame.untagged()
            switch inner.kind {
            case .text, .json, .binary:
                try await inbox.keep(Message(sender: sender, kind: inner.kind, payload: inner.payload, messageID: messageID, replyTo: replyTo), for: identity)
                return "ACK \(inner.kind) \(inner.payload.count) bytes"
            case .file:
                let (name, contents) = try inner.fileParts()
                try await inbox.keep(File(sender: sender, name: DataExchangeFrame.safeFileName(name) ?? "file", contents: Array(contents)), for: identity)
                return "ACK FILE \(contents.count) bytes"
            default:
                return "ERR \(inner.kind) unsupported frame type"
            }
        } catch {
            return "ERR \(kind) save failed: \(error)"
        }
    }

    /// Sends `frame` on `stream` (open to a peer's port 1001) and returns the peer's answer, which
    /// must be an ACK; closes the stream once answered (resets it when there is no answer).
    /// Throws `ControlFailure(.connectionFailed)` when the peer refuses it, closes without an
    /// answer, or answers with something that is not a frame.
    public static func exchange(_ frame: DataExchangeFrame, over stream: some ServiceStream) async throws -> String {
        try await stream.write(frame.encoded())
        var decoder = DataExchangeFrame.Decoder()
        var answer: String?
        do {
            for await event in stream.events {
                guard case .data(let bytes) = event else { break }
                decoder.append(bytes)
                if let reply = try decoder.next() {
                    answer = String(decoding: reply.payload, as: UTF8.self)
                    break
                }
            }
        } catch {
            // Not a frame: nothing more on this stream is worth reading.
            await stream.abort()
            throw ControlFailure(.connectionFailed, "the peer answered with something that is not a frame: \(error)")
        }
        guard let answer else {
            await stream.abort()
            throw ControlFailure(.connectionFailed, "the peer closed the stream without an answer")
        }
        try? await stream.close()
        guard answer.hasPrefix("ACK") else { throw ControlFailure(.connectionFailed, "the peer refused it: \(answer.prefix(200))") }
        return answer
    }
}
