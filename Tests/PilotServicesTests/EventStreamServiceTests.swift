import Logging
import NIOConcurrencyHelpers
import PilotNet
import PilotServices
import PilotWire
import XCTest

/// The event-stream broker over fake streams: a stream's first event subscribes it, its later
/// events go to the subscribers of their topic and of `*`, never back to it; and the clients'
/// sides, `subscribe` and `publish`.
final class EventStreamServiceTests: XCTestCase {
    private let here = Address(node: 1)

    /// A peer's stream to the broker: the end the broker serves and the peer's.
    private struct Member {
        let served: FakeStream
        let peer: FakeStream

        /// Publishes an event on `topic`.
        func publish(_ topic: String, _ payload: String) async throws {
            try await peer.write(try EventStreamFrame(topic: topic, payload: Array(payload.utf8)).encoded())
        }

        /// The events the broker wrote to this member, decoded.
        var received: [EventStreamFrame] {
            get throws {
                var decoder = EventStreamFrame.Decoder()
                decoder.append(served.written)
                var events: [EventStreamFrame] = []
                while let event = try decoder.next() { events.append(event) }
                return events
            }
        }

        /// Whether the broker wrote `count` events to this member within 5 s.
        func receives(_ count: Int) async -> Bool {
            await eventually { ((try? received.count) ?? 0) >= count }
        }
    }

    private func broker() -> EventStreamService { EventStreamService(logger: Logger(label: "event-stream-test")) }

    /// A peer from `node` that opens a stream to `identity`'s broker and subscribes to `topic`;
    /// returns once the broker counts it.
    private func subscribe(
        _ broker: EventStreamService, to topic: String, node: UInt32, for identity: String = "alice",
        file: StaticString = #filePath, line: UInt = #line
    ) async throws -> Member {
        let before = await broker.subscriberCount(of: identity)
        let (served, peer) = FakeStream.pair(local: here, remote: Address(node: node))
        broker.serve(served, for: identity)
        try await peer.write(try EventStreamFrame(topic: topic).encoded())
        let counted = await eventually { await broker.subscriberCount(of: identity) == before + 1 }
        XCTAssertTrue(counted, "the subscription to \(topic) was not counted", file: file, line: line)
        return Member(served: served, peer: peer)
    }

    private func event(_ topic: String, _ payload: String) -> EventStreamFrame {
        EventStreamFrame(topic: topic, payload: Array(payload.utf8))
    }

    func testServesPort1002() {
        XCTAssertEqual(EventStreamService.port, 1002)
        XCTAssertEqual(EventStreamService.port, Port.eventStream)
    }

    // MARK: Who gets what

    func testASubscriberGetsItsTopicsEventsAndNoOthers() async throws {
        let broker = broker()
        let weather = try await subscribe(broker, to: "weather", node: 10)
        let news = try await subscribe(broker, to: "news", node: 11)
        let publisher = try await subscribe(broker, to: "publishing", node: 12)
        try await publisher.publish("weather", "rain")
        try await publisher.publish("news", "elections")
        try await publisher.publish("weather", "sun")
        // One publisher's events are published in order: once the last arrived, all were.
        let received = await weather.receives(2)
        XCTAssertTrue(received)
        XCTAssertEqual(try weather.received, [event("weather", "rain"), event("weather", "sun")])
        XCTAssertEqual(try news.received, [event("news", "elections")])
    }

    func testAnEverythingSubscriberGetsEveryTopic() async throws {
        let broker = broker()
        let everything = try await subscribe(broker, to: EventStreamFrame.everything, node: 10)
        let publisher = try await subscribe(broker, to: "publishing", node: 11)
        try await publisher.publish("weather", "rain")
        try await publisher.publish("news", "elections")
        try await publisher.publish("", "no topic")
        let received = await everything.receives(3)
        XCTAssertTrue(received)
        XCTAssertEqual(try everything.received, [event("weather", "rain"), event("news", "elections"), event("", "no topic")])
    }

    func testAPublisherNeverGetsItsOwnEventBack() async throws {
        let broker = broker()
        let listener = try await subscribe(broker, to: "weather", node: 10)
        // Subscribed to everything and to the topic it publishes on: still none of its own.
        let publisher = try await subscribe(broker, to: EventStreamFrame.everything, node: 11)
        try await publisher.publish("weather", "rain")
        try await publisher.publish("weather", "sun")
        let received = await listener.receives(2)
        XCTAssertTrue(received)
        XCTAssertEqual(publisher.served.written, [], "the publisher got its own events")
    }

    func testAnEventPublishedToEverythingReachesOnlyEverythingSubscribers() async throws {
        let broker = broker()
        let weather = try await subscribe(broker, to: "weather", node: 10)
        let everything = try await subscribe(broker, to: EventStreamFrame.everything, node: 11)
        let publisher = try await subscribe(broker, to: "publishing", node: 12)
        try await publisher.publish(EventStreamFrame.everything, "to all")
        try await publisher.publish("weather", "rain")
        let everythingReceived = await everything.receives(2)
        let weatherReceived = await weather.receives(1)
        XCTAssertTrue(everythingReceived && weatherReceived)
        XCTAssertEqual(try everything.received, [event(EventStreamFrame.everything, "to all"), event("weather", "rain")])
        XCTAssertEqual(try weather.received, [event("weather", "rain")])
    }

    func testEachIdentityHasABrokerOfItsOwn() async throws {
        let broker = broker()
        let alices = try await subscribe(broker, to: "weather", node: 10, for: "alice")
        let bobs = try await subscribe(broker, to: "weather", node: 11, for: "bob")
        let publisher = try await subscribe(broker, to: "publishing", node: 12, for: "bob")
        try await publisher.publish("weather", "for bob")
        let received = await bobs.receives(1)
        XCTAssertTrue(received)
        XCTAssertEqual(try alices.received, [])
        let counts = (await broker.subscriberCount(of: "alice"), await broker.subscriberCount(of: "bob"))
        XCTAssertEqual(counts.0, 1)
        XCTAssertEqual(counts.1, 2)
    }

    // MARK: Subscribers leaving

    func testASubscriberWhoseWriteFailsIsDropped() async throws {
        let broker = broker()
        let failing = try await subscribe(broker, to: "weather", node: 10)
        let healthy = try await subscribe(broker, to: "weather", node: 11)
        let publisher = try await subscribe(broker, to: "publishing", node: 12)
        failing.served.failsWrites = true
        try await publisher.publish("weather", "rain")
        let dropped = await eventually { await broker.subscriberCount(of: "alice") == 2 }
        XCTAssertTrue(dropped, "the subscriber whose write failed is still counted")
        failing.served.failsWrites = false
        try await publisher.publish("weather", "sun")
        let received = await healthy.receives(2)
        XCTAssertTrue(received)
        XCTAssertEqual(failing.served.written, [], "a dropped subscriber still got events")
    }

    func testASlowSubscriberHoldsUpNobodyAndIsDroppedOnceTooFarBehind() async throws {
        let broker = broker()
        let slow = try await subscribe(broker, to: "weather", node: 10)
        let healthy = try await subscribe(broker, to: "weather", node: 11)
        let publisher = try await subscribe(broker, to: "publishing", node: 12)
        slow.served.hangsWrites = true
        // The publisher's stream is served while the slow subscriber reads nothing: every event
        // reaches the healthy one.
        // In bursts of 64 that the healthy one takes before the next: a burst longer than its
        // outbox (256) would drop it too, when its writer is not scheduled in time (seen on a
        // loaded machine), which is the rule, not what this test is about.
        let count = EventStreamService.outboxLimit + 10
        for index in 0..<count {
            try await publisher.publish("weather", "\(index)")
            if index % 64 == 63 { _ = await healthy.receives(index + 1) }
        }
        let received = await healthy.receives(count)
        XCTAssertTrue(received, "a slow subscriber held up the others")
        XCTAssertEqual(try healthy.received.last.map { String(decoding: $0.payload, as: UTF8.self) }, "\(count - 1)")
        let dropped = await eventually { await broker.subscriberCount(of: "alice") == 2 }
        XCTAssertTrue(dropped, "a subscriber too far behind is still counted")
        let reset = await eventually { slow.served.isAborted }
        XCTAssertTrue(reset, "the dropped subscriber's stream was not reset")
    }

    func testAClosedOrResetSubscriberIsUnsubscribedAndItsStreamClosed() async throws {
        let broker = broker()
        let closing = try await subscribe(broker, to: "weather", node: 10)
        let resetting = try await subscribe(broker, to: "weather", node: 11)
        let staying = try await subscribe(broker, to: "weather", node: 12)
        try await closing.peer.close()
        await resetting.peer.abort()
        let left = await eventually { await broker.subscriberCount(of: "alice") == 1 }
        XCTAssertTrue(left, "a subscriber that left is still counted")
        let closed = await eventually { closing.served.isClosed }
        XCTAssertTrue(closed, "the broker did not close the finished subscriber's end")
        let publisher = try await subscribe(broker, to: "publishing", node: 13)
        try await publisher.publish("weather", "rain")
        let received = await staying.receives(1)
        XCTAssertTrue(received)
        XCTAssertEqual(closing.served.written, [])
        XCTAssertEqual(resetting.served.written, [])
    }

    func testAStreamThatSendsSomethingElseIsUnsubscribedAndClosed() async throws {
        let broker = broker()
        let member = try await subscribe(broker, to: "weather", node: 10)
        // A topic length over the limit: not an event.
        try await member.peer.write([0xFF, 0xFF, 0, 0, 0, 0])
        let gone = await eventually { await broker.subscriberCount(of: "alice") == 0 }
        XCTAssertTrue(gone)
        let closed = await eventually { member.served.isClosed }
        XCTAssertTrue(closed)
    }

    func testABrokerHoldsAtMost1024SubscribersAndClosesTheNext() async throws {
        let broker = broker()
        XCTAssertEqual(EventStreamService.subscriberLimit, 1024)
        let subscription = try EventStreamFrame(topic: "weather").encoded()
        for node in 0..<UInt32(EventStreamService.subscriberLimit) {
            let (served, peer) = FakeStream.pair(local: here, remote: Address(node: 100 + node))
            broker.serve(served, for: "alice")
            try await peer.write(subscription)
        }
        let full = await eventually { await broker.subscriberCount(of: "alice") == EventStreamService.subscriberLimit }
        XCTAssertTrue(full, "the broker did not take \(EventStreamService.subscriberLimit) subscribers")
        let (refused, peer) = FakeStream.pair(local: here, remote: Address(node: 99))
        broker.serve(refused, for: "alice")
        try await peer.write(subscription)
        let closed = await eventually { refused.isClosed }
        XCTAssertTrue(closed, "the subscriber over the limit was not closed")
        let count = await broker.subscriberCount(of: "alice")
        XCTAssertEqual(count, EventStreamService.subscriberLimit)
        // Another identity's broker is not full.
        _ = try await subscribe(broker, to: "weather", node: 98, for: "bob")
    }

    // MARK: The clients' side

    func testPublishWritesTheSubscriptionAndTheEventInOneWriteThenCloses() async throws {
        let (client, _) = FakeStream.pair(local: Address(node: 42), remote: here)
        try await EventStreamService.publish(over: client, topic: "weather", payload: Array("rain".utf8))
        let expected = try EventStreamFrame(topic: "weather").encoded() + event("weather", "rain").encoded()
        XCTAssertEqual(client.writes, [expected])
        XCTAssertTrue(client.isClosed)
    }

    func testSubscribeWritesTheSubscriptionAndHandsEventsOverUntilTold() async throws {
        let (client, server) = FakeStream.pair(local: Address(node: 42), remote: here)
        let handed = NIOLockedValueBox<[EventStreamFrame]>([])
        let subscribing = Task {
            try await EventStreamService.subscribe(over: client, to: "weather") { event in
                handed.withLockedValue { $0.append(event) }
                return handed.withLockedValue { $0.count } < 2
            }
        }
        let events = [event("weather", "rain"), event("weather", "sun"), event("weather", "snow")]
        // Two events in one write and one split across two: the decoder joins and splits them.
        let bytes = try events.flatMap { try $0.encoded() }
        try await server.write(Array(bytes.prefix(5)))
        try await server.write(Array(bytes.dropFirst(5)))
        try await withTimeout(.seconds(5)) { try await subscribing.value }
        XCTAssertEqual(client.writes, [try EventStreamFrame(topic: "weather").encoded()])
        XCTAssertEqual(handed.withLockedValue { $0 }, Array(events.prefix(2)))
    }

    func testSubscribeReturnsWhenTheBrokerFinishes() async throws {
        let (client, server) = FakeStream.pair(local: Address(node: 42), remote: here)
        let subscribing = Task {
            try await EventStreamService.subscribe(over: client, to: "*") { _ in true }
        }
        try await server.write(try event("news", "elections").encoded())
        try await server.close()
        try await withTimeout(.seconds(5)) { try await subscribing.value }
    }

    func testAPublishingClientReachesASubscribingClientThroughTheBroker() async throws {
        let broker = broker()
        let (subscriberEnd, subscriberServed) = FakeStream.pair(local: Address(node: 10), remote: here)
        broker.serve(subscriberServed, for: "alice")
        let subscribing = Task {
            var got: EventStreamFrame?
            try await EventStreamService.subscribe(over: subscriberEnd, to: "weather") { event in
                got = event
                return false
            }
            return got
        }
        let counted = await eventually { await broker.subscriberCount(of: "alice") == 1 }
        XCTAssertTrue(counted)
        let (publisherEnd, publisherServed) = FakeStream.pair(local: Address(node: 11), remote: here)
        broker.serve(publisherServed, for: "alice")
        try await EventStreamService.publish(over: publisherEnd, topic: "weather", payload: Array("rain".utf8))
        let got = try await withTimeout(.seconds(5)) { try await subscribing.value }
        XCTAssertEqual(got, event("weather", "rain"))
        // The publisher's stream finished: the broker let it go.
        let left = await eventually { await broker.subscriberCount(of: "alice") == 1 && publisherServed.isClosed }
        XCTAssertTrue(left)
    }
}
