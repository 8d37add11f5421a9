public import Logging
import PilotNet
public import PilotWire

/// The event-stream broker (port 1002, `docs/PROTOCOL.md` §12), as 1.18's, one per identity: the
/// first event on a stream subscribes it to that event's topic (`*`: every topic); each later
/// event is published to the subscribers of its topic and of `*`, never back to its sender (an
/// event published to `*` reaches only `*` subscribers). The broker sends nothing else.
///
/// A subscriber's stream that fails a write is dropped. Each identity's broker holds at most
/// `subscriberLimit` subscribers; a stream beyond is closed.
public actor EventStreamService {
    /// The port it serves.
    public static let port = Port.eventStream
    /// Subscribers one identity's broker holds.
    public static let subscriberLimit = 1024

    private struct Subscriber {
        let stream: any ServiceStream
        let topic: String
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
        subscribers[identity, default: [:]][ObjectIdentifier(stream)] = Subscriber(stream: stream, topic: topic)
        logger.debug("subscribed", metadata: ["PILOT_IDENTITY": "\(identity)", "PILOT_PEER": "\(stream.remote)", "topic": "\(topic.prefix(64))"])
        return true
    }

    private func unsubscribe(_ stream: some ServiceStream, on identity: String) {
        subscribers[identity]?[ObjectIdentifier(stream)] = nil
        if subscribers[identity]?.isEmpty == true { subscribers[identity] = nil }
    }

    /// Forwards `event` to `identity`'s subscribers of its topic and of `*`, in the order this
    /// sender published them.
    private func publish(_ event: EventStreamFrame, from sender: some ServiceStream, on identity: String) async {
        let targets = (subscribers[identity] ?? [:]).values.filter { subscriber in
            subscriber.stream !== sender
                && (subscriber.topic == EventStreamFrame.everything || (event.topic != EventStreamFrame.everything && subscriber.topic == event.topic))
        }
        guard !targets.isEmpty, let bytes = try? event.encoded() else { return }
        for target in targets {
            do { try await target.stream.write(bytes) } catch { unsubscribe(target.stream, on: identity) }
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
