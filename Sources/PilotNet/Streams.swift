import NIOConcurrencyHelpers
import NIOCore
import PilotWire

/// What a stream's user sees.
public enum StreamEvent: Sendable, Equatable {
    case data([UInt8])
    /// The peer finished sending.
    case finished
    /// Over; `reason` is nil for an orderly close.
    case closed(reason: String?)
}

/// Why a dial failed.
public struct StreamError: Error, Equatable, CustomStringConvertible {
    /// What went wrong, in words.
    public let description: String
    /// An error saying `description`.
    public init(_ description: String) { self.description = description }

    /// A flush's answer when the peer finished with `count` bytes of ours unacknowledged: they
    /// were not all received.
    static func peerFinished(unacknowledged count: Int) -> StreamError {
        StreamError("the peer finished with \(count) bytes unacknowledged")
    }
}

/// A stream's events as its reader takes them; taking data tells the stream the reader has
/// read it (its receive window follows the reader).
public struct StreamEvents: AsyncSequence, Sendable {
    /// One event of the stream.
    public typealias Element = StreamEvent
    let base: AsyncStream<StreamEvent>
    let backlog: ReadBacklog

    /// Takes events in order; counts data as read as it hands it out.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<StreamEvent>.AsyncIterator
        let backlog: ReadBacklog

        /// The next event, nil after the last.
        public mutating func next() async -> StreamEvent? {
            let event = await base.next()
            if case .data(let bytes)? = event { backlog.read(bytes.count) }
            return event
        }
    }

    /// An iterator over the events (one reader per stream).
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), backlog: backlog) }
}

/// What a stream's reader has been handed and not yet read. When the stream had to narrow its
/// window for it and the reader then reads it down to half the limit, `reopen` runs (on the
/// reader's side: it asks the loop to say so to the peer).
final class ReadBacklog: Sendable {
    private struct State {
        var unread = 0
        var narrowed = false
    }

    private let state = NIOLockedValueBox(State())
    private let reopen: @Sendable () -> Void

    init(reopen: @escaping @Sendable () -> Void) { self.reopen = reopen }

    var unread: Int { state.withLockedValue { $0.unread } }

    /// On the loop: `count` more bytes for the reader.
    func handed(_ count: Int) { state.withLockedValue { $0.unread += count } }

    /// Unread bytes past which the reader is far behind: the window it gets is narrowed, and
    /// is said to be open again once the reader is back under this.
    static let farBehind = StreamConnection.receiveBufferLimit / 2

    /// On the loop: the stream advertised a narrowed window for this backlog. True when the
    /// reader has caught up meanwhile: the caller says the window is open at once (`read`
    /// saw no narrowed window to reopen).
    func narrowed() -> Bool {
        state.withLockedValue { state in
            guard state.unread > Self.farBehind else { return true }
            state.narrowed = true
            return false
        }
    }

    /// The reader is gone (its task was cancelled): nothing it was handed will be read.
    func readerGone() { state.withLockedValue { $0 = State() } }

    /// The reader took `count` bytes.
    func read(_ count: Int) {
        let reopens = state.withLockedValue { state -> Bool in
            state.unread -= count
            guard state.narrowed, state.unread <= Self.farBehind else { return false }
            state.narrowed = false
            return true
        }
        if reopens { reopen() }
    }
}

/// A stream as its user holds it: events in order, writes and close. The connection itself
/// lives on the fabric's event loop.
public final class StreamHandle: Sendable {
    /// Both ends of the stream.
    public let key: StreamConnection.Key
    /// Its number among the fabric's streams (`StreamConnection.id`: 1.18's connection id, as
    /// `connections` lists it and the driver protocol names it).
    public let id: Int
    /// What arrives, in order; taking data reopens the window the reader filled.
    public let events: StreamEvents
    private let continuation: AsyncStream<StreamEvent>.Continuation
    private let fabric: Fabric
    private let backlog: ReadBacklog

    /// Bytes that arrived and that the reader has not taken from `events` yet. At
    /// `StreamConnection.receiveBufferLimit` the stream takes no more until it does.
    public var unread: Int { backlog.unread }

    /// What a writer may know without asking the event loop: whether the stream still takes
    /// bytes, how many it holds unacknowledged (as of the loop's last look) and how many are on
    /// their way to it.
    struct WriteState {
        var closed = false
        var unacknowledged = 0
        var handedOver = 0
    }

    private let writeState = NIOLockedValueBox(WriteState())

    init(key: StreamConnection.Key, id: Int, fabric: Fabric) {
        self.key = key
        self.id = id
        self.fabric = fabric
        let (stream, continuation) = AsyncStream.makeStream(of: StreamEvent.self)
        self.continuation = continuation
        let backlog = ReadBacklog { [fabric] in fabric.reopenWindow(key) }
        self.backlog = backlog
        events = StreamEvents(base: stream, backlog: backlog)
        // A reader whose task is cancelled will read nothing more: the stream is reset, rather
        // than left with a shut window that a sender would probe for ever.
        continuation.onTermination = { [fabric] termination in
            guard case .cancelled = termination else { return }
            backlog.readerGone()
            fabric.abortSoon(key)
        }
    }

    // The fabric's side of the handle: called on the loop only.

    /// Bytes for the reader (counted only if it is still there to read them).
    func deliver(_ bytes: [UInt8]) {
        backlog.handed(bytes.count)
        if case .enqueued = continuation.yield(.data(bytes)) { return }
        backlog.handed(-bytes.count)
    }

    /// The stream takes no more writes (it closed, or is closing).
    func markClosed() { writeState.withLockedValue { $0.closed = true } }

    /// The connection holds `unacknowledged` bytes, `handedOver` of them just handed over by a
    /// writer: one update, so no writer sees those bytes in neither count.
    func noteUnacknowledged(_ unacknowledged: Int, handedOver: Int) {
        writeState.withLockedValue {
            $0.unacknowledged = unacknowledged
            $0.handedOver -= handedOver
        }
    }

    /// `count` bytes handed over were not taken: the stream closed meanwhile.
    func returnHandedOver(_ count: Int) { writeState.withLockedValue { $0.handedOver -= count } }

    /// The window was narrowed for the reader's backlog: true when the reader has caught up
    /// meanwhile (then the window is said to be open at once).
    func windowNarrowed() -> Bool { backlog.narrowed() }

    /// The peer finished sending.
    func peerFinished() { continuation.yield(.finished) }

    /// The stream is over (`reason` nil: in order): the reader sees it, then the end.
    func closed(reason: String?) {
        continuation.yield(.closed(reason: reason))
        continuation.finish()
    }

    /// The stream is gone without a word (the fabric shut down, a dial failed): the end.
    func abandon() { continuation.finish() }

    /// Queues `bytes` for the peer. While the stream is open and holds less than
    /// `PortTable.writeLimit`, they are handed to the event loop and the call returns at once
    /// (as a socket write into its buffer); otherwise it waits for the queue to drain, or
    /// throws if the stream is closed. Bytes handed over to a stream that closes meanwhile are
    /// lost, as with a socket: the close shows in `events`.
    public func write(_ bytes: [UInt8]) async throws {
        let handedOver = writeState.withLockedValue { state -> Bool in
            guard !state.closed, state.unacknowledged + state.handedOver + bytes.count <= PortTable.writeLimit else { return false }
            state.handedOver += bytes.count
            return true
        }
        if handedOver {
            fabric.streamWriteNow(key, bytes, from: self)
        } else {
            try await fabric.streamWrite(key, bytes)
        }
    }

    /// Returns once the peer has acknowledged everything written so far; throws if the stream
    /// closes first. (A write returns when its bytes are queued; this says they arrived.)
    public func flush() async throws {
        try await fabric.streamFlush(key)
    }

    /// Ends the stream at once with a reset: what is unsent or unacknowledged is dropped.
    public func abort() async {
        await fabric.streamAbort(key)
    }

    /// Closes this side once everything written is acknowledged.
    public func close() async throws {
        try await fabric.streamClose(key)
    }

    /// Reads one message: until `complete` holds for what has arrived, `limit` bytes, the peer
    /// finishes, or `timeout` passes (then nothing is returned and the stream is done with).
    public func readMessage(limit: Int, timeout: Duration, complete: @escaping @Sendable ([UInt8]) -> Bool) async -> [UInt8] {
        await withTaskGroup(of: [UInt8]?.self) { group in
            group.addTask { [events] in
                var bytes: [UInt8] = []
                for await event in events {
                    guard case .data(let chunk) = event else { break }
                    bytes += chunk
                    if bytes.count >= limit || complete(bytes) { break }
                }
                return bytes
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
    }

    /// Reads until the peer finishes or the stream closes; returns the bytes.
    public func readAll(limit: Int = 64 << 20) async -> [UInt8] {
        var bytes: [UInt8] = []
        for await event in events {
            switch event {
            case .data(let chunk): bytes += chunk
            case .finished, .closed: return bytes
            }
            if bytes.count >= limit { return bytes }
        }
        return bytes
    }
}
