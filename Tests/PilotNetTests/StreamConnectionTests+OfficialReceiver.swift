import NIOCore
import PilotNet
import PilotTestSupport
import PilotWire
import XCTest

/// Our sender against a receiver that holds what 1.18's holds (docs/PROTOCOL.md §3.3): a queue
/// of 512 segments for its reader, a window that counts the queue's free slots only, and 128
/// segments out of order at most, the rest dropped without a word.
extension StreamConnectionTests {
    /// 1.18's receive side, from what is known of it: in-order data goes to a queue of 512
    /// segments (a segment that finds it full is dropped unacknowledged), segments after the
    /// one expected are held, 128 at most, each out-of-order arrival is acknowledged at once
    /// with SACK blocks, and the window is the queue's free slots.
    struct OfficialReceiver {
        static let queueSlots = 512
        static let heldLimit = 128
        var expected: UInt32 = 1
        var held: [UInt32: [UInt8]] = [:]
        var queued = 0
        var received: [UInt8] = []
        /// Out-of-order segments dropped because 128 were held.
        var droppedBeyondCap = 0
        var finished = false

        mutating func receive(_ packet: Packet, local: Address, port: UInt16) -> [Packet] {
            func reply(_ flags: PacketFlags, ack: UInt32, window: UInt16, payload: [UInt8] = []) -> Packet {
                Packet(
                    flags: flags, proto: .stream, source: local, destination: packet.source, sourcePort: port,
                    destinationPort: packet.sourcePort, sequence: 1, acknowledgment: ack, window: window, payload: payload)
            }
            if packet.flags.contains(.syn) { return [reply([.syn, .ack], ack: 1, window: UInt16(Self.queueSlots))] }
            if packet.flags.contains(.fin) {
                finished = true
                return packet.flags.contains(.ack) ? [] : [reply([.fin, .ack], ack: packet.sequence &+ 1, window: 0)]
            }
            guard !packet.payload.isEmpty else { return [] }
            if packet.sequence == expected {
                guard queued < Self.queueSlots else { return [] }
                var next: [UInt8]? = packet.payload
                while let bytes = next, queued < Self.queueSlots {
                    received += bytes
                    queued += 1
                    expected &+= UInt32(bytes.count)
                    next = held.removeValue(forKey: expected)
                }
                if let bytes = next { held[expected] = bytes }
            } else if Int32(bitPattern: packet.sequence &- expected) > 0, held[packet.sequence] == nil {
                if held.count < Self.heldLimit { held[packet.sequence] = packet.payload } else { droppedBeyondCap += 1 }
            }
            var blocks: [SelectiveAck.Block] = []
            for start in held.keys.sorted(by: { Int32(bitPattern: $1 &- $0) > 0 }) {
                let end = start &+ UInt32(held[start]?.count ?? 0)
                if let last = blocks.last, last.right == start { blocks[blocks.count - 1].right = end } else { blocks.append(.init(left: start, right: end)) }
            }
            let payload = SelectiveAck(blocks: blocks)?.encoded() ?? []
            return [reply(.ack, ack: expected, window: UInt16(Self.queueSlots - queued), payload: payload)]
        }

        /// Its reader takes up to `segments` queued segments.
        mutating func read(_ segments: Int) { queued = max(0, queued - segments) }
    }

    /// Sends `bytes` from our end to the model of 1.18's, then closes; the reader takes
    /// `readPerStep` segments every 5 ms. Returns what arrived, our end, the model and the time.
    func transferToOfficial(
        _ bytes: [UInt8], link: inout Link, readPerStep: Int, maxSeconds: Int64 = 300
    ) -> (received: [UInt8], sender: StreamConnection, receiver: OfficialReceiver, seconds: Double, events: [String]) {
        var now = Self.start
        let key = StreamConnection.Key(local: dialer, localPort: 49152, remote: listener, remotePort: 7)
        var (client, outputs) = StreamConnection.dial(key, now: now)
        var receiver = OfficialReceiver()
        var events: [String] = []
        var written = false
        var closed = false
        func route(_ outputs: StreamConnection.Outputs) {
            for output in outputs {
                switch output {
                case .packet(let packet): link.carry(packet, toDialer: false, now: now)
                case .closed(let reason): events.append("closed \(reason ?? "")")
                case .connected, .data, .finished: break
                }
            }
        }
        route(outputs)
        outputs = []
        let end = now + .seconds(maxSeconds)
        while now < end {
            now = now + .milliseconds(5)
            for (_, toDialer, packet) in link.arrivals(by: now) {
                if toDialer {
                    route(client.receive(packet, now: now))
                } else {
                    for reply in receiver.receive(packet, local: listener, port: 7) { link.carry(reply, toDialer: true, now: now) }
                }
            }
            receiver.read(readPerStep)
            if client.state == .established && !written {
                written = true
                route(client.write(bytes, now: now))
            }
            if written && !closed && client.unacknowledgedBytes == 0 {
                closed = true
                route(client.close(now: now))
            }
            route(client.tick(now: now))
            if client.isClosed && link.inFlight.isEmpty { break }
        }
        return (receiver.received, client, receiver, Double((now - Self.start).nanoseconds) / 1e9, events)
    }

    /// Issue 17's stall: 1.18 holds 128 segments out of order and drops the rest, so a sender
    /// with more in flight past a hole loses every segment beyond, and SACK never names them.
    /// On a clean link, a lossy one and behind a slow reader, everything arrives, nothing resets.
    func testASenderFacingOneEighteensOutOfOrderCapStillFinishes() {
        for (seed, drop, readPerStep) in [(UInt64(11), 0.0, 512), (12, 0.01, 512), (13, 0.03, 512), (14, 0.01, 8)] {
            var link = Link(random: SplitMix64(seed: seed), dropRate: drop, reorderRate: drop > 0 ? 0.02 : 0)
            var generator = SplitMix64(seed: seed &* 31)
            let bytes = generator.bytes(4_000_000)
            let result = transferToOfficial(bytes, link: &link, readPerStep: readPerStep)
            let label = "seed \(seed), \(drop * 100)% loss, reader \(readPerStep)/5 ms"
            XCTAssertEqual(result.received.count, bytes.count, "\(label): \(result.events), \(result.sender.retransmitted) retransmitted")
            XCTAssertTrue(result.received == bytes, "\(label): bytes differ")
            XCTAssertFalse(result.events.contains { $0.hasPrefix("closed reset") }, "\(label): \(result.events)")
            print("1.18 receiver model, \(label): \(result.seconds) s, \(result.sender.retransmitted) retransmitted, \(result.receiver.droppedBeyondCap) dropped beyond the cap")
        }
    }

    /// A dialer from port 49152 to the listener's port 7, connected by a SYN|ACK advertising
    /// `window`.
    private func dialed(synAckWindow window: UInt16, now: NIODeadline) -> (StreamConnection, syn: Packet?) {
        let key = StreamConnection.Key(local: dialer, localPort: 49152, remote: listener, remotePort: 7)
        let (client, outputs) = StreamConnection.dial(key, now: now)
        let synAck = Packet(
            flags: [.syn, .ack], proto: .stream, source: listener, destination: dialer, sourcePort: 7, destinationPort: 49152, acknowledgment: 1,
            window: window)
        _ = client.receive(synAck, now: now)
        return (client, outputs.compactMap { if case .packet(let packet) = $0 { packet } else { nil } }.first)
    }

    private func ack(_ acknowledgment: UInt32, holding blocks: [SelectiveAck.Block], window: UInt16 = 512) -> Packet {
        Packet(
            flags: .ack, proto: .stream, source: listener, destination: dialer, sourcePort: 7, destinationPort: 49152, sequence: 1,
            acknowledgment: acknowledgment, window: window, payload: SelectiveAck(blocks: blocks)?.encoded() ?? [])
    }

    private func dataSequences(_ outputs: StreamConnection.Outputs) -> [UInt32] {
        outputs.compactMap { if case .packet(let packet) = $0, !packet.payload.isEmpty { packet.sequence } else { nil } }
    }

    /// Our SYN says 513, which 1.18 never does (its queue has 512 slots). A peer whose SYN|ACK
    /// said 512 (1.18) never has more than 128 segments unacknowledged from us, SACKed ones
    /// included, however far it SACKs past a hole; one that said 513 (pilot-host) gets what the
    /// windows allow.
    func testOnlyAPeerNotKnownAsPilotHostIsHeldToWhatOneEighteenHoldsOutOfOrder() {
        let size = UInt32(StreamConnection.segmentSize)
        for (window, capped) in [(UInt16(512), true), (StreamConnection.pilotHostSynWindow, false)] {
            var now = Self.start
            let (client, syn) = dialed(synAckWindow: window, now: now)
            XCTAssertEqual(syn?.window, 513)
            let key = StreamConnection.Key(local: dialer, localPort: 49153, remote: listener, remotePort: 7)
            let unanswered = StreamConnection.dial(key, now: now).0.tick(now: now + .seconds(1))
            XCTAssertEqual(unanswered.compactMap { if case .packet(let packet) = $0 { packet.window } else { nil } }, [StreamConnection.pilotHostSynWindow], "a SYN sent again says it too")
            var sent = dataSequences(client.write(Array(repeating: 7, count: 600 * Int(size)), now: now))
            // The first segment is lost; the peer SACKs everything after it, round after round.
            for _ in 0..<200 {
                now = now + .milliseconds(5)
                let highest = (sent.max() ?? 1) &+ size
                sent += dataSequences(client.receive(ack(1, holding: [.init(left: 1 + size, right: highest)]), now: now))
            }
            let outstanding = Int(((sent.max() ?? 1) &+ size &- 1) / size)
            if capped {
                XCTAssertEqual(outstanding, StreamConnection.officialOutOfOrderLimit, "1.18 drops what is past 128 held")
            } else {
                XCTAssertGreaterThan(outstanding, StreamConnection.officialOutOfOrderLimit + 64, "a pilot-host peer holds a whole window out of order")
            }
        }
    }

    /// 1.18 SACKed two segments, then its reader's queue could not take them when the hole
    /// filled: its ACK stops at the first of them, still listed in its SACK block. That segment
    /// goes again at once (before, it stayed marked as held and was never sent again).
    func testAnAckThatStopsAtASackedSegmentGetsThatSegmentAgain() {
        let size = UInt32(StreamConnection.segmentSize)
        let now = Self.start
        let (client, _) = dialed(synAckWindow: 512, now: now)
        XCTAssertEqual(dataSequences(client.write(Array(repeating: 7, count: 3 * Int(size)), now: now)), [1, 1 + size, 1 + 2 * size])
        let held = SelectiveAck.Block(left: 1 + size, right: 1 + 3 * size)
        _ = client.receive(ack(1, holding: [held]), now: now + .milliseconds(1))
        let again = dataSequences(client.receive(ack(1 + size, holding: [held]), now: now + .milliseconds(2)))
        XCTAssertEqual(again, [1 + size])
        XCTAssertEqual(client.reneged, 1)
    }
}
