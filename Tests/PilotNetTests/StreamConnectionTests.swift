import NIOCore
import PilotNet
import PilotTestSupport
import PilotWire
import XCTest

/// Two stream ends joined by a simulated link with its own clock: what goes in one comes out
/// of the other byte for byte, over loss, reordering and duplication, and the close follows
/// 1.18's rules.
final class StreamConnectionTests: XCTestCase {
    /// The link: packets in flight with their arrival times, and what it did to them.
    struct Link {
        var random: SplitMix64
        var dropRate = 0.0
        var reorderRate = 0.0
        var duplicateRate = 0.0
        /// Everything sent in this span is lost (a NAT that forgot the path, say).
        var blackout: Range<NIODeadline>?
        var inFlight: [(at: NIODeadline, toDialer: Bool, packet: Packet)] = []
        var dropped = 0
        var reordered = 0
        var duplicated = 0

        /// Takes the packets that have arrived by `now`.
        mutating func arrivals(by now: NIODeadline) -> [(at: NIODeadline, toDialer: Bool, packet: Packet)] {
            let due = inFlight.filter { $0.at <= now }
            inFlight.removeAll { $0.at <= now }
            return due
        }

        mutating func carry(_ packet: Packet, toDialer: Bool, now: NIODeadline) {
            if blackout?.contains(now) == true || Double.random(in: 0..<1, using: &random) < dropRate {
                dropped += 1
                return
            }
            var delay = TimeAmount.milliseconds(1)
            if Double.random(in: 0..<1, using: &random) < reorderRate {
                reordered += 1
                delay = .milliseconds(Int64.random(in: 2...30, using: &random))
            }
            inFlight.append((now + delay, toDialer, packet))
            if Double.random(in: 0..<1, using: &random) < duplicateRate {
                duplicated += 1
                inFlight.append((now + delay + .milliseconds(3), toDialer, packet))
            }
        }
    }

    let dialer = Address(node: 1)
    let listener = Address(node: 2)

    /// Runs a transfer of `bytes` from dialer to listener, then a close by the dialer. Returns
    /// what the listener received, the events of each side, the time it took, and both ends.
    func transfer(
        _ bytes: [UInt8], link: inout Link, maxSeconds: Int64 = 600
    ) -> (received: [UInt8], dialerEvents: [String], listenerEvents: [String], seconds: Double, ends: (StreamConnection, StreamConnection?)) {
        var now = Self.start
        let key = StreamConnection.Key(local: dialer, localPort: 49152, remote: listener, remotePort: 1001)
        var (client, outputs) = StreamConnection.dial(key, now: now)
        var server: StreamConnection?
        var received: [UInt8] = []
        var events: ([String], [String]) = ([], [])
        var written = false
        var closed = false

        func route(_ outputs: StreamConnection.Outputs, fromDialer: Bool) {
            for output in outputs {
                switch output {
                case .packet(let packet): link.carry(packet, toDialer: !fromDialer, now: now)
                case .data(let chunk): if !fromDialer { received += chunk }
                case .connected: events.0.append("connected")
                case .finished: if fromDialer { events.0.append("finished") } else { events.1.append("finished") }
                case .closed(let reason): if fromDialer { events.0.append("closed \(reason ?? "")") } else { events.1.append("closed \(reason ?? "")") }
                }
            }
        }
        route(outputs, fromDialer: true)
        let end = now + .seconds(maxSeconds)
        while now < end {
            now = now + .milliseconds(5)
            for (_, toDialer, packet) in link.arrivals(by: now) {
                if toDialer {
                    route(client.receive(packet, now: now), fromDialer: true)
                } else if let server {
                    route(server.receive(packet, now: now), fromDialer: false)
                } else if packet.flags == .syn {
                    let accepted = StreamConnection.accept(packet, local: listener, now: now)
                    server = accepted.0
                    route(accepted.1, fromDialer: false)
                }
            }
            if client.state == .established && !written {
                written = true
                route(client.write(bytes, now: now), fromDialer: true)
            }
            if written && !closed && client.unacknowledgedBytes == 0 {
                closed = true
                route(client.close(now: now), fromDialer: true)
            }
            route(client.tick(now: now), fromDialer: true)
            if let server { route(server.tick(now: now), fromDialer: false) }
            if client.isClosed && (server?.isClosed ?? true) && link.inFlight.isEmpty { break }
        }
        _ = outputs
        outputs = []
        return (received, events.0, events.1, Double((now - Self.start).nanoseconds) / 1e9, (client, server))
    }

    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    /// A link that loses everything for two seconds in the middle of a full window: when it
    /// comes back, what was lost is sent again in round trips (slow start from the oldest), not
    /// one segment per retransmission timeout (0.2 s a segment: 17 s more for the 84 lost here).
    func testAWholeWindowLostComesBackInRoundTripsNotOneSegmentPerTimeout() {
        let bytes = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var clean = Link(random: SplitMix64(seed: 7))
        let baseline = transfer(bytes, link: &clean, maxSeconds: 120).seconds
        var link = Link(random: SplitMix64(seed: 7))
        link.blackout = Self.start + .milliseconds(40)..<Self.start + .seconds(2)
        let result = transfer(bytes, link: &link, maxSeconds: 120)
        XCTAssertTrue(result.received == bytes)
        XCTAssertGreaterThan(link.dropped, 50, "the blackout caught a window in flight")
        // The blackout's 2 s, and the timer's backoff (the retransmission due at 3 s): no more.
        XCTAssertLessThan(result.seconds - baseline, 3.5, "\(result.seconds) s against \(baseline) s on a clean link")
    }

    func testACleanLinkDeliversEverythingAndClosesWithOneFinEachWay() {
        var link = Link(random: SplitMix64(seed: 1))
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let result = transfer(bytes, link: &link)
        XCTAssertEqual(result.received.count, bytes.count)
        XCTAssertEqual(result.received, bytes)
        XCTAssertEqual(result.dialerEvents, ["connected", "closed "])
        XCTAssertEqual(result.listenerEvents, ["finished", "closed "])
    }

    /// What each end counts (1.18's `conn_list` figures): on a clean link every segment once;
    /// on a lossy one, segments sent again counted again but their bytes once, and the SACKs and
    /// fast retransmissions that repaired it.
    func testEachEndCountsWhatItCarried() throws {
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let segments = (bytes.count + StreamConnection.segmentSize - 1) / StreamConnection.segmentSize
        var clean = Link(random: SplitMix64(seed: 1))
        let (dialer, listener) = transfer(bytes, link: &clean).ends
        let sent = dialer.traffic, received = try XCTUnwrap(listener?.traffic)
        XCTAssertEqual([sent.segmentsSent, sent.bytesSent, received.segmentsReceived, received.bytesReceived], [segments, bytes.count, segments, bytes.count])
        XCTAssertEqual([sent.sacksReceived, sent.fastRetransmits, received.sacksSent, sent.segmentsReceived, received.bytesSent], [0, 0, 0, 0, 0])
        XCTAssertEqual([dialer.id, listener?.id], [0, 0], "numbered only when a fabric lists them")

        var lossy = Link(random: SplitMix64(seed: 2), dropRate: 0.10, reorderRate: 0.05, duplicateRate: 0.01)
        let repaired = transfer(bytes, link: &lossy).ends
        let resent = repaired.0.traffic, holding = try XCTUnwrap(repaired.1?.traffic)
        XCTAssertEqual(resent.bytesSent, bytes.count, "each byte once")
        XCTAssertEqual(resent.segmentsSent, segments + repaired.0.retransmitted, "each transmission")
        XCTAssertEqual(holding.bytesReceived, bytes.count)
        XCTAssertGreaterThan(holding.segmentsReceived, segments - 1, "duplicates and resent segments too")
        XCTAssertGreaterThan(holding.sacksSent, 0)
        XCTAssertGreaterThan(resent.sacksReceived, 0)
        XCTAssertGreaterThan(resent.fastRetransmits, 0)
    }

    /// The issue's lossy link: 10% dropped, 5% reordered, 1% duplicated, seeded.
    func testALossyReorderingDuplicatingLinkStillDeliversEveryByteInOrder() {
        for seed: UInt64 in [1, 2, 3] {
            var link = Link(random: SplitMix64(seed: seed), dropRate: 0.10, reorderRate: 0.05, duplicateRate: 0.01)
            var generator = SplitMix64(seed: seed &* 977)
            let bytes = generator.bytes(2_000_000)
            let result = transfer(bytes, link: &link)
            XCTAssertEqual(result.received.count, bytes.count, "seed \(seed)")
            XCTAssertTrue(result.received == bytes, "seed \(seed): bytes differ")
            XCTAssertGreaterThan(link.dropped, 100, "seed \(seed)")
            XCTAssertGreaterThan(link.reordered, 50, "seed \(seed)")
            XCTAssertGreaterThan(link.duplicated, 5, "seed \(seed)")
            // The FIN may be lost (1.18 never retransmits it): then the listener ends at its
            // idle timeout instead of with "finished".
            XCTAssertEqual(result.dialerEvents.first, "connected", "seed \(seed)")
            XCTAssertTrue(
                result.listenerEvents == ["finished", "closed "] || result.listenerEvents == ["closed idle timeout"],
                "seed \(seed): \(result.listenerEvents)")
        }
    }

    func testDataThatLooksLikeASackListIsSplitSoThePeerNeverMistakesIt() {
        var link = Link(random: SplitMix64(seed: 5))
        let bytes = Array("SACK".utf8) + [2] + Array(repeating: 0, count: 40) + Array("tail".utf8)
        let result = transfer(bytes, link: &link)
        XCTAssertEqual(result.received, bytes)
    }

    /// A dialer from port 49152 to the listener's port 7, connected by a SYN|ACK whose window
    /// is 0 (the peer's receive queue full from the start).
    private func dialedIntoAShutWindow(now: NIODeadline) -> StreamConnection {
        let key = StreamConnection.Key(local: dialer, localPort: 49152, remote: listener, remotePort: 7)
        let (client, _) = StreamConnection.dial(key, now: now)
        let synAck = Packet(flags: [.syn, .ack], proto: .stream, source: listener, destination: dialer, sourcePort: 7, destinationPort: 49152, acknowledgment: 1, window: 0)
        _ = client.receive(synAck, now: now)
        return client
    }

    /// A gap filled late delivers what it held out of order only up to the hold limit (an
    /// echo stream's share of its budget, a reader's backlog); the rest follows as room opens,
    /// in order, on the next tick.
    func testAFilledGapDeliversNoMoreThanTheHoldLimit() {
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let syn = Packet(flags: .syn, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 1001, sequence: 0)
        let (server, _) = StreamConnection.accept(syn, local: listener, now: now)
        server.holdLimit = 8 * 1152
        func segment(_ index: Int) -> Packet {
            Packet(
                flags: .ack, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 1001,
                sequence: UInt32(1 + index * 1152), acknowledgment: 1, payload: Array(repeating: UInt8(index), count: 1152))
        }
        func delivered(_ outputs: StreamConnection.Outputs) -> [UInt8] {
            outputs.reduce(into: []) { if case .data(let chunk) = $1 { $0 += chunk } }
        }
        for index in 1..<20 { XCTAssertEqual(delivered(server.receive(segment(index), now: now)), []) }
        var received = delivered(server.receive(segment(0), now: now))
        XCTAssertEqual(received.count, 8 * 1152, "the gap released the whole reorder buffer")
        server.readerBacklog = received.count
        XCTAssertEqual(delivered(server.tick(now: now + .milliseconds(10))), [], "delivered past a full backlog")
        server.readerBacklog = 0
        received += delivered(server.tick(now: now + .milliseconds(20)))
        server.readerBacklog = 0
        received += delivered(server.tick(now: now + .milliseconds(30)))
        XCTAssertEqual(received, (0..<20).flatMap { Array(repeating: UInt8($0), count: 1152) })
    }

    /// The peer's window counts free slots (1.18): 0 means full, so one probe segment goes out
    /// and no more until the window opens.
    func testAFullPeerWindowHoldsTheSenderToOneSegment() {
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let client = dialedIntoAShutWindow(now: now)
        func dataPackets(_ outputs: StreamConnection.Outputs) -> [Packet] {
            outputs.compactMap { if case .packet(let packet) = $0, !packet.payload.isEmpty { packet } else { nil } }
        }
        XCTAssertEqual(dataPackets(client.write(Array(repeating: 1, count: 10 * 1152), now: now)).count, 1)
        let opened = Packet(flags: .ack, proto: .stream, source: listener, destination: dialer, sourcePort: 7, destinationPort: 49152, sequence: 1, acknowledgment: 1 + 1152, window: 4)
        let sent = dataPackets(client.receive(opened, now: now))
        XCTAssertEqual(sent.count, 4)
        XCTAssertEqual(sent.first?.sequence, 1 + 1152)
    }

    /// A path that died and came back (`pathChanged`): the oldest lost segment goes again at
    /// once, and the timer is the measured one again, not the backoff the dead path built up.
    func testAChangedPathSendsTheLostSegmentAtOnceWithoutTheBackoff() {
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let key = StreamConnection.Key(local: dialer, localPort: 49152, remote: listener, remotePort: 7)
        let (client, _) = StreamConnection.dial(key, now: now)
        let synAck = Packet(flags: [.syn, .ack], proto: .stream, source: listener, destination: dialer, sourcePort: 7, destinationPort: 49152, acknowledgment: 1, window: 64)
        _ = client.receive(synAck, now: now)
        func dataSequences(_ outputs: StreamConnection.Outputs) -> [UInt32] {
            outputs.compactMap { if case .packet(let packet) = $0, !packet.payload.isEmpty { packet.sequence } else { nil } }
        }
        XCTAssertEqual(dataSequences(client.write(Array(repeating: 1, count: 2 * 1152), now: now)).count, 2)
        // Every copy is lost for 12 s: the timer backs off (the next one would be at 15 s).
        var retransmissions: [Int64] = []
        let start = now
        for _ in 0..<1200 {
            now = now + .milliseconds(10)
            if !dataSequences(client.tick(now: now)).isEmpty { retransmissions.append((now - start).nanoseconds / 1_000_000_000) }
            if now - start >= .seconds(12) { break }
        }
        XCTAssertEqual(retransmissions.last, 7, "backed off: \(retransmissions)")
        // The path changes: the oldest segment goes now.
        XCTAssertEqual(dataSequences(client.pathChanged(now: now)), [1])
        // Straight after, nothing more is due: it was just sent.
        XCTAssertEqual(dataSequences(client.pathChanged(now: now)), [])
        XCTAssertEqual(dataSequences(client.tick(now: now + .milliseconds(990))), [])
        XCTAssertEqual(dataSequences(client.tick(now: now + .seconds(1))), [1], "the measured timeout (1 s: no sample yet), not the backoff")

        // The new path is dead too: it gets the whole budget of retransmissions of its own, not
        // what the old one left (before, this stream was reset a few seconds after the change).
        now = now + .seconds(1)
        var afterChange = 2
        for _ in 0..<12_000 where !client.isClosed {
            now = now + .milliseconds(10)
            afterChange += dataSequences(client.tick(now: now)).count
        }
        XCTAssertTrue(client.isClosed)
        XCTAssertGreaterThanOrEqual(afterChange, 9, "the change's own retransmission and the 8 the timer allows")
    }

    /// A shut window is probed for as long as it stays shut, and those probes are not losses:
    /// when the window opens, the stream does not give up on the segment it probed with.
    func testProbesOfAShutWindowDoNotCountTowardGivingUp() {
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let client = dialedIntoAShutWindow(now: now)
        _ = client.write(Array(repeating: 1, count: 1152), now: now)
        var probes = 0
        for _ in 0..<40 {
            now = now + .seconds(1)
            probes += client.tick(now: now).filter { if case .packet(let packet) = $0 { !packet.payload.isEmpty } else { false } }.count
        }
        XCTAssertGreaterThan(probes, 20, "a shut window is probed about every second")
        // The window opens, the probe's ACK lost: the next retransmission is one, not the end.
        let opened = Packet(flags: .ack, proto: .stream, source: listener, destination: dialer, sourcePort: 7, destinationPort: 49152, sequence: 1, acknowledgment: 1, window: 4)
        _ = client.receive(opened, now: now)
        var outputs: StreamConnection.Outputs = []
        for _ in 0..<3 {
            now = now + .seconds(1)
            outputs += client.tick(now: now)
        }
        XCTAssertFalse(client.isClosed, "\(outputs)")
        XCTAssertTrue(outputs.contains { if case .packet(let packet) = $0 { !packet.payload.isEmpty } else { false } })
    }

    func testAFinIsAnsweredOnceAndAFinAckNever() {
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let syn = Packet(flags: .syn, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 7, window: 512)
        let (server, _) = StreamConnection.accept(syn, local: listener, now: now)
        let fin = Packet(flags: .fin, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 7, sequence: 1)
        let answer = server.receive(fin, now: now)
        XCTAssertEqual(answer.count, 2)
        XCTAssertEqual(answer.first, .finished)
        guard case .packet(let reply)? = answer.last else { return XCTFail("\(answer)") }
        XCTAssertEqual(reply.flags, [.fin, .ack])
        XCTAssertEqual(reply.acknowledgment, 2)
        XCTAssertEqual(reply.window, 0)
        XCTAssertEqual(server.receive(fin, now: now), [], "a repeated FIN gets no second answer")
        var finAck = fin
        finAck.flags = [.fin, .ack]
        XCTAssertEqual(server.receive(finAck, now: now), [])
        XCTAssertEqual(server.state, .timeWait)
        XCTAssertEqual(server.tick(now: now + .seconds(11)), [.closed(reason: nil)])
    }

    /// A lone segment's ACK waits (delayed ACK), but not behind our FIN, which acknowledges
    /// nothing: closing sends the owed ACK first.
    func testClosingSendsAnOwedAckBeforeTheFin() {
        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let syn = Packet(flags: .syn, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 444, window: 512)
        let (server, _) = StreamConnection.accept(syn, local: listener, now: now)
        let ack = Packet(flags: .ack, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 444, sequence: 1, acknowledgment: 1, window: 512)
        _ = server.receive(ack, now: now)
        var request = ack
        request.payload = Array("a handshake request".utf8)
        XCTAssertEqual(server.receive(request, now: now), [.data(request.payload)], "a lone segment's ACK is delayed")
        let packets = server.close(now: now).compactMap { if case .packet(let packet) = $0 { packet } else { nil } }
        XCTAssertEqual(packets.map(\.flags), [.ack, .fin])
        XCTAssertEqual(packets.first?.acknowledgment, 1 + UInt32(request.payload.count))
        XCTAssertEqual(server.close(now: now), [], "no second FIN")
    }

    func testAnIdleStreamSendsKeepalivesAndADeadOneTimesOut() {
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let syn = Packet(flags: .syn, proto: .stream, source: dialer, destination: listener, sourcePort: 49152, destinationPort: 7, window: 512)
        let (server, _) = StreamConnection.accept(syn, local: listener, now: now)
        var keepalives = 0
        var end: StreamConnection.Outputs = []
        while end.isEmpty && now < .uptimeNanoseconds(200_000_000_000) {
            now = now + .milliseconds(500)
            for output in server.tick(now: now) {
                if case .packet(let packet) = output, packet.flags == .ack, packet.payload.isEmpty { keepalives += 1 } else { end.append(output) }
            }
        }
        XCTAssertEqual(keepalives, 3, "at 30, 60 and 90 s")
        XCTAssertEqual(end, [.closed(reason: "idle timeout")])
    }

    func testARefusedDialAndADialNobodyAnswersBothEnd() {
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let key = StreamConnection.Key(local: dialer, localPort: 49152, remote: listener, remotePort: 9)
        let (refused, _) = StreamConnection.dial(key, now: now)
        let reset = Packet(flags: [.rst, .ack], proto: .stream, source: listener, destination: dialer, sourcePort: 9, destinationPort: 49152)
        XCTAssertEqual(refused.receive(reset, now: now), [.closed(reason: "connection refused")])

        let (unanswered, _) = StreamConnection.dial(key, now: now)
        var syns = 1
        var end: StreamConnection.Outputs = []
        for _ in 0..<10_000 where end.isEmpty {
            now = now + .milliseconds(100)
            for output in unanswered.tick(now: now) {
                if case .packet = output { syns += 1 } else { end.append(output) }
            }
        }
        XCTAssertEqual(syns, 7)
        XCTAssertEqual(end, [.closed(reason: "dial timed out")])
    }
}
