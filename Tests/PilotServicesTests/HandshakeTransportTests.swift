import Logging
import NIOConcurrencyHelpers
import PilotNet
import PilotServices
import PilotWire
import XCTest

/// The handshake transport over fake streams: what a peer's stream brings is queued as its bytes,
/// with the identity it was sent to and the node it came from, in a queue bounded in all and per
/// identity; what is sent is written alone on a dialed stream and sent again on a new one while
/// it goes unacknowledged.
final class HandshakeTransportTests: XCTestCase {
    private let here = Address(node: 1)
    private let peer = Address(node: 42)

    private func transport() -> HandshakeTransport { HandshakeTransport(logger: Logger(label: "handshake-test")) }

    private func request(justification: String = "let me in") -> HandshakeMessage {
        HandshakeMessage(kind: .request, node: peer.node, publicKey: "cGVlcg==", justification: justification, timestamp: 1_700_000_000)
    }

    /// A peer that opens a stream to `identity`'s port 444 and sends `bytes` on it: the end the
    /// transport serves.
    @discardableResult
    private func arrive(_ bytes: [UInt8], at transport: HandshakeTransport, for identity: String, from node: UInt32 = 42) async throws -> FakeStream {
        let (served, sender) = FakeStream.pair(local: here, remote: Address(node: node))
        try await sender.write(bytes)
        transport.serve(served, for: identity)
        return served
    }

    /// The next arrival; throws if none comes within 5 s.
    private func nextArrival(of transport: HandshakeTransport) async throws -> HandshakeTransport.Arrival? {
        try await withTimeout(.seconds(5)) {
            var arrivals = transport.arrivals.makeAsyncIterator()
            return await arrivals.next()
        }
    }

    /// Ends the arrivals and returns those still waiting.
    private func remainingArrivals(of transport: HandshakeTransport) async -> [HandshakeTransport.Arrival] {
        transport.finish()
        var remaining: [HandshakeTransport.Arrival] = []
        for await arrival in transport.arrivals { remaining.append(arrival) }
        return remaining
    }

    /// A good message arrives after a stream that should have queued nothing: the first arrival
    /// must be the good one, and none may follow it.
    private func assertOnlyAGoodMessageFollows(at transport: HandshakeTransport, file: StaticString = #filePath, line: UInt = #line) async throws {
        let message = request().encoded()
        try await arrive(message, at: transport, for: "alice")
        let arrival = try await nextArrival(of: transport)
        XCTAssertEqual(arrival?.bytes, message, "something else was queued first", file: file, line: line)
        let remaining = await remainingArrivals(of: transport)
        XCTAssertEqual(remaining.count, 0, "something else was queued after", file: file, line: line)
    }

    func testServesPort444() {
        XCTAssertEqual(HandshakeTransport.port, 444)
        XCTAssertEqual(HandshakeTransport.port, Port.handshake)
    }

    // MARK: Receiving

    func testAMessageIsQueuedWithItsIdentityNodeAndBytesAndTheStreamIsClosed() async throws {
        let transport = transport()
        let message = request().encoded()
        let served = try await arrive(message, at: transport, for: "alice")
        let arrival = try await nextArrival(of: transport)
        XCTAssertEqual(arrival?.identity, "alice")
        XCTAssertEqual(arrival?.node, 42)
        XCTAssertEqual(arrival?.bytes, message)
        let closed = await eventually { served.isClosed }
        XCTAssertTrue(closed, "the transport left the stream open")
        XCTAssertEqual(served.readTimeouts, [HandshakeTransport.readTimeout])
        XCTAssertEqual(HandshakeTransport.readTimeout, .seconds(10))
        XCTAssertEqual(served.written, [], "the transport answered on port 444")
    }

    func testAMessageInTwoWritesIsQueuedWhole() async throws {
        let transport = transport()
        let message = request().encoded()
        let (served, sender) = FakeStream.pair(local: here, remote: peer)
        transport.serve(served, for: "alice")
        try await sender.write(Array(message.prefix(20)))
        try await sender.write(Array(message.dropFirst(20)))
        let arrival = try await nextArrival(of: transport)
        XCTAssertEqual(arrival?.bytes, message)
    }

    func testAStreamThatFinishesWithNothingQueuesNothing() async throws {
        let transport = transport()
        let (served, sender) = FakeStream.pair(local: here, remote: peer)
        transport.serve(served, for: "alice")
        try await sender.close()
        let closed = await eventually { served.isClosed }
        XCTAssertTrue(closed)
        try await assertOnlyAGoodMessageFollows(at: transport)
        XCTAssertEqual(transport.dropped, 0)
    }

    func testGarbageThatNeverParsesQueuesNothingOnceTheReadTimesOut() async throws {
        let transport = transport()
        let (served, sender) = FakeStream.pair(local: here, remote: peer)
        // The transport asks for 10 s; the fake ends the read sooner, as if they had passed.
        served.readTimeoutCap = .milliseconds(100)
        transport.serve(served, for: "alice")
        try await sender.write(Array("{\"type\": \"handshake_request\", not json".utf8))
        let closed = await eventually { served.isClosed }
        XCTAssertTrue(closed, "the stream was not closed after the read timed out")
        XCTAssertEqual(served.readTimeouts, [HandshakeTransport.readTimeout])
        try await assertOnlyAGoodMessageFollows(at: transport)
    }

    /// The transport judges no message: what a peer sent before finishing is its message, and the
    /// consumer (the trust service) is the one that refuses it.
    func testWhatArrivedBeforeThePeerFinishedIsQueuedAsItCame() async throws {
        let transport = transport()
        let (served, sender) = FakeStream.pair(local: here, remote: peer)
        transport.serve(served, for: "alice")
        let garbage = Array("not a handshake".utf8)
        try await sender.write(garbage)
        try await sender.close()
        let arrival = try await nextArrival(of: transport)
        XCTAssertEqual(arrival?.bytes, garbage)
    }

    /// An `Arrival` holds at most `HandshakeMessage.maxSize` bytes, even when the write that
    /// reached the limit carried more.
    func testWhatArrivesIsCutAtTheLargestMessage() async throws {
        let transport = transport()
        let flood = (0..<HandshakeMessage.maxSize + 500).map { UInt8(truncatingIfNeeded: $0) }
        try await arrive(flood, at: transport, for: "alice")
        let arrival = try await nextArrival(of: transport)
        XCTAssertEqual(arrival?.bytes.count, HandshakeMessage.maxSize)
        XCTAssertTrue(arrival?.bytes == Array(flood.prefix(HandshakeMessage.maxSize)), "not the first bytes that arrived")

        let (served, sender) = FakeStream.pair(local: here, remote: peer)
        transport.serve(served, for: "bob")
        try await sender.write([UInt8](repeating: UInt8(ascii: "x"), count: HandshakeMessage.maxSize - 1))
        try await sender.write([UInt8](repeating: UInt8(ascii: "y"), count: 100))
        let limited = try await nextArrival(of: transport)
        XCTAssertEqual(limited?.identity, "bob")
        XCTAssertEqual(limited?.bytes.count, HandshakeMessage.maxSize)
        XCTAssertEqual(limited?.bytes.last, UInt8(ascii: "y"))
    }

    // MARK: The bounded queue

    func testOneIdentitysSixtyFifthWaitingMessageIsDroppedWhileAnothersGetsThrough() async throws {
        let transport = transport()
        let message = request().encoded()
        XCTAssertEqual(HandshakeTransport.perIdentityLimit, 64)
        for _ in 0..<HandshakeTransport.perIdentityLimit + 1 {
            try await arrive(message, at: transport, for: "alice")
        }
        let droppedOne = await eventually { transport.dropped == 1 }
        XCTAssertTrue(droppedOne, "dropped \(transport.dropped) of alice's 65 waiting messages, not 1")
        // Bob's share is his own.
        let bobs = try await arrive(message, at: transport, for: "bob", from: 43)
        let bobServed = await eventually { bobs.isClosed }
        XCTAssertTrue(bobServed)
        // Taking one of alice's frees a place for her next.
        let first = try await nextArrival(of: transport)
        XCTAssertEqual(first?.identity, "alice")
        let late = try await arrive(message, at: transport, for: "alice", from: 44)
        let lateServed = await eventually { late.isClosed }
        XCTAssertTrue(lateServed)

        let remaining = await remainingArrivals(of: transport)
        XCTAssertEqual(transport.dropped, 1)
        XCTAssertEqual(remaining.filter { $0.identity == "alice" }.count, HandshakeTransport.perIdentityLimit)
        XCTAssertEqual(remaining.filter { $0.identity == "bob" }.map(\.node), [43])
        XCTAssertEqual(remaining.filter { $0.node == 44 }.count, 1, "the place alice's taken message left was not freed")
    }

    func testTheQueueHoldsAtMost1024MessagesInAll() async throws {
        let transport = transport()
        let message = request().encoded()
        let identities = HandshakeTransport.queueLimit / HandshakeTransport.perIdentityLimit
        var served: [FakeStream] = []
        for identity in 0..<identities {
            for _ in 0..<HandshakeTransport.perIdentityLimit {
                served.append(try await arrive(message, at: transport, for: "identity-\(identity)"))
            }
        }
        let allServed = await eventually { served.allSatisfy(\.isClosed) }
        XCTAssertTrue(allServed)
        XCTAssertEqual(transport.dropped, 0)
        try await arrive(message, at: transport, for: "one-more")
        let droppedOne = await eventually { transport.dropped == 1 }
        XCTAssertTrue(droppedOne, "a 1025th waiting message was not dropped")
        let remaining = await remainingArrivals(of: transport)
        XCTAssertEqual(remaining.count, HandshakeTransport.queueLimit)
        XCTAssertFalse(remaining.contains { $0.identity == "one-more" })
    }

    // MARK: Sending

    /// The streams `dial` opened, in order, each answering `flush` as `flushing` says for its
    /// attempt (the last for any later one).
    private final class Dialer: Sendable {
        private let opened = NIOLockedValueBox<[FakeStream]>([])
        private let flushing: [FakeStream.Flush]
        private let local: Address
        private let remote: Address

        init(local: Address, remote: Address, flushing: [FakeStream.Flush]) {
            self.local = local
            self.remote = remote
            self.flushing = flushing
        }

        var streams: [FakeStream] { opened.withLockedValue { $0 } }

        func dial() -> FakeStream {
            let (stream, _) = FakeStream.pair(local: local, remote: remote)
            opened.withLockedValue { opened in
                stream.flushing = flushing[min(opened.count, flushing.count - 1)]
                opened.append(stream)
            }
            return stream
        }
    }

    func testSendWritesExactlyTheEncodedMessageAloneAndClosesOnceAcknowledged() async throws {
        let transport = transport()
        let dialer = Dialer(local: here, remote: peer, flushing: [.succeeds])
        let message = request()
        try await transport.send(message, from: "alice", to: peer.node) { dialer.dial() }
        let closed = await eventually { dialer.streams.first?.isClosed == true }
        XCTAssertTrue(closed, "the stream was not closed once acknowledged")
        XCTAssertEqual(dialer.streams.count, 1)
        XCTAssertEqual(dialer.streams.first?.writes, [message.encoded()])
        XCTAssertEqual(dialer.streams.first?.flushes, 1)
        XCTAssertEqual(dialer.streams.first?.isAborted, false)
    }

    func testAMessageOfOneSegmentIsSentAndALongerOneRefusedWithoutDialing() async throws {
        let transport = transport()
        let dialer = Dialer(local: here, remote: peer, flushing: [.succeeds])
        let padding = StreamConnection.segmentSize - request(justification: "").encoded().count
        let fits = request(justification: String(repeating: "a", count: padding))
        XCTAssertEqual(fits.encoded().count, StreamConnection.segmentSize)
        try await transport.send(fits, from: "alice", to: peer.node) { dialer.dial() }
        XCTAssertEqual(dialer.streams.count, 1)

        let tooLong = request(justification: String(repeating: "a", count: padding + 1))
        do {
            try await transport.send(tooLong, from: "alice", to: peer.node) { dialer.dial() }
            XCTFail("a message of \(tooLong.encoded().count) bytes was sent")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .invalidArgument)
        }
        XCTAssertEqual(dialer.streams.count, 1, "a stream was dialed for a message that was refused")
    }

    func testAFailedFirstDialIsTheSendersError() async throws {
        let transport = transport()
        do {
            try await transport.send(request(), from: "alice", to: peer.node) { () async throws -> FakeStream in
                throw FakeStream.Failure(reason: "no route")
            }
            XCTFail("send returned without a stream")
        } catch let failure as FakeStream.Failure {
            XCTAssertEqual(failure.reason, "no route")
        }
    }

    func testAFailedFlushSendsTheSameBytesAgainOnANewStream() async throws {
        let transport = transport()
        let dialer = Dialer(local: here, remote: peer, flushing: [.fails, .succeeds])
        let message = request()
        try await transport.send(message, from: "alice", to: peer.node) { dialer.dial() }
        let resent = await eventually { dialer.streams.count == 2 && dialer.streams[1].isClosed }
        XCTAssertTrue(resent, "dialed \(dialer.streams.count) streams; the second was not closed")
        XCTAssertTrue(dialer.streams[0].isAborted, "the unacknowledged stream was not aborted")
        XCTAssertEqual(dialer.streams.map(\.writes), [[message.encoded()], [message.encoded()]])
        XCTAssertEqual(dialer.streams.count, 2, "a message acknowledged on its second stream went a third time")
    }

    func testAMessageNeverAcknowledgedIsSentThreeTimesThenGivenUp() async throws {
        let transport = transport()
        let dialer = Dialer(local: here, remote: peer, flushing: [.fails])
        let message = request()
        try await transport.send(message, from: "alice", to: peer.node) { dialer.dial() }
        let givenUp = await eventually { dialer.streams.count == HandshakeTransport.attempts && dialer.streams.allSatisfy(\.isAborted) }
        XCTAssertTrue(givenUp, "dialed \(dialer.streams.count) streams")
        XCTAssertEqual(HandshakeTransport.attempts, 3)
        XCTAssertEqual(dialer.streams.map(\.writes), Array(repeating: [message.encoded()], count: 3))
        XCTAssertFalse(dialer.streams.contains(where: \.isClosed))
    }

    /// Waits out the 4 s acknowledgement once.
    func testAFlushThatHangsPastTheAcknowledgementWaitSendsAgain() async throws {
        let transport = transport()
        let dialer = Dialer(local: here, remote: peer, flushing: [.hangs, .succeeds])
        let message = request()
        let start = ContinuousClock.now
        try await transport.send(message, from: "alice", to: peer.node) { dialer.dial() }
        let resent = await eventually(within: .seconds(10)) { dialer.streams.count == 2 && dialer.streams[1].isClosed }
        let waited = ContinuousClock.now - start
        XCTAssertTrue(resent, "dialed \(dialer.streams.count) streams")
        XCTAssertGreaterThanOrEqual(waited, HandshakeTransport.acknowledgement, "sent again before the acknowledgement wait was over")
        XCTAssertTrue(dialer.streams[0].isAborted)
        XCTAssertEqual(dialer.streams.map(\.writes), [[message.encoded()], [message.encoded()]])
    }
}
