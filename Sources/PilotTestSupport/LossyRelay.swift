import Foundation
import PilotWire

/// A UDP relay on 127.0.0.1 between a client (whoever sends to `front` first) and a fixed
/// `backend`, that drops, reorders and duplicates datagrams in both directions, decided by a
/// seeded generator: a lossy network for tests, in process.
public final class LossyRelay: @unchecked Sendable {
    // @unchecked: the sockets are fixed at init; `stopped` and the counters are guarded by `lock`;
    // everything else belongs to the relay's thread.
    public struct Counters: Sendable, Equatable {
        public var forwarded = 0
        public var dropped = 0
        public var reordered = 0
        public var duplicated = 0
    }

    public let front: LoopbackSocket
    private let back: LoopbackSocket
    private let backend: LoopbackEndpoint
    private let drop: Double, reorder: Double, duplicate: Double
    private var random: SplitMix64
    private let lock = NSLock()
    private var stopped = false
    private var counts = Counters()
    private let finished = DispatchSemaphore(value: 0)

    /// Rates are fractions of the datagrams (0.1 = 10%).
    public init(to backend: LoopbackEndpoint, drop: Double, reorder: Double, duplicate: Double, seed: UInt64) throws {
        front = try LoopbackSocket.udp()
        back = try LoopbackSocket.udp()
        for socket in [front, back] {
            var size: Int32 = 8 << 20
            setsockopt(socket.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(socket.fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        self.backend = backend
        self.drop = drop
        self.reorder = reorder
        self.duplicate = duplicate
        random = SplitMix64(seed: seed)
        Thread { [self] in run() }.start()
    }

    deinit { stop() }

    /// Where the client sends.
    public var endpoint: LoopbackEndpoint { front.localEndpoint }

    public var counters: Counters { lock.withLock { counts } }

    public func stop() {
        let wasRunning = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if wasRunning { finished.wait() }
    }

    private func run() {
        defer { finished.signal() }
        var client: LoopbackEndpoint?
        // A datagram held back, per direction (0: to the backend, 1: to the client), sent after
        // the next one in that direction (or after 20 ms).
        var held: [Int: (bytes: [UInt8], since: Date)] = [:]
        var pollers = [pollfd(fd: front.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: back.fd, events: Int16(POLLIN), revents: 0)]
        while !lock.withLock({ stopped }) {
            guard poll(&pollers, 2, 10) >= 0 else { continue }
            for direction in 0..<2 where pollers[direction].revents & Int16(POLLIN) != 0 {
                let source = direction == 0 ? front : back
                guard let (bytes, from) = try? source.receiveDatagram(timeout: 0) else { continue }
                if direction == 0 { client = from }
                guard let target = direction == 0 ? backend : client else { continue }
                let out = direction == 0 ? back : front
                forward(bytes, to: target, via: out, direction: direction, held: &held)
            }
            // Nothing is held for long: a reordered datagram goes out even if no other follows.
            for (direction, entry) in held where Date().timeIntervalSince(entry.since) > 0.02 {
                held[direction] = nil
                if let target = direction == 0 ? backend : client { try? (direction == 0 ? back : front).send(entry.bytes, to: target) }
            }
        }
    }

    private func forward(_ bytes: [UInt8], to target: LoopbackEndpoint, via socket: LoopbackSocket, direction: Int, held: inout [Int: (bytes: [UInt8], since: Date)]) {
        let roll = Double(random.next() % 1_000_000) / 1_000_000
        if roll < drop {
            lock.withLock { counts.dropped += 1 }
            return
        }
        if roll < drop + reorder, held[direction] == nil {
            held[direction] = (bytes, Date())
            lock.withLock { counts.reordered += 1 }
            return
        }
        try? socket.send(bytes, to: target)
        if roll > 1 - duplicate {
            try? socket.send(bytes, to: target)
            lock.withLock { counts.duplicated += 1 }
        }
        if let earlier = held.removeValue(forKey: direction) { try? socket.send(earlier.bytes, to: target) }
        lock.withLock { counts.forwarded += 1 }
    }
}
