import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotCrypto
import PilotNet
import PilotTestSupport
import PilotWire
import XCTest

/// Fabric.swift: fabrics on loopback, two identities of one fabric and identities of two
/// fabrics (two hosts) reaching each other through real UDP sockets; sockets and shutdown.
final class FabricTests: FabricTestCase {
    func testTwoIdentitiesOfOneFabricTalkWithoutATunnel() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = Directory()
        let fabric = Fabric(group: group, directory: directory, logger: Logger(label: "fabric"))
        try await Self.serveEchoAndHandshake(on: fabric)
        _ = try await fabric.bind(host: "127.0.0.1", port: 0)
        let alice = try identity(10, directory)
        let bob = try identity(11, directory)
        let bobInbox = Inbox()
        try await fabric.add(alice) { _ in }
        try await fabric.add(bob) { bobInbox.append($0) }
        try await fabric.setTrusted(local: 11, remote: 10, true)  // tenants of one host are strangers until trusted

        let message = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let stream = try await fabric.dial(from: 10, to: bob.address, port: 7)
        let echoed = try await Self.roundTrip(stream, message)
        XCTAssertEqual(echoed.count, message.count)
        XCTAssertTrue(echoed == message)

        let datagram = Packet(proto: .datagram, source: alice.address, destination: bob.address, sourcePort: 5000, destinationPort: 5001, payload: [1, 2, 3])
        try await fabric.send(datagram, to: 11)
        let deadline = ContinuousClock.now + .seconds(5)
        while bobInbox.all.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        XCTAssertEqual(bobInbox.all.map(\.payload), [[1, 2, 3]])
        let counters = try await fabric.counters()
        XCTAssertEqual(counters.framesOut, 0, "nothing went through a socket")
        // A packet claiming another source is refused.
        var forged = datagram
        forged.source = Address(node: 99)
        do {
            try await fabric.send(forged, to: 11)
            XCTFail("a forged source was accepted")
        } catch {}

        await fabric.shutdown()
        try await group.shutdownGracefully()
    }

    func testIdentitiesOfTwoFabricsStreamAndExchangeDatagramsOverLoopback() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let directory = Directory()
        let (hostA, hostB, socketB) = try await twoHosts(group, directory)
        // Two identities on each host share its socket; B's second accepts strangers on a socket of its own.
        let a1 = try identity(1, directory), a2 = try identity(2, directory)
        let b1 = try identity(3, directory), b2 = try identity(4, directory)
        let ownB2 = try await hostB.bind(host: "127.0.0.1", port: 0)
        let inbox = Inbox()
        try await hostA.add(a1) { inbox.append($0) }
        try await hostA.add(a2) { inbox.append($0) }
        try await hostB.add(b1, ownSocket: socketB.socket) { _ in }
        try await hostB.add(b2, ownSocket: ownB2.socket) { _ in }
        for (local, remote) in [(3, 1), (3, 2), (4, 1), (4, 2)] as [(UInt32, UInt32)] {
            try await hostB.setTrusted(local: local, remote: remote, true)
            try await hostA.setTrusted(local: remote, remote: local, true)
        }

        // Both of A's identities stream to both of B's at once.
        let message = (0..<1_000_000).map { UInt8(truncatingIfNeeded: $0 &* 101 &+ 7) }
        try await withThrowingTaskGroup(of: [UInt8].self) { tasks in
            for (from, to, endpoint) in [(a1, b1, socketB.address), (a1, b2, ownB2.address), (a2, b1, socketB.address), (a2, b2, ownB2.address)] {
                tasks.addTask {
                    let stream = try await hostA.dial(from: from.node, to: to.address, port: 7, endpoint: endpoint)
                    return try await Self.roundTrip(stream, message)
                }
            }
            for try await echoed in tasks {
                XCTAssertEqual(echoed.count, message.count)
                XCTAssertTrue(echoed == message)
            }
        }
        // Datagrams back from B to each of A's identities reach the right one.
        for (from, to) in [(b1, a1), (b2, a2)] {
            let packet = Packet(proto: .datagram, source: from.address, destination: to.address, sourcePort: 1, destinationPort: 2, payload: Array("to \(to.node)".utf8))
            try await hostB.send(packet, to: to.node)
        }
        // And one of 30,000 bytes (a datagram far past a read slot's 4 KiB if NIO split 64 KiB
        // among 16 reads): the shared socket reads whole datagrams up to UDP's limit.
        let big = (0..<30_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        try await hostB.send(
            Packet(proto: .datagram, source: b1.address, destination: a1.address, sourcePort: 1, destinationPort: 3, payload: big), to: a1.node)
        let deadline = ContinuousClock.now + .seconds(5)
        while inbox.all.count < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let small = inbox.all.filter { $0.destinationPort == 2 }
        XCTAssertEqual(Set(small.map { "\($0.destination.node):\(String(decoding: $0.payload, as: UTF8.self))" }), ["1:to 1", "2:to 2"])
        XCTAssertEqual(inbox.all.first { $0.destinationPort == 3 }?.payload, big)

        let (countersA, countersB) = (try await hostA.counters(), try await hostB.counters())
        for counters in [countersA, countersB] {
            XCTAssertEqual(counters.keyExchangesRejected + counters.authenticationFailed + counters.replayed + counters.spoofed + counters.misrouted, 0, "\(counters)")
        }
        XCTAssertEqual(countersB.sessionsInstalled, 4)
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }

    /// Busy polling changes when the loops sleep, not what they carry: streams driven by a task
    /// that runs on the fabric's loop arrive exactly, datagrams too, and the poll set is closed
    /// with the fabric (no descriptor left behind).
    func testBusyPollingFabricsCarryStreamsFromATaskOnTheLoopAndLeaveNoDescriptor() async throws {
        // The first sleep on a clock has the dispatch runtime open a timer descriptor for good:
        // it is opened here, before the count, not by the waits below.
        try await Task.sleep(for: .milliseconds(1))
        let before = Self.openDescriptors()
        let targetsBefore = Self.descriptorTargets()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let directory = Directory()
        let (hostA, hostB, socketB) = try await twoHosts(group, directory, busyPoll: .microseconds(50))
        let a = try identity(1, directory), b = try identity(2, directory)
        let inbox = Inbox()
        try await hostA.add(a) { inbox.append($0) }
        try await hostB.add(b, ownSocket: socketB.socket) { _ in }
        try await hostA.setTrusted(local: 1, remote: 2, true)
        try await hostB.setTrusted(local: 2, remote: 1, true)

        let message = (0..<500_000).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) }
        let (echoed, probes) = try await withTaskExecutorPreference(hostA.taskExecutor) {
            let stream = try await hostA.dial(from: 1, to: b.address, port: 7, endpoint: socketB.address)
            var iterator = stream.events.makeAsyncIterator()
            var probes: [[UInt8]] = []
            for n in 0..<200 {
                let probe = Array("probe \(n)".utf8)
                try await stream.write(probe)
                var got: [UInt8] = []
                while got.count < probe.count, case .data(let bytes)? = await iterator.next() { got += bytes }
                probes.append(got)
            }
            try await stream.close()
            let bulk = try await hostA.dial(from: 1, to: b.address, port: 7, endpoint: socketB.address)
            return (try await Self.roundTrip(bulk, message), probes)
        }
        XCTAssertEqual(probes, (0..<200).map { Array("probe \($0)".utf8) })
        XCTAssertTrue(echoed == message, "\(echoed.count) of \(message.count) bytes echoed")
        try await hostB.send(Packet(proto: .datagram, source: b.address, destination: a.address, sourcePort: 1, destinationPort: 2, payload: [7]), to: 1)
        let deadline = ContinuousClock.now + .seconds(5)
        while inbox.all.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(inbox.all.map(\.payload), [[7]])

        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
        // The loops' threads close their own descriptors as they end, which may be a moment
        // after the group says it is shut down; a leak stays.
        let settled = ContinuousClock.now + .seconds(2)
        while Self.openDescriptors() != before && ContinuousClock.now < settled { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertEqual(Self.openDescriptors(), before, "the fabrics' sockets and poll sets are all closed \(targetsBefore) \(Self.descriptorTargets())")
    }

    /// A fabric that stops closes its streams in order: what was written arrives, then the FIN,
    /// and the peer sees the stream finish rather than go silent.
    func testClosingStreamsAtShutdownDeliversWhatWasWrittenThenAFin() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (hostA, hostB, b, socketB) = try await trustingPair(group)
        let accepted = NIOLockedValueBox<[StreamHandle]>([])
        try await hostB.listen(node: 2, port: 9000) { stream in accepted.withLockedValue { $0.append(stream) } }
        let stream = try await hostA.dial(from: 1, to: b.address, port: 9000, endpoint: socketB.address)
        let message = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try await stream.write(message)
        let deadline = ContinuousClock.now + .seconds(5)
        while accepted.withLockedValue(\.isEmpty) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let server = try XCTUnwrap(accepted.withLockedValue(\.first))

        let unfinished = await hostA.closeStreams(within: .seconds(5))
        XCTAssertEqual(unfinished, 0)
        let (open, _) = try await hostA.load()
        XCTAssertEqual(open, 1, "the tunnel stays up; only streams were closed")
        var received: [UInt8] = []
        var finished = false
        for await event in server.events {
            switch event {
            case .data(let bytes): received += bytes
            case .finished, .closed: finished = true
            }
            if finished { break }
        }
        XCTAssertTrue(finished, "the peer saw the FIN")
        XCTAssertTrue(received == message, "\(received.count) of \(message.count) bytes before the FIN")
        await hostA.shutdown()
        await hostB.shutdown()
        try await group.shutdownGracefully()
    }

    /// Each fabric socket gets 4 MiB buffers both ways: past net.core.rmem_max/wmem_max when the
    /// process has CAP_NET_ADMIN (root here), else as much as the caps allow.
    func testSocketBuffersAreFourMebibytesOrAsMuchAsTheKernelAllows() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let granted = await UDPBuffers.ensure(on: channel, logger: Logger(label: "buffers"))
        let caps = ["rmem_max", "wmem_max"].map { name in
            (try? String(contentsOfFile: "/proc/sys/net/core/\(name)", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        if getuid() == 0 {
            XCTAssertEqual(granted.receive, UDPBuffers.wanted)
            XCTAssertEqual(granted.send, UDPBuffers.wanted)
        } else {
            print("not root: the buffers are capped by the sysctls \(caps), granted \(granted)")
            XCTAssertEqual(granted.receive, min(UDPBuffers.wanted, try XCTUnwrap(caps[0])))
            XCTAssertEqual(granted.send, min(UDPBuffers.wanted, try XCTUnwrap(caps[1])))
        }
        try await channel.close()
        try await group.shutdownGracefully()
    }
}
