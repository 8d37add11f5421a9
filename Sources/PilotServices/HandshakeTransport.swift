public import Logging
import NIOConcurrencyHelpers
import PilotNet
public import PilotWire

/// How trust handshake messages travel (port 444, `docs/PROTOCOL.md` §10): one message alone
/// on a stream, each way. It carries messages and judges none: whoever consumes `arrivals`
/// (pilot-host's trust service) checks signatures, timestamps and what was asked for.
///
/// What arrives waits in a bounded queue: at most `queueLimit` messages in all and
/// `perIdentityLimit` for one identity, so a peer flooding one identity's port 444 cannot keep
/// the others' messages out. Messages beyond are dropped and counted (`dropped`).
public final class HandshakeTransport: Sendable {
    /// The port it serves.
    public static let port = Port.handshake
    /// Messages waiting for the consumer, all identities together.
    public static let queueLimit = 1024
    /// Messages waiting for the consumer for one identity.
    public static let perIdentityLimit = 64
    /// How long a peer has to send its message once its stream is open (1.18 waits as long).
    public static let readTimeout: Duration = .seconds(10)
    /// How long a sent message may go unacknowledged before it goes again on a new stream.
    public static let acknowledgement: Duration = .seconds(4)
    /// How often a message is sent before it is given up.
    public static let attempts = 3
    /// How long a dial may take.
    public static let dialTimeout: Duration = .seconds(15)

    /// One message that arrived, as its bytes: `node` is the sender the tunnel authenticated.
    public struct Arrival: Sendable {
        /// The identity of this host it was sent to.
        public let identity: String
        /// The node it came from.
        public let node: UInt32
        /// The message, as it arrived (at most `HandshakeMessage.maxSize` bytes).
        public let bytes: [UInt8]
    }

    /// The messages that arrived, in order, until `finish()`. One consumer.
    public let arrivals: Arrivals
    private let continuation: AsyncStream<Arrival>.Continuation
    private let waiting: NIOLockedValueBox<Waiting>
    private let logger: Logger

    fileprivate struct Waiting {
        var byIdentity: [String: Int] = [:]
        var total = 0
        var dropped = 0
    }

    /// A transport whose arrivals nobody has taken yet.
    public init(logger: Logger) {
        let (stream, continuation) = AsyncStream.makeStream(of: Arrival.self, bufferingPolicy: .unbounded)
        let waiting = NIOLockedValueBox(Waiting())
        self.continuation = continuation
        self.waiting = waiting
        self.logger = logger
        arrivals = Arrivals(base: stream, waiting: waiting)
    }

    /// Messages dropped because the queue (or their identity's share of it) was full.
    public var dropped: Int { waiting.withLockedValue { $0.dropped } }

    /// Ends `arrivals` (the host is stopping).
    public func finish() { continuation.finish() }

    /// Reads one message from `stream`, which a peer opened to `identity`'s port 444: until it
    /// parses, the peer finishes, `HandshakeMessage.maxSize` bytes or `readTimeout`. Returns at
    /// once; the reading goes on in a task of its own.
    public func serve(_ stream: some ServiceStream, for identity: String) {
        Task {
            let bytes = await stream.readMessage(limit: HandshakeMessage.maxSize, timeout: Self.readTimeout) {
                (try? HandshakeMessage(decoding: $0)) != nil
            }
            try? await stream.close()
            guard !bytes.isEmpty else { return }
            // The read stops at the chunk that reaches the limit, which can carry it past (a
            // stream's segments are up to 1152 bytes): an arrival holds at most `maxSize`.
            enqueue(Arrival(identity: identity, node: stream.remote.node, bytes: Array(bytes.prefix(HandshakeMessage.maxSize))))
        }
    }

    private func enqueue(_ arrival: Arrival) {
        let admitted = waiting.withLockedValue { waiting -> Bool in
            guard waiting.total < Self.queueLimit, waiting.byIdentity[arrival.identity, default: 0] < Self.perIdentityLimit else {
                waiting.dropped += 1
                return false
            }
            waiting.byIdentity[arrival.identity, default: 0] += 1
            waiting.total += 1
            return true
        }
        guard admitted else {
            return logger.info("handshake message dropped: too many waiting", metadata: [
                "PILOT_IDENTITY": "\(arrival.identity)", "PILOT_PEER": "\(arrival.node)"])
        }
        if case .terminated = continuation.yield(arrival) { Arrivals.taken(arrival, from: waiting) }
    }

    /// Sends `message` from `identity` to node `peer`, alone on a stream (1.18 reads one
    /// segment): returns once it is written on a stream `dial` opened. Delivery is confirmed in
    /// the background, as 1.18 does: a message not acknowledged within `acknowledgement` (lost
    /// while the tunnel re-keys, because the peer restarted or we did) goes again on a new
    /// stream, up to `attempts` times, where a late retransmission would miss 1.18's wait for it.
    public func send<Stream: ServiceStream>(
        _ message: HandshakeMessage, from identity: String, to peer: UInt32, dial: @escaping @Sendable () async throws -> Stream
    ) async throws {
        let bytes = message.encoded()
        guard bytes.count <= StreamConnection.segmentSize else {
            throw ControlFailure(.invalidArgument, "the handshake message is \(bytes.count) bytes once encoded; 1.18 reads one segment (\(StreamConnection.segmentSize)): shorten the reason")
        }
        @Sendable func open() async throws -> Stream {
            let stream = try await withTimeout(Self.dialTimeout) { try await dial() }
            try await stream.write(bytes)
            return stream
        }
        let first = try await open()
        let logger = logger
        Task {
            var stream = first
            for attempt in 1...Self.attempts {
                do {
                    let current = stream
                    try await withTimeout(Self.acknowledgement) { try await current.flush() }
                    try? await stream.close()
                    return
                } catch {
                    await stream.abort()
                    let metadata: Logger.Metadata = [
                        "PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(peer)", "attempt": "\(attempt)", "error": "\(error)",
                    ]
                    guard attempt < Self.attempts else {
                        return logger.warning("handshake message never acknowledged; given up", metadata: metadata)
                    }
                    logger.info("handshake message not acknowledged; sending it again on a new stream", metadata: metadata)
                    do { stream = try await open() } catch {
                        return logger.warning("handshake message not sent again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
                    }
                }
            }
        }
    }

    /// The arrivals as their consumer takes them: taking one frees its place in the queue.
    public struct Arrivals: AsyncSequence, Sendable {
        /// One message that arrived.
        public typealias Element = Arrival
        let base: AsyncStream<Arrival>
        fileprivate let waiting: NIOLockedValueBox<Waiting>

        /// Takes arrivals in order.
        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: AsyncStream<Arrival>.AsyncIterator
            fileprivate let waiting: NIOLockedValueBox<Waiting>

            /// The next arrival; nil once the transport is finished.
            public mutating func next() async -> Arrival? {
                guard let arrival = await base.next() else { return nil }
                Arrivals.taken(arrival, from: waiting)
                return arrival
            }
        }

        /// The iterator (one consumer).
        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), waiting: waiting) }

        fileprivate static func taken(_ arrival: Arrival, from waiting: NIOLockedValueBox<Waiting>) {
            waiting.withLockedValue { waiting in
                let left = (waiting.byIdentity[arrival.identity] ?? 1) - 1
                waiting.byIdentity[arrival.identity] = left > 0 ? left : nil
                waiting.total -= 1
            }
        }
    }
}
