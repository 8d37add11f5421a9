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
}

/// A stream as its user holds it: events in order, writes and close. The connection itself
/// lives on the fabric's event loop.
public final class StreamHandle: Sendable {
    public let key: StreamConnection.Key
    public let events: AsyncStream<StreamEvent>
    let continuation: AsyncStream<StreamEvent>.Continuation
    private let fabric: Fabric

    init(key: StreamConnection.Key, fabric: Fabric) {
        self.key = key
        self.fabric = fabric
        (events, continuation) = AsyncStream.makeStream(of: StreamEvent.self)
    }

    public func write(_ bytes: [UInt8]) async throws {
        try await fabric.streamWrite(key, bytes)
    }

    /// Closes this side once everything written is acknowledged.
    public func close() async throws {
        try await fabric.streamClose(key)
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
    struct Entry {
        let connection: StreamConnection
        let handle: StreamHandle?
        /// A dial waiting for its SYN|ACK.
        var dialed: EventLoopPromise<StreamHandle>?
        /// Writers waiting for the queue to drain below `writeLimit`.
        var writers: [EventLoopPromise<Void>] = []
        /// Served on the loop by the echo service, with no handle.
        var echoes = false
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
