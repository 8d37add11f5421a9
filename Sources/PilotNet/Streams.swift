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
    public let description: String
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
    public typealias Element = StreamEvent
    let base: AsyncStream<StreamEvent>
    let backlog: ReadBacklog

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<StreamEvent>.AsyncIterator
        let backlog: ReadBacklog

        public mutating func next() async -> StreamEvent? {
            let event = await base.next()
            if case .data(let bytes)? = event { backlog.read(bytes.count) }
            return event
        }
    }

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
    public let key: StreamConnection.Key
    public let events: StreamEvents
    let continuation: AsyncStream<StreamEvent>.Continuation
    private let fabric: Fabric
    let backlog: ReadBacklog

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

    let writeState = NIOLockedValueBox(WriteState())

    init(key: StreamConnection.Key, fabric: Fabric) {
        self.key = key
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

    /// On the loop: bytes for the reader (counted only if it is still there to read them).
    func deliver(_ bytes: [UInt8]) {
        backlog.handed(bytes.count)
        if case .enqueued = continuation.yield(.data(bytes)) { return }
        backlog.handed(-bytes.count)
    }

    /// Queues `bytes` for the peer. While the stream is open and holds less than
    /// `StreamTable.writeLimit`, they are handed to the event loop and the call returns at once
    /// (as a socket write into its buffer); otherwise it waits for the queue to drain, or
    /// throws if the stream is closed. Bytes handed over to a stream that closes meanwhile are
    /// lost, as with a socket: the close shows in `events`.
    public func write(_ bytes: [UInt8]) async throws {
        let handedOver = writeState.withLockedValue { state -> Bool in
            guard !state.closed, state.unacknowledged + state.handedOver + bytes.count <= StreamTable.writeLimit else { return false }
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

/// The streams and listening ports of every identity of a fabric. Loop-confined.
final class StreamTable {
    /// The counts of streams that are gone (see `StreamConnection.retransmitted`).
    var retransmittedByClosed = 0
    var shutWindowsByClosed = 0
    struct Entry {
        let connection: StreamConnection
        let handle: StreamHandle?
        /// A dial waiting for its SYN|ACK.
        var dialed: EventLoopPromise<StreamHandle>?
        /// Writers waiting for the queue to drain below `writeLimit`.
        var writers: [Waiter] = []
        /// Served on the loop by the echo service, with no handle.
        var echoes: Bool { connection.echoesBack }
    }

    /// A writer waiting until no more than `unacknowledged` bytes wait for the peer's ACK (0: a
    /// flush, waiting for all of them).
    struct Waiter {
        let unacknowledged: Int
        let promise: EventLoopPromise<Void>
    }

    /// What a listening port does with a new stream.
    enum Listener {
        case accept(Acceptor)
        /// Every byte back, and a close when the peer finishes; run on the loop itself, so a
        /// probe costs no hop to a task.
        case echo
    }

    /// A writer waits while more than this is written and not acknowledged.
    static let writeLimit = 4 << 20

    typealias Acceptor = @Sendable (StreamHandle) -> Void

    var entries: [StreamConnection.Key: Entry] = [:]
    /// Open streams per local identity and per (identity, port), for the limits below.
    private(set) var perIdentity: [UInt32: Int] = [:]
    private(set) var perPort: [PortKey: Int] = [:]
    private var synBuckets: [UInt32: TokenBucket] = [:]
    private var synBucketsBySource: [SourceKey: TokenBucket] = [:]
    var synsRateLimited = 0
    var refusedAtLimit = 0

    struct PortKey: Hashable {
        let node: UInt32
        let port: UInt16
    }

    struct SourceKey: Hashable {
        let node: UInt32
        let source: UInt32
    }

    /// 1.18's limits, per identity (one 1.18 daemon is one identity): new streams at most
    /// 100 a second, 10 a second from one source node (more are dropped silently); at most
    /// 1024 streams on one port and 4096 in all (more are refused with RST).
    static let synsPerSecond = 100.0
    static let synsPerSecondPerSource = 10.0
    static let streamsPerPort = 1024
    static let streamsPerIdentity = 4096

    /// Whether a SYN from `source` to `node` may open a stream now.
    func admitSyn(to node: UInt32, from source: UInt32, now: NIODeadline) -> Bool {
        let seconds = Double(now.uptimeNanoseconds) / 1e9
        // One second of burst.
        var global = synBuckets[node] ?? TokenBucket(capacity: Self.synsPerSecond, ratePerSecond: Self.synsPerSecond, now: seconds)
        let sourceKey = SourceKey(node: node, source: source)
        var bySource = synBucketsBySource[sourceKey]
            ?? TokenBucket(capacity: Self.synsPerSecondPerSource, ratePerSecond: Self.synsPerSecondPerSource, now: seconds)
        let admitted = bySource.canTake(now: seconds) && global.take(now: seconds) && bySource.take(now: seconds)
        synBuckets[node] = global
        synBucketsBySource[sourceKey] = bySource
        if synBucketsBySource.count > 65536 { synBucketsBySource = synBucketsBySource.filter { !$0.value.isFull(now: seconds) } }
        if !admitted { synsRateLimited += 1 }
        return admitted
    }

    /// Whether `node` may hold one more stream on `port`.
    func hasRoom(node: UInt32, port: UInt16) -> Bool {
        let room = (perIdentity[node] ?? 0) < Self.streamsPerIdentity && (perPort[PortKey(node: node, port: port)] ?? 0) < Self.streamsPerPort
        if !room { refusedAtLimit += 1 }
        return room
    }

    func insert(_ entry: Entry, for key: StreamConnection.Key) {
        if entries.updateValue(entry, forKey: key) == nil {
            perIdentity[key.local.node, default: 0] += 1
            perPort[PortKey(node: key.local.node, port: key.localPort), default: 0] += 1
        }
    }

    func remove(_ key: StreamConnection.Key) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        retransmittedByClosed += entry.connection.retransmitted
        shutWindowsByClosed += entry.connection.shutWindowsAdvertised
        perIdentity[key.local.node, default: 1] -= 1
        perPort[PortKey(node: key.local.node, port: key.localPort), default: 1] -= 1
    }
    var listeners: [UInt32: [UInt16: Listener]] = [:]
    private var nextEphemeral: [UInt32: UInt16] = [:]
    var resetsSent = 0

    /// A free ephemeral port of `node` (49152–65535, skipping ports in use).
    func ephemeralPort(for node: UInt32) -> UInt16 {
        let busy = Set(entries.keys.filter { $0.local.node == node }.map(\.localPort))
        var port = nextEphemeral[node] ?? 49152
        for _ in 0..<16384 {
            defer { port = port == 65535 ? 49152 : port + 1 }
            if !busy.contains(port) && listeners[node]?[port] == nil {
                nextEphemeral[node] = port == 65535 ? 49152 : port + 1
                return port
            }
        }
        return 0
    }
}
