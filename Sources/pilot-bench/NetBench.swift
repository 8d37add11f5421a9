import CAllocationCounter
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotCrypto
import PilotHost
import PilotNet
import PilotServices
import PilotTestSupport
import PilotWire

/// The data plane's figures from one run, on loopback: raw UDP (a plain socket loop with the
/// same 1222-byte datagrams) beside a PilotNet stream between identities of two fabrics, and
/// the echo round trip.
struct NetBench {
    let megabytes: Int
    let echoes: Int

    /// The parts to run (`--only`, for profiling one of them); all of them when empty.
    let only: Set<String>

    /// The parts `--only` names.
    static let parts = ["raw", "stream", "loops", "echo-bench", "official", "rtt"]

    func run() {
        let runs = { (part: String) in only.isEmpty || only.contains(part) }
        do {
            var raw: Double?
            if runs("raw") {
                raw = try rawUDP(seconds: 2)
                print(String(format: "raw UDP, 1222-byte datagrams, one socket to another: %8.1f MB/s", raw ?? 0))
            }
            // "(N% of raw UDP)", where raw UDP was measured.
            let share = { (rate: Double) in raw.map { String(format: " (%.0f%% of raw UDP)", 100 * rate / $0) } ?? "" }
            if runs("stream") {
                let stream = try runBlocking { [megabytes] in try await Self.stream(megabytes: megabytes) }
                print(String(format: "PilotNet stream, %d MB between identities of two fabrics: %8.1f MB/s%@, CPU %.2f ms per MB%@", megabytes, stream.rate, share(stream.rate), stream.cpu, stream.note))
            }
            if runs("loops") {
                let onLoops = try runBlocking { [megabytes] in try await Self.stream(megabytes: megabytes, onLoops: true) }
                print(String(format: "PilotNet stream, writer and reader on their fabric's loop: %8.1f MB/s%@, CPU %.2f ms per MB%@", onLoops.rate, share(onLoops.rate), onLoops.cpu, onLoops.note))
            }
            if runs("echo-bench") {
                let echoed = try runBlocking { [megabytes] in try await Self.echoBench(megabytes: min(megabytes, 50)) }
                print(String(format: "PilotNet echo bench, %d MB through the echo port and back (as pilotctl bench): %8.1f MB/s", min(megabytes, 50), echoed))
            }
            if runs("official") { print(Self.officialBench(megabytes: min(megabytes, 50))) }
            if runs("rtt") {
                for busyPoll in [Self.hostBusyPoll, 0] {
                    let rtt = try runBlocking { [echoes] in try await Self.echo(probes: echoes, busyPoll: .microseconds(Int64(busyPoll))) }
                    let mode = busyPoll == 0 ? "busy-poll = 0, loops sleep when idle" : "busy-poll = \(busyPoll), pilot-host's default"
                    print(String(format: "echo round trip (32 bytes, %d probes, %@): p50 %.1f µs, p99 %.1f µs", echoes, mode, rtt.p50, rtt.p99))
                }
                let rawRTT = try rawUDPRoundTrip(probes: echoes)
                print(String(format: "raw UDP round trip (32 bytes, a thread echoing on a blocking socket): p50 %.1f µs, p99 %.1f µs", rawRTT.p50, rawRTT.p99))
            }
        } catch {
            print("pilot-bench net: \(error)")
            exit(1)
        }
    }

    /// Binds `descriptor` to 127.0.0.1 on a free port; returns the address it got.
    private static func bindLoopback(_ descriptor: Int32) throws -> (sockaddr_in, socklen_t) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw BenchError("cannot bind a UDP socket") }
        return (address, length)
    }

    /// MB/s one UDP socket delivers to another on 127.0.0.1 (what the receiver counted).
    private func rawUDP(seconds: Double) throws -> Double {
        let receiver = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let sender = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(receiver); close(sender) }
        var size: Int32 = 4 << 20
        setsockopt(receiver, SOL_SOCKET, SO_RCVBUF, &size, 4)
        let (address, length) = try Self.bindLoopback(receiver)
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(receiver, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let received = ManagedAtomicCounter()
        let done = NIOLockedValueBox(false)
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !done.withLockedValue({ $0 }) {
                let count = recv(receiver, &buffer, buffer.count, 0)
                if count > 0 { received.add(count) }
            }
        }
        reader.start()
        let datagram = [UInt8](repeating: 0x5A, count: 1222)
        let start = Date()
        var target = address
        while Date().timeIntervalSince(start) < seconds {
            for _ in 0..<256 {
                _ = withUnsafePointer(to: &target) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(sender, datagram, datagram.count, 0, $0, length) }
                }
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        Thread.sleep(forTimeInterval: 0.3)
        done.withLockedValue { $0 = true }
        Thread.sleep(forTimeInterval: 0.3)
        return Double(received.value) / elapsed / 1e6
    }

    /// The floor under the echo figure: 32 bytes to a thread that sends them back on a plain
    /// blocking UDP socket, and received on another, `probes` times.
    private func rawUDPRoundTrip(probes: Int) throws -> (p50: Double, p99: Double) {
        let echo = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        let client = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(echo); close(client) }
        let (address, length) = try Self.bindLoopback(echo)
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(echo, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let done = NIOLockedValueBox(false)
        let echoer = Thread {
            var buffer = [UInt8](repeating: 0, count: 2048)
            var from = sockaddr_storage()
            while !done.withLockedValue({ $0 }) {
                var fromLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let count = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(echo, &buffer, buffer.count, 0, $0, &fromLength) }
                }
                guard count > 0 else { continue }
                _ = withUnsafePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(echo, buffer, count, 0, $0, fromLength) }
                }
            }
        }
        echoer.start()
        defer { done.withLockedValue { $0 = true } }
        let probe = [UInt8](repeating: 0x42, count: 32)
        var reply = [UInt8](repeating: 0, count: 2048)
        var samples: [Double] = []
        var target = address
        for _ in 0..<max(probes, 1) {
            let start = ContinuousClock.now
            _ = withUnsafePointer(to: &target) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(client, probe, probe.count, 0, $0, length) }
            }
            guard recv(client, &reply, reply.count, 0) == probe.count else { continue }
            let elapsed = start.duration(to: .now)
            samples.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
        }
        samples.sort()
        guard !samples.isEmpty else { throw BenchError("no raw UDP probe came back") }
        return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)])
    }

    /// The fabrics poll as pilot-host's do by default.
    private static let hostBusyPoll = HostConfiguration().busyPoll

    /// Two fabrics on loopback, each with one identity (B trusts A), sharing two loops.
    private struct Pair {
        let group: MultiThreadedEventLoopGroup
        let hostA: Fabric
        let hostB: Fabric
        let b: TunnelIdentity
        let endpointB: SocketAddress

        init(busyPoll: TimeAmount) async throws {
            group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let directory = StaticDirectory()
            var logger = Logger(label: "bench")
            logger.logLevel = .warning
            hostA = Fabric(group: group, directory: directory, busyPoll: busyPoll, logger: logger)
            hostB = Fabric(group: group, directory: directory, busyPoll: busyPoll, logger: logger)
            for host in [hostA, hostB] { try await EchoService().attach(to: host) }
            _ = try await hostA.bind(host: "127.0.0.1", port: 0)
            let socketB = try await hostB.bind(host: "127.0.0.1", port: 0)
            endpointB = socketB.address
            let a = try directory.identity(1)
            b = try directory.identity(2)
            try await hostA.add(a) { _ in }
            try await hostB.add(b, ownSocket: socketB.socket) { _ in }
            try await hostB.setTrusted(local: 2, remote: 1, true)
        }

        func shutdown() async throws {
            await hostA.shutdown()
            await hostB.shutdown()
            try await group.shutdownGracefully()
        }
    }

    /// MB/s of a stream of `megabytes` from host A's identity to a sink of host B's. With
    /// `onLoops`, the writer and the sink run on their fabric's loop (`Fabric.taskExecutor`), as
    /// a consumer that never blocks may: no thread switch between the loop and them.
    /// Also the CPU time the process spent per MB (both fabrics, sender and sink: this figure
    /// holds still on a machine whose neighbours make the rate vary).
    private static func stream(megabytes: Int, onLoops: Bool = false) async throws -> (rate: Double, cpu: Double, note: String) {
        let pair = try await Pair(busyPoll: .microseconds(Int64(hostBusyPoll)))
        // The sink: counts what arrives and reports when all of it has.
        let total = megabytes << 20
        let arrived = ManagedAtomicCounter()
        let finished = AsyncStream<Void>.makeStream()
        let sinkExecutor = onLoops ? pair.hostB.taskExecutor : nil
        try await pair.hostB.listen(node: 2, port: 9000) { handle in
            Task(executorPreference: sinkExecutor) {
                for await event in handle.events {
                    if case .data(let bytes) = event, arrived.add(bytes.count) >= total { finished.continuation.yield() }
                }
            }
        }
        let stream = try await pair.hostA.dial(from: 1, to: pair.b.address, port: 9000, endpoint: pair.endpointB)
        let chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
        let start = ContinuousClock.now
        let cpuBefore = processCPUSeconds()
        let allocationsBefore = pilot_allocation_count()
        try await withTaskExecutorPreference(onLoops ? pair.hostA.taskExecutor : nil) {
            for _ in 0..<megabytes { try await stream.write(chunk) }
        }
        for await _ in finished.stream { break }
        let elapsed = start.duration(to: .now)
        let cpu = processCPUSeconds() - cpuBefore
        // Every heap allocation of the process while the data moved (both fabrics, the writer
        // and the sink), per data segment carried.
        let allocations = Double(pilot_allocation_count() - allocationsBefore) / Double(total / StreamConnection.segmentSize)
        let seconds = elapsed.inSeconds
        let sender = try await pair.hostA.streamCounters(), receiver = try await pair.hostB.streamCounters()
        let note = String(
            format: "; %.2f allocations per segment; %d segments sent again, window shut %d times", allocations, sender.retransmitted,
            receiver.shutWindows)
        try await stream.close()
        try await pair.shutdown()
        return (Double(total) / seconds / 1e6, cpu * 1000 / (Double(total) / 1e6), note)
    }

    /// User and system CPU time of the whole process so far.
    private static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// MB/s of `pilotctl bench`'s measure between our fabrics: `megabytes` written to host B's
    /// echo port while the echo is read, from the first byte sent to the last echoed.
    private static func echoBench(megabytes: Int) async throws -> Double {
        let pair = try await Pair(busyPoll: .microseconds(Int64(hostBusyPoll)))
        let total = megabytes << 20
        let stream = try await pair.hostA.dial(from: 1, to: pair.b.address, port: 7, endpoint: pair.endpointB)
        let chunk = [UInt8](repeating: 0x3C, count: 1 << 20)
        let start = ContinuousClock.now
        let writer = Task { for _ in 0..<megabytes { try await stream.write(chunk) } }
        let echoed = await stream.readMessage(limit: total, timeout: .seconds(120)) { _ in false }
        let elapsed = start.duration(to: .now)
        guard echoed.count == total else {
            await stream.abort()
            try await pair.shutdown()
            throw BenchError("the echo stopped after \(echoed.count) of \(total) bytes")
        }
        try await writer.value
        try await stream.close()
        try await pair.shutdown()
        return Double(total) / elapsed.inSeconds / 1e6
    }

    /// The official 1.18 daemon's own figure: `pilotctl bench` from one daemon to another on
    /// loopback, through our rendezvous (the line says why when the binaries cannot be had).
    private static func officialBench(megabytes: Int) -> String {
        let label = "official 1.18 pilotctl bench, daemon to daemon, \(megabytes) MB:"
        do {
            let (overlay, _) = try OverlayHarness.started(daemon: "alpha", extra: ["-public"])
            defer { overlay.stopAll() }
            try overlay.startDaemon("beta", extra: ["-public"])
            let result = try overlay.ctl("alpha", ["bench", "beta", "\(megabytes)"], timeout: 180)
            // Its total_mbps is MiB/s (docs/PROTOCOL.md §11.7), over the same span as ours.
            guard let rate = result["total_mbps"]?.doubleValue else { return "\(label) no figure in \(result)" }
            return String(format: "%@ %8.1f MB/s", label, rate * 1.048576)
        } catch {
            return "\(label) not measured (\(error))"
        }
    }

    /// Round trips of 32 bytes through host B's echo port, from a task that runs on host A's
    /// loop (as `pilotctl ping` does), with the fabrics busy polling for `busyPoll` or not.
    private static func echo(probes: Int, busyPoll: TimeAmount) async throws -> (p50: Double, p99: Double) {
        let pair = try await Pair(busyPoll: busyPoll)
        var samples = try await withTaskExecutorPreference(pair.hostA.taskExecutor) {
            let echo = try await pair.hostA.dial(from: 1, to: pair.b.address, port: 7, endpoint: pair.endpointB)
            var iterator = echo.events.makeAsyncIterator()
            var samples: [Double] = []
            let probe = [UInt8](repeating: 0x42, count: 32)
            for _ in 0..<probes {
                let sent = ContinuousClock.now
                try await echo.write(probe)
                var got = 0
                while got < probe.count, case .data(let bytes)? = await iterator.next() { got += bytes.count }
                let rtt = sent.duration(to: .now)
                samples.append(Double(rtt.components.attoseconds) / 1e12 + Double(rtt.components.seconds) * 1e6)
            }
            try await echo.close()
            return samples
        }
        try await pair.shutdown()
        samples.sort()
        return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)])
    }
}

/// Keys of the bench's identities, standing in for the registry.
final class StaticDirectory: PeerDirectory {
    private let keys = NIOLockedValueBox<[UInt32: Ed25519PublicKey]>([:])

    func identity(_ node: UInt32) throws -> TunnelIdentity {
        let key = try Ed25519PrivateKey()
        keys.withLockedValue { $0[node] = key.publicKey }
        return try TunnelIdentity(address: Address(node: node), signingKey: key)
    }

    func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? { keys.withLockedValue { $0[node] } }
}

/// A counter shared between threads.
final class ManagedAtomicCounter: Sendable {
    private let box = NIOLockedValueBox(0)
    /// Adds `amount`; returns the new total.
    @discardableResult
    func add(_ amount: Int) -> Int { box.withLockedValue { $0 += amount; return $0 } }
    var value: Int { box.withLockedValue { $0 } }
}
