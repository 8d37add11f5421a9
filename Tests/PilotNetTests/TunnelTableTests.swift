import NIOCore
import PilotCrypto
import PilotNet
import PilotWire
import XCTest

/// Two hosts' tunnel tables wired back to back in memory: every datagram one emits is handed to
/// the other, so each rule of the key exchange and of the receive path is checked on bytes.
final class TunnelTableTests: XCTestCase {
    /// A node as the registry knows it: address and Ed25519 key.
    struct Node {
        let address: Address
        let key: Ed25519PrivateKey
        let identity: TunnelIdentity

        init(_ node: UInt32) throws {
            address = Address(node: node)
            key = try Ed25519PrivateKey()
            identity = try TunnelIdentity(address: address, signingKey: key)
        }
    }

    let endpointA = try! SocketAddress(ipAddress: "127.0.0.1", port: 40001)
    let endpointB = try! SocketAddress(ipAddress: "127.0.0.1", port: 40002)
    var now = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    /// The registry of this little world.
    var registry: [UInt32: Ed25519PublicKey] = [:]

    func make(_ nodes: UInt32...) throws -> [Node] {
        try nodes.map { id in
            let node = try Node(id)
            registry[id] = node.key.publicKey
            return node
        }
    }

    /// Delivers `actions` of `from` to `to` (and lookups from the registry) until quiet;
    /// returns what was delivered on each side.
    @discardableResult
    func run(
        _ actions: TunnelActions, from: TunnelTable, to: TunnelTable, fromEndpoint: SocketAddress, toEndpoint: SocketAddress,
        drop: (([UInt8]) -> Bool)? = nil
    ) -> (atFrom: [Packet], atTo: [Packet]) {
        var queue: [(actions: TunnelActions, side: Int)] = [(actions, 0)]
        var delivered: ([Packet], [Packet]) = ([], [])
        var rounds = 0
        while let (batch, side) = queue.first, rounds < 100 {
            queue.removeFirst()
            rounds += 1
            let (me, peer) = side == 0 ? (from, to) : (to, from)
            let peerSide = 1 - side
            let source = side == 0 ? fromEndpoint : toEndpoint
            for action in batch {
                switch action {
                case let .send(bytes, _, _):
                    if drop?(bytes) == true { continue }
                    queue.append((peer.receive(bytes, from: source, socket: 0, now: now), peerSide))
                case let .deliver(_, packet):
                    if side == 0 { delivered.0.append(packet) } else { delivered.1.append(packet) }
                case .lookUpKey(let node):
                    queue.append((me.keyLookedUp(node, key: registry[node], now: now), side))
                case .exchangeFailed, .pathChanged, .fromBeacon, .wake, .resolveEndpoint, .timerDue:
                    break
                }
            }
        }
        return delivered
    }

    func datagram(_ from: Node, to: Node, _ text: String) -> Packet {
        Packet(proto: .datagram, source: from.address, destination: to.address, sourcePort: 1000, destinationPort: 1001, payload: Array(text.utf8))
    }

    func testKeyExchangeThenPacketsBothWays() throws {
        let nodes = try make(1, 2)
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(nodes[0].identity)
        b.add(nodes[1].identity, ownSocket: 0)
        let first = try a.send(datagram(nodes[0], to: nodes[1], "hello"), to: 2, endpoint: endpointB, now: now)
        // Nothing sealed before the exchange: the first frame out is a 136-byte PILA.
        guard case let .send(bytes, to, _) = first.first else { return XCTFail("\(first)") }
        XCTAssertEqual(bytes.count, 136)
        XCTAssertEqual(Array(bytes.prefix(4)), Array("PILA".utf8))
        XCTAssertEqual(to, endpointB)
        let result = run(first, from: a, to: b, fromEndpoint: endpointA, toEndpoint: endpointB)
        XCTAssertEqual(result.atTo.map(\.payload), [Array("hello".utf8)])
        XCTAssertTrue(a.hasSession(local: 1, remote: 2) && b.hasSession(local: 2, remote: 1))

        let back = try b.send(datagram(nodes[1], to: nodes[0], "back"), to: 1, now: now)
        guard case let .send(sealed, to: replyEndpoint, _) = back.first else { return XCTFail("\(back)") }
        XCTAssertEqual(Array(sealed.prefix(4)), Array("PILS".utf8))
        XCTAssertEqual(sealed.count, 4 + 4 + 12 + Packet.headerSize + 4 + 16)
        XCTAssertEqual(replyEndpoint, endpointA, "answers go where the peer was seen")
        XCTAssertEqual(run(back, from: b, to: a, fromEndpoint: endpointB, toEndpoint: endpointA).atTo.map(\.payload), [Array("back".utf8)])

        // A replayed frame is refused and counted.
        XCTAssertEqual(a.receive(sealed, from: endpointB, socket: 0, now: now), [])
        XCTAssertEqual(a.counters.replayed, 1)
        XCTAssertEqual(a.counters.delivered, 1)

        // Each identity's traffic: the packets sealed and opened, header included; the replay is not in it.
        var expected = TunnelTraffic()
        (expected.packetsSent, expected.bytesSent, expected.packetsReceived, expected.bytesReceived) = (1, Packet.headerSize + 5, 1, Packet.headerSize + 4)
        XCTAssertEqual(a.traffic(of: 1), expected)
        (expected.bytesSent, expected.bytesReceived) = (Packet.headerSize + 4, Packet.headerSize + 5)
        XCTAssertEqual(b.traffic(of: 2), expected)
        XCTAssertEqual(a.traffic(of: 2), TunnelTraffic(), "not a's identity")
    }

    func testAPILAWithAKeyTheRegistryDoesNotHoldIsRejected() throws {
        let nodes = try make(1, 2)
        let impostor = try Node(1)  // claims node 1 with its own key
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(impostor.identity)
        b.add(nodes[1].identity, ownSocket: 0)
        let actions = try a.send(datagram(impostor, to: nodes[1], "let me in"), to: 2, endpoint: endpointB, now: now)
        let result = run(actions, from: a, to: b, fromEndpoint: endpointA, toEndpoint: endpointB)
        XCTAssertEqual(result.atTo, [])
        XCTAssertFalse(b.hasSession(local: 2, remote: 1))
        XCTAssertEqual(b.counters.keyExchangesRejected, 1)

        // A PILA whose signature does not cover its X25519 key: rejected too.
        var forged = try XCTUnwrap(TunnelFrameBytes.pila(of: nodes[0].identity, sendingTo: b, endpoint: endpointB, now: now))
        forged[10] ^= 0xFF  // inside the X25519 key
        _ = b.receive(forged, from: endpointA, socket: 0, now: now)
        XCTAssertEqual(b.counters.keyExchangesRejected, 2)
        XCTAssertFalse(b.hasSession(local: 2, remote: 1))
    }

    func testFramesWithAForgedSenderOrAForeignSourceAreDropped() throws {
        let nodes = try make(1, 2, 3)
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(nodes[0].identity)
        b.add(nodes[1].identity, ownSocket: 0)
        run(try a.send(datagram(nodes[0], to: nodes[1], "x"), to: 2, endpoint: endpointB, now: now), from: a, to: b,
            fromEndpoint: endpointA, toEndpoint: endpointB)
        guard case let .send(frame, _, _)? = try a.send(datagram(nodes[0], to: nodes[1], "y"), to: 2, now: now).first else { return XCTFail() }
        // The same frame claiming sender 3: it does not open under any session with node 3.
        var forged = frame
        forged[7] = 3
        XCTAssertEqual(b.receive(forged, from: endpointA, socket: 0, now: now).filter { if case .deliver = $0 { true } else { false } }, [])
        XCTAssertEqual(b.counters.noSession, 1)
        // Flipped ciphertext under the right sender: authentication fails, nothing delivered.
        var flipped = frame
        flipped[40] ^= 1
        XCTAssertEqual(b.receive(flipped, from: endpointA, socket: 0, now: now).filter { if case .deliver = $0 { true } else { false } }, [])
        XCTAssertEqual(b.counters.authenticationFailed, 1)
        // Untouched, it is delivered.
        XCTAssertEqual(b.receive(frame, from: endpointA, socket: 0, now: now).count, 1)
        // Plaintext PILT is never accepted.
        let plain = TunnelFrame.plaintext(packet: try datagram(nodes[0], to: nodes[1], "z").encoded()[...]).encoded()
        XCTAssertEqual(b.receive(plain, from: endpointA, socket: 0, now: now), [])
        XCTAssertEqual(b.counters.plaintextDropped, 1)
        // Garbage of every length: counted, never delivered.
        for length in 0..<64 { _ = b.receive((0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 80) }, from: endpointA, socket: 0, now: now) }
        XCTAssertEqual(b.counters.delivered, 2, "x in the exchange, then y")
    }

    func testOneRemoteTalkingToTwoLocalIdentitiesOnOneSocketReachesEachByItsKey() throws {
        let nodes = try make(1, 2, 3)
        let remote = TunnelTable()
        let host = TunnelTable()
        remote.add(nodes[0].identity, ownSocket: 0)  // accepts strangers
        host.add(nodes[1].identity)
        host.add(nodes[2].identity)
        // Identities on the shared socket have business with node 1 once they start talking.
        for local in [nodes[1], nodes[2]] {
            run(try host.send(datagram(local, to: nodes[0], "hi from \(local.address.node)"), to: 1, endpoint: endpointA, now: now),
                from: host, to: remote, fromEndpoint: endpointB, toEndpoint: endpointA)
        }
        XCTAssertEqual(remote.sessionCount, 2)
        // The remote answers each; the shared socket sorts them out by sender and nonce prefix.
        for local in [nodes[1], nodes[2]] {
            let reply = try remote.send(datagram(nodes[0], to: local, "to \(local.address.node)"), to: local.address.node, now: now)
            let got = run(reply, from: remote, to: host, fromEndpoint: endpointA, toEndpoint: endpointB).atTo
            XCTAssertEqual(got.map(\.destination), [local.address])
            XCTAssertEqual(got.map { String(decoding: $0.payload, as: UTF8.self) }, ["to \(local.address.node)"])
        }
        XCTAssertEqual(host.counters.misrouted, 0)
        // A stranger's PILA on the shared socket is for nobody.
        let stranger = try make(9)[0]
        let probe = TunnelTable()
        probe.add(stranger.identity)
        run(try probe.send(datagram(stranger, to: nodes[1], "?"), to: 2, endpoint: endpointB, now: now), from: probe, to: host,
            fromEndpoint: endpointA, toEndpoint: endpointB)
        XCTAssertEqual(host.counters.unsolicited, 1)
        XCTAssertFalse(host.hasSession(local: 2, remote: 9))
    }

    func testAnUnansweredExchangeIsRetriedWithAKeyRequestThenGivesUp() throws {
        let nodes = try make(1, 2)
        let a = TunnelTable()
        a.add(nodes[0].identity)
        XCTAssertEqual(try a.send(datagram(nodes[0], to: nodes[1], "lost"), to: 2, endpoint: endpointB, now: now).count, 1)
        XCTAssertEqual(a.remotesKnown, 1)
        var sent: [String] = []
        var failed: TunnelActions = []
        for second in 1...30 {
            for action in a.tick(now: now + .seconds(Int64(second))) {
                switch action {
                case let .send(bytes, _, _): sent.append(String(decoding: bytes.prefix(4), as: UTF8.self))
                case .exchangeFailed: failed.append(action)
                default: break
                }
            }
        }
        XCTAssertEqual(sent, Array(repeating: ["PILA", "PILK"], count: 5).flatMap { $0 })
        XCTAssertEqual(failed, [.exchangeFailed(local: 1, remote: 2, dropped: 1)])
        // Nobody has business with node 2 any more: its path is forgotten, not kept for ever.
        XCTAssertEqual(a.remotesKnown, 0)
        XCTAssertThrowsError(try a.send(datagram(nodes[1], to: nodes[0], "not mine"), to: 1, now: now)) {
            XCTAssertEqual($0 as? TunnelError, .unknownIdentity(2))
        }
    }

    func testAKeyRequestIsAnsweredWithAPILAAndInstallsNothing() throws {
        let nodes = try make(1, 2)
        let b = TunnelTable()
        b.add(nodes[1].identity, ownSocket: 0)
        let request = TunnelFrame.keyExchange(try KeyExchange(node: 1, x25519: Array(repeating: 9, count: 32))).encoded()
        let answer = b.receive(request, from: endpointA, socket: 0, now: now)
        guard case let .send(bytes, to, _)? = answer.first, answer.count == 1 else { return XCTFail("\(answer)") }
        XCTAssertEqual(Array(bytes.prefix(4)), Array("PILA".utf8))
        XCTAssertEqual(to, endpointA)
        XCTAssertFalse(b.hasSession(local: 2, remote: 1))
        // At most once a second.
        XCTAssertEqual(b.receive(request, from: endpointA, socket: 0, now: now), [])
    }

    func testAnIdleSessionGetsKeepalivesThatTheOtherSideSwallows() throws {
        let nodes = try make(1, 2)
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(nodes[0].identity)
        b.add(nodes[1].identity, ownSocket: 0)
        run(try a.send(datagram(nodes[0], to: nodes[1], "x"), to: 2, endpoint: endpointB, now: now), from: a, to: b,
            fromEndpoint: endpointA, toEndpoint: endpointB)
        now = now + .seconds(26)
        let keepalives = a.tick(now: now)
        XCTAssertEqual(a.counters.keepalivesSent, 1)
        let delivered = run(keepalives, from: a, to: b, fromEndpoint: endpointA, toEndpoint: endpointB).atTo
        XCTAssertEqual(delivered.map(\.proto), [.control])
        XCTAssertEqual(delivered.first?.payload, [])
    }
}

extension TunnelTableTests {
    /// A little world with a beacon: frames to the beacon's endpoint are relayed (0x05 in, 0x06
    /// out, from the beacon's address); direct frames pass only while `directWorks`.
    final class RelayWorld {
        let beacon = try! SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        var tables: [UInt32: (table: TunnelTable, endpoint: SocketAddress)] = [:]
        var registry: [UInt32: Ed25519PublicKey]
        var directWorks: Bool
        var now: NIODeadline
        var delivered: [UInt32: [Packet]] = [:]
        var punchRequests: [(UInt32, UInt32)] = []
        var directFramesDropped = 0

        init(registry: [UInt32: Ed25519PublicKey], directWorks: Bool, now: NIODeadline) {
            self.registry = registry
            self.directWorks = directWorks
            self.now = now
        }

        func owner(of endpoint: SocketAddress) -> UInt32? { tables.first { $0.value.endpoint == endpoint }?.key }

        /// Runs `actions` of node `node`'s table until the world is quiet.
        func run(_ actions: TunnelActions, of node: UInt32) {
            var queue: [(actions: TunnelActions, node: UInt32)] = [(actions, node)]
            var rounds = 0
            while let (batch, at) = queue.first, rounds < 200 {
                queue.removeFirst()
                rounds += 1
                guard let me = tables[at] else { continue }
                for action in batch {
                    switch action {
                    case let .send(bytes, to, _) where to == beacon:
                        guard let message = try? BeaconMessage(decoding: bytes[...]) else { continue }
                        switch message {
                        case let .relay(source, destination, frame):
                            guard let target = tables[destination], let delivery = try? BeaconMessage.relayDeliver(source: source, frame: frame).encoded()
                            else { continue }
                            queue.append((target.table.receive(delivery, from: beacon, socket: 0, now: now), destination))
                        case let .punchRequest(requester, target):
                            // As the beacon: each side is told where the other is.
                            punchRequests.append((requester, target))
                            guard let other = tables[target] else { continue }
                            for (node, endpoint) in [(requester, other.endpoint), (target, me.endpoint)] {
                                guard let table = tables[node]?.table, let command = punchCommand(to: endpoint) else { continue }
                                queue.append((table.receive(command, from: beacon, socket: 0, now: now), node))
                            }
                        default: break
                        }
                    case let .send(bytes, to, _):
                        guard directWorks, let target = owner(of: to) else {
                            directFramesDropped += 1
                            continue
                        }
                        queue.append((tables[target]!.table.receive(bytes, from: me.endpoint, socket: 0, now: now), target))
                    case let .deliver(local, packet):
                        delivered[local, default: []].append(packet)
                    case .lookUpKey(let node):
                        queue.append((me.table.keyLookedUp(node, key: registry[node], now: now), at))
                    case let .resolveEndpoint(_, remote):
                        // The registry knows every node of the world where its table is.
                        queue.append((me.table.endpointResolved(remote, endpoint: tables[remote]?.endpoint, now: now), at))
                    case .timerDue:
                        // The clock moves on to what is due.
                        guard let due = me.table.nextDue else { continue }
                        now = max(now, due)
                        queue.append((me.table.sendDue(now: now), at))
                    case .exchangeFailed, .pathChanged, .fromBeacon, .wake:
                        break
                    }
                }
            }
        }

        /// A punch command (0x04) naming `endpoint`, as the beacon sends it.
        func punchCommand(to endpoint: SocketAddress) -> [UInt8]? {
            guard case let .v4(address) = endpoint, let port = endpoint.port else { return nil }
            let ip = withUnsafeBytes(of: address.address.sin_addr.s_addr) { Array($0) }
            return try? BeaconMessage.punchCommand(ip: ip, port: UInt16(port)).encoded()
        }

        /// Node `node`'s table ticks; a direct upgrade it starts is resolved from the world's
        /// endpoints and its probes go as they fall due (the clock moves on with them). Returns
        /// where the probes went.
        @discardableResult
        func tickAndProbe(_ node: UInt32) -> [SocketAddress] {
            guard let table = tables[node]?.table else { return [] }
            run(table.tick(now: now), of: node)
            var probed: [SocketAddress] = []
            while let due = table.nextDue {
                now = due
                let probes = table.sendDue(now: now)
                probed += probes.compactMap { action in if case let .send(_, to, _) = action { to } else { nil } }
                run(probes, of: node)
            }
            return probed
        }
    }

    /// Nodes 1 and 2 on tables `a` and `b` in a world where direct frames are lost; `a` knows
    /// the beacon only if `aUsesBeacon`.
    private func relayPair(aUsesBeacon: Bool = true) throws -> (nodes: [Node], world: RelayWorld, a: TunnelTable, b: TunnelTable) {
        let nodes = try make(1, 2)
        let world = RelayWorld(registry: registry, directWorks: false, now: now)
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(nodes[0].identity)
        b.add(nodes[1].identity, ownSocket: 0)
        if aUsesBeacon { a.useBeacon(world.beacon) }
        b.useBeacon(world.beacon)
        world.tables = [1: (a, endpointA), 2: (b, endpointB)]
        return (nodes, world, a, b)
    }

    /// Two nodes that cannot reach each other directly: the PILA's copy through the beacon
    /// makes the session, every frame after goes 0x05 → beacon → 0x06, both ways, and a relayed
    /// frame is accepted only from the beacon's address and only for the sender it names.
    func testNodesThatCannotReachEachOtherTalkThroughTheBeacon() throws {
        let (nodes, world, a, b) = try relayPair()

        let first = try a.send(datagram(nodes[0], to: nodes[1], "hello"), to: 2, endpoint: endpointB, now: now)
        // A punch request; the PILA straight to the endpoint the registry gave, and a copy
        // through the beacon, once the punch is done.
        XCTAssertEqual(first, [.send(try BeaconMessage.punchRequest(requester: 1, target: 2).encoded(), to: world.beacon, socket: 0), .timerDue])
        world.run(first, of: 1)
        XCTAssertEqual(world.delivered[2]?.map(\.payload), [Array("hello".utf8)])
        XCTAssertTrue(a.hasSession(local: 1, remote: 2) && b.hasSession(local: 2, remote: 1))
        XCTAssertEqual(b.sessions(of: 2).first?.relayed, true, "b heard a only through the beacon")
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, true, "a heard b's answer only through the beacon")

        let back = try b.send(datagram(nodes[1], to: nodes[0], "back"), to: 1, now: now)
        guard case let .send(wrapped, to, _)? = back.first, to == world.beacon,
            case let .relay(source, destination, frame)? = try? BeaconMessage(decoding: wrapped[...])
        else { return XCTFail("\(back)") }
        XCTAssertEqual([source, destination], [2, 1])
        XCTAssertEqual(Array(frame.prefix(4)), Array("PILS".utf8))
        world.run(back, of: 2)
        XCTAssertEqual(world.delivered[1]?.map(\.payload), [Array("back".utf8)])
        XCTAssertGreaterThanOrEqual(a.counters.relayedIn, 2)

        // The same delivery from anyone but the beacon is not obeyed.
        let another = try b.send(datagram(nodes[1], to: nodes[0], "again"), to: 1, now: now)
        guard case let .send(again, _, _)? = another.first, case let .relay(_, _, inner)? = try? BeaconMessage(decoding: again[...]),
            let delivery = try? BeaconMessage.relayDeliver(source: 2, frame: inner).encoded()
        else { return XCTFail() }
        let beaconMessagesBefore = a.counters.beacon
        XCTAssertEqual(a.receive(delivery, from: endpointB, socket: 0, now: now), [])
        XCTAssertEqual(a.counters.beacon, beaconMessagesBefore + 1)
        // From the beacon, but naming another sender than the frame's: spoofed.
        let misnamed = try BeaconMessage.relayDeliver(source: 3, frame: inner).encoded()
        XCTAssertEqual(a.receive(misnamed, from: world.beacon, socket: 0, now: now), [])
        XCTAssertEqual(a.counters.spoofed, 1)
        // The real one still arrives.
        XCTAssertEqual(
            a.receive(delivery, from: world.beacon, socket: 0, now: now).compactMap { if case let .deliver(_, p) = $0 { p.payload } else { nil } },
            [Array("again".utf8)])
    }

    /// Without a relay copy (the remote is an old daemon, or the copy was lost), the exchange
    /// goes through the beacon from its second attempt, with a punch request; a frame then
    /// heard directly brings the path back to direct.
    func testRetriesTurnToTheBeaconWithAPunchAndADirectFrameTurnsBack() throws {
        let (nodes, world, a, b) = try relayPair(aUsesBeacon: false)
        // a starts with no beacon: one PILA, straight, lost.
        let first = try a.send(datagram(nodes[0], to: nodes[1], "late"), to: 2, endpoint: endpointB, now: now)
        XCTAssertEqual(first.count, 1)
        world.run(first, of: 1)
        XCTAssertEqual(world.directFramesDropped, 1)
        a.useBeacon(world.beacon)
        world.now = now + .seconds(4)
        let retry = a.tick(now: world.now)
        XCTAssertTrue(retry.contains(.pathChanged(remote: 2, relayed: true)), "\(retry)")
        world.run(retry, of: 1)
        XCTAssertEqual(world.punchRequests.map { [$0.0, $0.1] }, [[1, 2]])
        XCTAssertEqual(world.delivered[2]?.map(\.payload), [Array("late".utf8)])

        // The NAT opens: a's next direct upgrade gets through, b answers directly from then on,
        // and so does a once it hears b directly.
        world.directWorks = true
        world.now = world.now + .seconds(15)
        XCTAssertEqual(world.tickAndProbe(1), Array(repeating: endpointB, count: 5))
        XCTAssertEqual(b.sessions(of: 2).first?.relayed, false)
        let direct = try b.send(datagram(nodes[1], to: nodes[0], "direct now"), to: 1, now: world.now)
        guard case let .send(_, to: straight, _)? = direct.first else { return XCTFail("\(direct)") }
        XCTAssertEqual(straight, endpointA)
        world.run(direct, of: 2)
        XCTAssertEqual(world.delivered[1]?.map(\.payload), [Array("direct now".utf8)])
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, false)
        let reply = try a.send(datagram(nodes[0], to: nodes[1], "straight"), to: 2, now: world.now)
        guard case let .send(_, to, _)? = reply.first else { return XCTFail("\(reply)") }
        XCTAssertEqual(to, endpointB)
    }

    /// 1.18's blackhole rule: a direct path that goes silent mid-session (a NAT mapping lost)
    /// is given up for the beacon once three frames have gone unanswered for 8 s since the
    /// first; traffic goes on through the beacon, and the path comes back to direct when the
    /// remote is heard directly again. Frames far apart (a keepalive long ago, two frames now)
    /// start the count again.
    func testADirectPathThatGoesSilentTurnsToTheBeaconAndComesBack() throws {
        let (nodes, world, a, b) = try relayPair()
        world.directWorks = true
        world.run(try a.send(datagram(nodes[0], to: nodes[1], "hi"), to: 2, endpoint: endpointB, now: now), of: 1)
        world.run(try b.send(datagram(nodes[1], to: nodes[0], "hi back"), to: 1, now: now), of: 2)
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, false)

        // The direct path dies. Two frames are not enough, nor three before 8 s have passed
        // since the first; three and 8 s are.
        world.directWorks = false
        for (second, text) in [(1, "one"), (3, "two")] {
            world.now = now + .seconds(Int64(second))
            world.run(try a.send(datagram(nodes[0], to: nodes[1], text), to: 2, now: world.now), of: 1)
        }
        world.now = now + .seconds(5)
        XCTAssertFalse(a.tick(now: world.now).contains(.pathChanged(remote: 2, relayed: true)), "two frames are not a blackhole")
        world.run(try a.send(datagram(nodes[0], to: nodes[1], "three"), to: 2, now: world.now), of: 1)
        XCTAssertEqual(world.directFramesDropped, 3)
        world.now = now + .seconds(8)
        XCTAssertFalse(a.tick(now: world.now).contains(.pathChanged(remote: 2, relayed: true)), "7 s of silence is not a blackhole")
        world.now = now + .milliseconds(9500)
        let tick = a.tick(now: world.now)
        XCTAssertTrue(tick.contains(.pathChanged(remote: 2, relayed: true)), "\(tick)")
        XCTAssertEqual(a.counters.blackholes, 1)
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, true)
        // Perhaps our NAT moved us: node 1 tells the beacon where it is now, from its socket.
        XCTAssertTrue(tick.contains(.send(try BeaconMessage.discoverExtended(node: 1).encoded(), to: world.beacon, socket: 0)), "\(tick)")
        XCTAssertEqual(a.counters.rediscovers, 1)
        world.run(tick, of: 1)
        // The same session goes on through the beacon.
        let relayed = try a.send(datagram(nodes[0], to: nodes[1], "via beacon"), to: 2, now: world.now)
        guard case let .send(_, to, _)? = relayed.first else { return XCTFail("\(relayed)") }
        XCTAssertEqual(to, world.beacon)
        world.run(relayed, of: 1)
        XCTAssertEqual(world.delivered[2]?.map { String(decoding: $0.payload, as: UTF8.self) }, ["hi", "via beacon"])

        // The path heals: a's direct upgrade, 15 s on, reaches b, which answers directly from
        // then on, and so does a once it hears b directly.
        world.directWorks = true
        world.now = world.now + .seconds(15)
        XCTAssertEqual(world.tickAndProbe(1), Array(repeating: endpointB, count: 5))
        world.run(try b.send(datagram(nodes[1], to: nodes[0], "direct again"), to: 1, now: world.now), of: 2)
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, false)
        let straight = try a.send(datagram(nodes[0], to: nodes[1], "straight"), to: 2, now: world.now)
        guard case let .send(_, back, _)? = straight.first else { return XCTFail("\(straight)") }
        XCTAssertEqual(back, endpointB)

        // One frame, silence for a minute (b has nothing to say), then two more: a fresh count,
        // not a blackhole.
        world.directWorks = false
        world.now = world.now + .seconds(60)
        world.run(try a.send(datagram(nodes[0], to: nodes[1], "later"), to: 2, now: world.now), of: 1)
        world.run(try a.send(datagram(nodes[0], to: nodes[1], "later 2"), to: 2, now: world.now), of: 1)
        world.now = world.now + .seconds(9)
        XCTAssertFalse(a.tick(now: world.now).contains(.pathChanged(remote: 2, relayed: true)))
        XCTAssertEqual(a.counters.blackholes, 1)
    }

    /// A punch command from the beacon is answered with three PILPs to the endpoint it names,
    /// from the socket it came in on; from anyone else, it is ignored.
    func testAPunchCommandFromTheBeaconSendsThreePunches() throws {
        let beacon = try SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        let table = TunnelTable()
        table.useBeacon(beacon)
        let command = try BeaconMessage.punchCommand(ip: [10, 0, 0, 7], port: 4242).encoded()
        let actions = table.receive(command, from: beacon, socket: 3, now: now)
        let target = try SocketAddress(ipAddress: "10.0.0.7", port: 4242)
        XCTAssertEqual(Array(actions), Array(repeating: .send(Array("PILP".utf8), to: target, socket: 3), count: 3))
        XCTAssertEqual(table.receive(command, from: endpointA, socket: 3, now: now), [])
        XCTAssertEqual(table.counters.punchCommands, 1)
    }

    /// A poke (or any beacon message the tunnels do not use) is handed on when the beacon sent
    /// it, and counted and dropped when anyone else did: a stranger cannot make the host poll.
    func testBeaconMessagesForOthersAreHandedOnFromTheBeaconOnly() throws {
        let beacon = try SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        let table = TunnelTable()
        table.useBeacon(beacon)
        let poke = try BeaconMessage.notify(kind: BeaconMessage.notifyHandshakePending).encoded()
        XCTAssertEqual(table.receive(poke, from: beacon, socket: 2, now: now), [.fromBeacon(.notify(kind: BeaconMessage.notifyHandshakePending), socket: 2)])
        XCTAssertEqual(table.receive(poke, from: endpointA, socket: 2, now: now), [])
        XCTAssertEqual(table.counters.beacon, 1)
    }
}

/// 1.18's direct upgrade (docs/PROTOCOL.md §5.7): a relayed remote is resolved at the registry,
/// punched through the beacon and probed straight at its endpoint, every 15 s, on both sides;
/// the first frame heard directly turns the path direct.
extension TunnelTableTests {
    func destinations(_ actions: some Sequence<TunnelAction>) -> [SocketAddress] {
        actions.compactMap { action in if case let .send(_, to, _) = action { to } else { nil } }
    }

    /// Both sides of a relayed session (b heard a only through the beacon, so it has no
    /// endpoint for a) start an upgrade at their next tick: a resolve, then, with the answer, a
    /// punch request to the beacon and five sealed probes straight to the endpoint, 200 ms
    /// apart. The first probe heard directly turns the path direct; the next round is 15 s on.
    func testARelayedRemoteIsResolvedPunchedAndProbedFiveTimesEvery15Seconds() throws {
        let (nodes, world, a, b) = try relayPair()
        world.run(try a.send(datagram(nodes[0], to: nodes[1], "hello"), to: 2, endpoint: endpointB, now: now), of: 1)
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, true)
        XCTAssertEqual(b.sessions(of: 2).first?.relayed, true)
        XCTAssertNil(b.sessions(of: 2).first?.endpoint, "b heard a only through the beacon")

        let start = now + .seconds(1)
        XCTAssertEqual(a.tick(now: start), [.resolveEndpoint(local: 1, remote: 2)])
        XCTAssertEqual(b.tick(now: start), [.resolveEndpoint(local: 2, remote: 1)])
        // The registry's answer: a punch request now, the probes from 200 ms on.
        let punch = try BeaconMessage.punchRequest(requester: 2, target: 1).encoded()
        XCTAssertEqual(b.endpointResolved(1, endpoint: endpointA, now: start), [.send(punch, to: world.beacon, socket: 0)])
        XCTAssertEqual(b.sessions(of: 2).first?.endpoint, endpointA)
        XCTAssertEqual(b.sendDue(now: start + .milliseconds(199)), [])
        var probes: [[UInt8]] = []
        for step in 1...5 {
            let due = start + .milliseconds(200 * Int64(step))
            XCTAssertEqual(b.nextDue, due)
            let sent = b.sendDue(now: due)
            guard sent.count == 1, case let .send(bytes, to, socket) = sent[0] else { return XCTFail("probe \(step): \(sent)") }
            XCTAssertEqual([to], [endpointA])
            XCTAssertEqual(socket, 0)
            XCTAssertEqual(Array(bytes.prefix(4)), Array("PILS".utf8), "sealed")
            probes.append(bytes)
        }
        XCTAssertNil(b.nextDue)
        XCTAssertEqual(b.sendDue(now: start + .seconds(2)), [])
        XCTAssertEqual(b.counters.upgrades, 1)
        XCTAssertEqual(b.counters.upgradeProbes, 5)
        XCTAssertEqual(b.counters.punchRequests, 1)

        // At a, the first probe opens as an empty keepalive, heard directly: the path is direct.
        let heardAt = start + .milliseconds(200)
        let heard = a.receive(probes[0], from: endpointB, socket: 0, now: heardAt)
        XCTAssertEqual(heard.count, 2)
        guard case let .deliver(local, keepalive)? = heard.first else { return XCTFail("\(heard)") }
        XCTAssertEqual(local, 1)
        XCTAssertEqual([keepalive.proto], [.control])
        XCTAssertEqual(keepalive.payload, [])
        XCTAssertEqual(heard.last, .pathChanged(remote: 2, relayed: false))
        XCTAssertEqual(a.sessions(of: 1).first?.relayed, false)
        XCTAssertEqual(a.sessions(of: 1).first?.pathSince, heardAt)
        for probe in probes.dropFirst() {
            XCTAssertFalse(a.receive(probe, from: endpointB, socket: 0, now: heardAt).contains(.pathChanged(remote: 2, relayed: false)))
        }
        // a's own answer comes too late to matter: the path it heard b by is better.
        XCTAssertEqual(a.endpointResolved(2, endpoint: endpointB, now: start + .seconds(1)), [])
        XCTAssertNil(a.nextDue)
        XCTAssertEqual(destinations(try a.send(datagram(nodes[0], to: nodes[1], "direct"), to: 2, now: heardAt)), [endpointB])

        // b is still relayed (it has not heard a directly): its next round is 15 s on.
        XCTAssertEqual(b.tick(now: start + .seconds(14)), [])
        XCTAssertEqual(b.tick(now: start + .seconds(15)), [.resolveEndpoint(local: 2, remote: 1)])
    }

    /// A first key exchange to an endpoint the registry gave goes with a punch request (1.18's
    /// `ensureTunnel`), once, and waits for the punch: it goes `punchLead` after the beacon's
    /// punch command (by then the remote's PILPs have opened its NAT), straight first, then
    /// through the beacon; without a command, `punchWaitLimit` after the request. One to a node
    /// with no endpoint (relay-only) goes without a punch, at once.
    func testTheFirstKeyExchangeToAResolvedEndpointWaitsForItsPunch() throws {
        let (nodes, world, a, _) = try relayPair()
        let first = try a.send(datagram(nodes[0], to: nodes[1], "hello"), to: 2, endpoint: endpointB, now: now)
        XCTAssertEqual(first, [.send(try BeaconMessage.punchRequest(requester: 1, target: 2).encoded(), to: world.beacon, socket: 0), .timerDue])
        XCTAssertEqual(a.nextDue, now + .milliseconds(300))
        XCTAssertEqual(a.counters.punchRequests, 1)
        // Queued behind the exchange under way: no second punch.
        XCTAssertEqual(try a.send(datagram(nodes[0], to: nodes[1], "more"), to: 2, endpoint: endpointB, now: now), [])

        // The beacon's command, 20 ms on: three PILPs to the endpoint it names, and the PILA 50 ms later.
        let commandAt = now + .milliseconds(20)
        let command = try XCTUnwrap(world.punchCommand(to: endpointB))
        let punched = a.receive(command, from: world.beacon, socket: 0, now: commandAt)
        XCTAssertEqual(Array(punched), Array(repeating: .send(TunnelFrame.punch.encoded(), to: endpointB, socket: 0), count: 3) + [.timerDue])
        XCTAssertEqual(a.nextDue, commandAt + .milliseconds(50))
        XCTAssertEqual(a.sendDue(now: commandAt + .milliseconds(49)), [])
        let exchange = a.sendDue(now: commandAt + .milliseconds(50))
        XCTAssertEqual(destinations(exchange), [endpointB, world.beacon])
        guard case let .send(pila, _, _)? = exchange.first else { return XCTFail("\(exchange)") }
        XCTAssertEqual(Array(pila.prefix(4)), Array("PILA".utf8))
        XCTAssertNil(a.nextDue)

        // No command at all (the beacon does not know the remote): the exchange goes after 300 ms.
        let other = try make(4)[0]
        let unanswered = try a.send(datagram(nodes[0], to: other, "anyone?"), to: 4, endpoint: endpointB, now: now)
        XCTAssertEqual(unanswered.last, .timerDue)
        XCTAssertEqual(a.sendDue(now: now + .milliseconds(299)), [])
        XCTAssertEqual(destinations(a.sendDue(now: now + .milliseconds(300))), [endpointB, world.beacon])

        let hidden = try make(3)[0]
        let toHidden = try a.send(datagram(nodes[0], to: hidden, "psst"), to: 3, now: now)
        XCTAssertEqual(toHidden.first, .pathChanged(remote: 3, relayed: true))
        XCTAssertEqual(destinations(toHidden), [world.beacon])
        guard case let .send(bytes, _, _)? = toHidden.last, case .relay? = try? BeaconMessage(decoding: bytes[...]) else { return XCTFail("\(toHidden)") }
        XCTAssertEqual(a.counters.punchRequests, 2, "none for a node with no endpoint")
    }

    /// Upgrades are bounded: at most `upgradesPerTick` started per tick and `upgradesAtOnce`
    /// under way; the others wait their turn, an unanswered resolve frees its place after
    /// `upgradeResolveWait`, and a relay-only answer (no endpoint, none known) sends nothing.
    func testUpgradesAreStartedAFewPerTickAndAFewAtOnce() throws {
        var timing = TunnelTable.Timing()
        timing.upgradesPerTick = 2
        timing.upgradesAtOnce = 3
        let nodes = try make(1, 2, 3, 4, 5)
        let world = RelayWorld(registry: registry, directWorks: false, now: now)
        let a = TunnelTable(timing: timing)
        a.add(nodes[0].identity)
        a.useBeacon(world.beacon)
        world.tables[1] = (a, endpointA)
        for node in nodes.dropFirst() {
            let table = TunnelTable()
            table.add(node.identity, ownSocket: 0)
            table.useBeacon(world.beacon)
            let endpoint = try SocketAddress(ipAddress: "127.0.0.1", port: 40000 + Int(node.address.node))
            world.tables[node.address.node] = (table, endpoint)
            // No endpoint given: relayed from the start, with none known.
            world.run(try a.send(datagram(nodes[0], to: node, "hi"), to: node.address.node, now: now), of: 1)
        }
        XCTAssertEqual(a.sessions(of: 1).map(\.relayed), [true, true, true, true])
        func resolves(_ actions: TunnelActions) -> [UInt32] {
            actions.compactMap { action in if case let .resolveEndpoint(_, remote) = action { remote } else { nil } }
        }
        let first = resolves(a.tick(now: now + .seconds(1)))
        XCTAssertEqual(first.count, 2, "two per tick")
        let second = resolves(a.tick(now: now + .seconds(2)))
        XCTAssertEqual(second.count, 1, "three at once")
        XCTAssertEqual(resolves(a.tick(now: now + .seconds(3))), [])
        // One answers with its endpoint: while it probes, it still counts.
        let answered = first[0]
        XCTAssertEqual(destinations(a.endpointResolved(answered, endpoint: world.tables[answered]?.endpoint, now: now + .seconds(3))), [world.beacon])
        XCTAssertEqual(resolves(a.tick(now: now + .milliseconds(3500))), [])
        while let due = a.nextDue { _ = a.sendDue(now: due) }
        XCTAssertEqual(a.counters.upgradeProbes, 5)
        // One is relay-only: nothing to try, its place is free.
        XCTAssertEqual(a.endpointResolved(first[1], endpoint: nil, now: now + .seconds(3)), [])
        let last = resolves(a.tick(now: now + .milliseconds(4500)))
        XCTAssertEqual(last.count, 1)
        XCTAssertEqual(Set(first + second + last), [2, 3, 4, 5])
        // The others never answer: their places come free after the wait, and the remotes come
        // round again 15 s after their last upgrade started.
        XCTAssertEqual(resolves(a.tick(now: now + .seconds(12))), [])
        XCTAssertEqual(a.counters.upgrades, 4)
        XCTAssertEqual(Set(resolves(a.tick(now: now + .seconds(16)))), Set(first))
    }
}

/// Builds a PILA of `identity` by starting an exchange on a scratch table.
/// Identities that have not joined rest with the nodes they have business with: a frame from
/// one of those asks for them (`wake`) and is answered once they have joined (`woke`).
extension TunnelTableTests {
    func testAKeyExchangeForARestingIdentityWakesItAndIsAnsweredOnceItJoined() throws {
        let nodes = try make(1, 2)
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(nodes[0].identity)
        b.rest(2, relatedTo: [1])
        let first = try a.send(datagram(nodes[0], to: nodes[1], "hello"), to: 2, endpoint: endpointB, now: now)
        guard case let .send(pila, _, _)? = first.first else { return XCTFail("\(first)") }
        // Held, not dropped: the sender's key is looked up meanwhile.
        XCTAssertEqual(b.receive(pila, from: endpointA, socket: 0, now: now), [.wake(local: 2), .lookUpKey(1)])
        XCTAssertEqual(b.keyLookedUp(1, key: registry[1], now: now), [])
        XCTAssertEqual(b.counters.unsolicited, 0)
        XCTAssertEqual(b.counters.wakes, 1)

        b.add(nodes[1].identity)
        b.relate(local: 2, remote: 1)
        let answer = b.woke(2, now: now + .milliseconds(2))
        guard case let .send(bytes, to, _)? = answer.first, answer.count == 1 else { return XCTFail("\(answer)") }
        XCTAssertEqual(Array(bytes.prefix(4)), Array("PILA".utf8))
        XCTAssertEqual(to, endpointA)
        let result = run(answer, from: b, to: a, fromEndpoint: endpointB, toEndpoint: endpointA)
        XCTAssertEqual(result.atFrom.map(\.payload), [Array("hello".utf8)], "what waited at a goes out on the new session")
        XCTAssertTrue(a.hasSession(local: 1, remote: 2) && b.hasSession(local: 2, remote: 1))
        // Joined: it rests no more.
        XCTAssertEqual(b.woke(2, now: now), [])
    }

    /// The remote holds a session from before this side restarted: its frames no longer open,
    /// and the identity they are for rests. It wakes and asks for a new exchange.
    func testAFrameOfASessionFromBeforeARestartWakesTheRestingIdentity() throws {
        let nodes = try make(1, 2)
        let (a, b) = (TunnelTable(), TunnelTable())
        a.add(nodes[0].identity)
        b.add(nodes[1].identity)
        b.relate(local: 2, remote: 1)
        run(try a.send(datagram(nodes[0], to: nodes[1], "before"), to: 2, endpoint: endpointB, now: now), from: a, to: b, fromEndpoint: endpointA, toEndpoint: endpointB)
        XCTAssertTrue(a.hasSession(local: 1, remote: 2))

        let restarted = TunnelTable()
        restarted.rest(2, relatedTo: [1])
        let stale = try a.send(datagram(nodes[0], to: nodes[1], "lost"), to: 2, now: now)
        guard case let .send(sealed, _, _)? = stale.first else { return XCTFail("\(stale)") }
        XCTAssertEqual(Array(sealed.prefix(4)), Array("PILS".utf8))
        XCTAssertEqual(restarted.receive(sealed, from: endpointA, socket: 0, now: now), [.wake(local: 2)])

        restarted.add(try TunnelIdentity(address: nodes[1].address, signingKey: nodes[1].key))
        restarted.relate(local: 2, remote: 1)
        let answer = restarted.woke(2, now: now)
        XCTAssertEqual(answer.compactMap { action -> String? in
            guard case let .send(bytes, _, _) = action else { return nil }
            return String(decoding: bytes.prefix(4), as: UTF8.self)
        }, ["PILA", "PILK"])
        run(answer, from: restarted, to: a, fromEndpoint: endpointB, toEndpoint: endpointA)
        let again = try a.send(datagram(nodes[0], to: nodes[1], "after"), to: 2, now: now)
        XCTAssertEqual(run(again, from: a, to: restarted, fromEndpoint: endpointA, toEndpoint: endpointB).atTo.map(\.payload), [Array("after".utf8)])
    }

    /// A node no resting identity has business with wakes nobody; a related node's exchange
    /// asks once per wait (its retransmissions are held, not asked for again), and again after
    /// the wait if the identity never joined.
    func testARestingIdentityIsAskedForOncePerWaitAndOnlyByItsPeers() throws {
        let nodes = try make(1, 2, 3)
        let b = TunnelTable()
        b.rest(2, relatedTo: [1])
        let fromStranger = try XCTUnwrap(try TunnelFrameBytes.pila(of: nodes[2].identity, sendingTo: b, endpoint: endpointB, now: now))
        XCTAssertEqual(b.receive(fromStranger, from: endpointA, socket: 0, now: now), [])
        XCTAssertEqual(b.counters.unsolicited, 1)

        let fromPeer = try XCTUnwrap(try TunnelFrameBytes.pila(of: nodes[0].identity, sendingTo: b, endpoint: endpointB, now: now))
        XCTAssertEqual(b.receive(fromPeer, from: endpointA, socket: 0, now: now), [.wake(local: 2), .lookUpKey(1)])
        XCTAssertEqual(b.receive(fromPeer, from: endpointA, socket: 0, now: now + .seconds(1)), [])
        _ = b.tick(now: now + .seconds(4))
        XCTAssertEqual(b.receive(fromPeer, from: endpointA, socket: 0, now: now + .seconds(4)), [.wake(local: 2)])
        XCTAssertEqual(b.counters.wakes, 2)

        // Forgotten (deleted, or joined and left public): nobody to wake.
        b.rest(2, relatedTo: [])
        XCTAssertEqual(b.receive(fromPeer, from: endpointA, socket: 0, now: now + .seconds(8)), [])
    }

    /// Several identities rest with one peer: its exchange asks for each, in node order; one
    /// forgotten, or put at rest again with other peers only, is asked for no more.
    func testEveryIdentityRestingWithAPeerIsAskedForUntilItRestsWithOthers() throws {
        let nodes = try make(1, 2, 3)
        let b = TunnelTable()
        b.rest(3, relatedTo: [1, 5, 1])
        b.rest(2, relatedTo: [5, 1])
        let fromPeer = try XCTUnwrap(try TunnelFrameBytes.pila(of: nodes[0].identity, sendingTo: b, endpoint: endpointB, now: now))
        XCTAssertEqual(b.receive(fromPeer, from: endpointA, socket: 0, now: now), [.wake(local: 2), .wake(local: 3), .lookUpKey(1)])

        b.rest(3, relatedTo: [5])
        b.rest(2, relatedTo: [])
        _ = b.tick(now: now + .seconds(4))
        XCTAssertEqual(b.receive(fromPeer, from: endpointA, socket: 0, now: now + .seconds(4)), [])
        XCTAssertEqual(b.counters.wakes, 2)
    }

    /// A key exchange the beacon relays to a resting identity by name (0x09) wakes it, and the
    /// answer goes back through the beacon; one for a node of no one here is misrouted.
    func testAnExchangeRelayedByTheBeaconToARestingIdentityWakesIt() throws {
        let nodes = try make(1, 2)
        let beacon = try SocketAddress(ipAddress: "127.0.0.1", port: 9001)
        let b = TunnelTable()
        b.useBeacon(beacon)
        b.rest(2, relatedTo: [1])
        let pila = try XCTUnwrap(try TunnelFrameBytes.pila(of: nodes[0].identity, sendingTo: b, endpoint: endpointB, now: now))
        let elsewhere = try BeaconMessage.relayDeliverTo(source: 1, destination: 3, frame: pila[...]).encoded()
        XCTAssertEqual(b.receive(elsewhere, from: beacon, socket: 0, now: now), [])
        XCTAssertEqual(b.counters.misrouted, 1)
        let relayed = try BeaconMessage.relayDeliverTo(source: 1, destination: 2, frame: pila[...]).encoded()
        XCTAssertEqual(b.receive(relayed, from: beacon, socket: 0, now: now), [.wake(local: 2), .lookUpKey(1)])
        XCTAssertEqual(b.keyLookedUp(1, key: registry[1], now: now).filter { if case .send = $0 { true } else { false } }, [])

        b.add(nodes[1].identity)
        b.relate(local: 2, remote: 1)
        let answer = b.woke(2, now: now)
        guard case let .send(bytes, to, _)? = answer.first, answer.count == 1,
            case let .relay(source, destination, frame)? = try? BeaconMessage(decoding: bytes[...])
        else { return XCTFail("\(answer)") }
        XCTAssertEqual(to, beacon)
        XCTAssertEqual([source, destination], [2, 1])
        XCTAssertEqual(Array(frame.prefix(4)), Array("PILA".utf8))
    }
}

enum TunnelFrameBytes {
    static func pila(of identity: TunnelIdentity, sendingTo _: TunnelTable, endpoint: SocketAddress, now: NIODeadline) throws -> [UInt8]? {
        let scratch = TunnelTable()
        scratch.add(identity)
        let packet = Packet(proto: .datagram, source: identity.address, destination: Address(node: 2), sourcePort: 1, destinationPort: 1)
        guard case let .send(bytes, _, _)? = try scratch.send(packet, to: 2, endpoint: endpoint, now: now).first else { return nil }
        return bytes
    }
}

/// prefer-direct: what it finds of a session, and a relayed one tried directly at once rather
/// than at its next upgrade round.
extension TunnelTableTests {
    func testPreferDirectTriesARelayedSessionDirectlyAtOnceAndReportsWhatItFound() throws {
        let nodes = try make(1, 2)
        let world = RelayWorld(registry: registry, directWorks: false, now: now)
        let a = TunnelTable()
        a.add(nodes[0].identity)
        a.useBeacon(world.beacon)
        world.tables[1] = (a, endpointA)
        let b = TunnelTable()
        b.add(nodes[1].identity, ownSocket: 0)
        b.useBeacon(world.beacon)
        world.tables[2] = (b, endpointB)

        // No session yet: nothing found, nothing done.
        XCTAssertEqual(a.preferDirect(local: 1, remote: 2, now: now), .init(hadTunnel: false, wasRelayed: false, upgrading: false))
        world.run(try a.send(datagram(nodes[0], to: nodes[1], "hi"), to: 2, now: now), of: 1)
        XCTAssertEqual(a.sessions(of: 1).map(\.relayed), [true])

        // Relayed: an upgrade starts now (the round would wait for `directProbe`), and the
        // registry's answer sends the punch request, then the probes.
        let found = a.preferDirect(local: 1, remote: 2, now: now + .milliseconds(10))
        XCTAssertEqual(found, .init(hadTunnel: true, wasRelayed: true, upgrading: true))
        XCTAssertEqual(a.counters.upgrades, 1)
        XCTAssertEqual(destinations(a.endpointResolved(2, endpoint: endpointB, now: now + .milliseconds(10))), [world.beacon])
        var probes = 0
        while let due = a.nextDue { probes += a.sendDue(now: due).count }
        XCTAssertEqual(a.counters.upgradeProbes, 5)
        XCTAssertEqual(probes, 5)
        // The tick does not start a second round meanwhile.
        XCTAssertFalse(a.tick(now: now + .seconds(1)).contains(.resolveEndpoint(local: 1, remote: 2)))
        // Another identity asking about a node it has no session with finds none.
        XCTAssertEqual(a.preferDirect(local: 3, remote: 2, now: now).hadTunnel, false)
    }
}
