public import Logging
import NIOConcurrencyHelpers
import PilotNet
public import PilotWire

/// The event-stream broker (port 1002, `docs/PROTOCOL.md` §12), as 1.18's, one per identity: the
/// first event on a stream subscribes it to that event's topic (`*`: every topic); each later
/// event is published to the subscribers of its topic and of `*`, never back to its sender (an
/// event published to `*` reaches only `*` subscribers). The broker sends nothing else.
///
/// A publisher never waits for a subscriber: each subscriber has an outbox of its own, written
/// to its stream in order by a task of its own. A subscriber that falls `outboxLimit` events or
/// `outboxBytes` bytes behind, or whose stream fails a write, is dropped and its stream reset,
/// so one slow reader holds up neither the publishers nor the other subscribers. Each
/// identity's broker holds at most `subscriberLimit` subscribers; a stream beyond is closed.
public actor EventStreamService {
    /// The port it serves.
    public static let port = Port.eventStream
    /// Subscribers one identity's broker holds.
    public static let subscriberLimit = 1024
    /// Events waiting in one subscriber's outbox.
    public static let outboxLimit = 256
    /// Bytes waiting in one subscriber's outbox (at least one event is always taken).
    public static let outboxBytes = 4 << 20

    private struct Subscriber {
        let stream: any ServiceStream
        let topic: String
        let outbox: Outbox
    }

    /// What waits to be written to one subscriber, and how many bytes that is.
    private final class Outbox: Sendable {
        let events: AsyncStream<[UInt8]>
        private let continuation: AsyncStream<[UInt8]>.Continuation
        private let waiting = NIOLockedValueBox(0)

        init() {
            (events, continuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .bufferingOldest(EventStreamService.outboxLimit))
        }

        /// Queues `bytes`; false when the subscriber is too far behind to take them.
        func add(_ bytes: [UInt8]) -> Bool {
            let fits = waiting.withLockedValue { waiting -> Bool in
                guard waiting == 0 || waiting + bytes.count <= EventStreamService.outboxBytes else { return false }
                waiting += bytes.count
                return true
            }
            guard fits else { return false }
            if case .enqueued = continuation.yield(bytes) { return true }
            taken(bytes.count)
            return false
        }

        /// `count` bytes were written (or will never be).
        func taken(_ count: Int) { waiting.withLockedValue { $0 -= count } }

        func finish() { continuation.finish() }
    }

    /// Each identity's subscribers, by stream.
    private var subscribers: [String: [ObjectIdentifier: Subscriber]] = [:]
    private let logger: Logger

    /// A broker with no subscribers.
    public init(logger: Logger) {
        self.logger = logger
    }

    /// How many streams subscribe to `identity`'s broker.
    public func subscriberCount(of identity: String) -> Int { subscribers[identity]?.count ?? 0 }

    /// Serves `stream`, which a peer opened to `identity`'s port 1002, until it ends. Returns at
    /// once; the serving goes on in a task.
    public nonisolated func serve(_ stream: some ServiceStream, for identity: String) {
        Task { await serveNow(stream, for: identity) }
    }

    /// Serves `stream` until it ends, then unsubscribes and closes it.
    nonisolated func serveNow(_ stream: some ServiceStream, for identity: String) async {
        var decoder = EventStreamFrame.Decoder()
        var subscribed = false
        reading: for await event in stream.events {
            guard case .data(let bytes) = event else { break }
            decoder.append(bytes)
            do {
                while let frame = try decoder.next() {
                    if subscribed {
                        await publish(frame, from: stream, on: identity)
                    } else {
                        guard await subscribe(stream, to: frame.topic, on: identity) else { break reading }
                        subscribed = true
                    }
                }
            } catch {
                logger.info("event stream closed", metadata: ["PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(stream.remote)", "error": "\(error)"])
                break
            }
        }
        if subscribed { await unsubscribe(stream, on: identity) }
        try? await stream.close()
    }

    private func subscribe(_ stream: some ServiceStream, to topic: String, on identity: String) -> Bool {
        guard subscriberCount(of: identity) < Self.subscriberLimit else {
            logger.info("event stream refused: too many subscribers", metadata: ["PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(stream.remote)"])
            return false
        }
        let outbox = Outbox()
        subscribers[identity, default: [:]][ObjectIdentifier(stream)] = Subscriber(stream: stream, topic: topic, outbox: outbox)
        Task { [weak self] in
            for await bytes in outbox.events {
                outbox.taken(bytes.count)
                do { try await stream.write(bytes) } catch {
                    await self?.drop(stream, on: identity, because: "a write failed: \(error)")
                    return
                }
            }
        }
        logger.debug("subscribed", metadata: ["PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(stream.remote)", "topic": "\(topic.prefix(64))"])
        return true
    }

    private func unsubscribe(_ stream: some ServiceStream, on identity: String) {
        subscribers[identity]?.removeValue(forKey: ObjectIdentifier(stream))?.outbox.finish()
        if subscribers[identity]?.isEmpty == true { subscribers[identity] = nil }
    }

    /// Unsubscribes `stream` and resets it: its reader is gone or too slow. Its serving task then
    /// ends, so nothing it sends is published after.
    private func drop(_ stream: some ServiceStream, on identity: String, because reason: String) {
        guard subscribers[identity]?[ObjectIdentifier(stream)] != nil else { return }
        unsubscribe(stream, on: identity)
        logger.info("event subscriber dropped", metadata: ["PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(stream.remote)", "reason": "\(reason)"])
        Task { await stream.abort() }
    }

    /// Queues `event` for `identity`'s subscribers of its topic and of `*` (each gets this
    /// sender's events in the order published).
    private func publish(_ event: EventStreamFrame, from sender: some ServiceStream, on identity: String) {
        let targets = (subscribers[identity] ?? [:]).values.filter { subscriber in
            subscriber.stream !== sender
                && (subscriber.topic == EventStreamFrame.everything || (event.topic != EventStreamFrame.everything && subscriber.topic == event.topic))
        }
        guard !targets.isEmpty, let bytes = try? event.encoded() else { return }
        for target in targets where !target.outbox.add(bytes) {
            drop(target.stream, on: identity, because: "too far behind")
        }
    }

    // MARK: The client's side

    /// Subscribes `stream` (open to a broker) to `topic` and hands each event that arrives to
    /// `received` until it returns false or the stream ends.
    public static func subscribe(
        over stream: some ServiceStream, to topic: String, _ received: (EventStreamFrame) async -> Bool
    ) async throws {
        try await stream.write(try EventStreamFrame(topic: topic).encoded())
        var decoder = EventStreamFrame.Decoder()
        for await event in stream.events {
            guard case .data(let bytes) = event else { return }
            decoder.append(bytes)
            while let frame = try decoder.next() {
                guard await received(frame) else { return }
            }
        }
    }

    /// Publishes one event on `stream` (open to a broker): the subscription a stream's first event
    /// always makes, then the event; closes once the broker has them.
    public static func publish(over stream: some ServiceStream, topic: String, payload: [UInt8]) async throws {
        try await stream.write(try EventStreamFrame(topic: topic).encoded() + EventStreamFrame(topic: topic, payload: payload).encoded())
        try await stream.close()
    }
}
