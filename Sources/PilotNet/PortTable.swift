import NIOCore
import PilotWire

/// The streams and listening ports of every identity of a fabric. Loop-confined.
final class PortTable {
    /// The counts of streams that are gone (see `StreamConnection.retransmitted`).
    var retransmittedByClosed = 0
    var shutWindowsByClosed = 0
    struct Entry {
        let connection: StreamConnection
        let handle: StreamHandle?
        /// A dial waiting for its SYN|ACK.
        var dialed: EventLoopPromise<StreamHandle>?
        /// Writers waiting for the queue to drain below `writeLimit`.
        var writers: [Waiter] = []
        /// Served on the loop by the echo service, with no handle.
        var echoes: Bool { connection.echoesBack }
    }

    /// A writer waiting until no more than `unacknowledged` bytes wait for the peer's ACK (0: a
    /// flush, waiting for all of them).
    struct Waiter {
        let unacknowledged: Int
        let promise: EventLoopPromise<Void>
    }

    /// What a listening port does with a new stream.
    enum Listener {
        case accept(Acceptor)
        /// Every byte back, and a close when the peer finishes; run on the loop itself, so a
        /// probe costs no hop to a task.
        case echo
    }

    /// A writer waits while more than this is written and not acknowledged.
    static let writeLimit = 4 << 20

    typealias Acceptor = @Sendable (StreamHandle) -> Void

    var entries: [StreamConnection.Key: Entry] = [:]
    /// Open streams per local identity and per (identity, port), for the limits below.
    private(set) var perIdentity: [UInt32: Int] = [:]
    private(set) var perPort: [PortKey: Int] = [:]
    private var synBuckets: [UInt32: TokenBucket] = [:]
    private var synBucketsBySource: [SourceKey: TokenBucket] = [:]
    private var trustedSynBuckets: [SourceKey: TokenBucket] = [:]
    var synsRateLimited = 0
    var refusedAtLimit = 0

    struct PortKey: Hashable {
        let node: UInt32
        let port: UInt16
    }

    struct SourceKey: Hashable {
        let node: UInt32
        let source: UInt32
    }

    /// 1.18's limits for strangers, per identity (one 1.18 daemon is one identity): new
    /// streams at most 100 a second, 10 a second from one source node (more are dropped
    /// silently); at most 1024 streams on one port and 4096 in all (more are refused with RST).
    static let synsPerSecond = 100.0
    static let synsPerSecondPerSource = 10.0
    static let streamsPerPort = 1024
    static let streamsPerIdentity = 4096
    /// A node the identity trusts has an allowance of its own, outside the strangers' limits
    /// above: bursts of up to 256 new streams, 100 a second after that. (1.18 holds a friend
    /// to the stranger's 10 a second: `pilotctl ping` waited a second for its 11th probe.)
    static let trustedSynBurst = 256.0
    static let trustedSynsPerSecond = 100.0

    /// Whether a SYN from `source` to `node` may open a stream now; `trusted`: `node` trusts
    /// `source` (its allowance, not the strangers' limits).
    func admitSyn(to node: UInt32, from source: UInt32, trusted: Bool = false, now: NIODeadline) -> Bool {
        let seconds = Double(now.uptimeNanoseconds) / 1e9
        let sourceKey = SourceKey(node: node, source: source)
        if trusted {
            var allowance = trustedSynBuckets[sourceKey]
                ?? TokenBucket(capacity: Self.trustedSynBurst, ratePerSecond: Self.trustedSynsPerSecond, now: seconds)
            let admitted = allowance.take(now: seconds)
            trustedSynBuckets[sourceKey] = allowance
            if trustedSynBuckets.count > 65536 { trustedSynBuckets = trustedSynBuckets.filter { !$0.value.isFull(now: seconds) } }
            if !admitted { synsRateLimited += 1 }
            return admitted
        }
        // One second of burst.
        var global = synBuckets[node] ?? TokenBucket(capacity: Self.synsPerSecond, ratePerSecond: Self.synsPerSecond, now: seconds)
        var bySource = synBucketsBySource[sourceKey]
            ?? TokenBucket(capacity: Self.synsPerSecondPerSource, ratePerSecond: Self.synsPerSecondPerSource, now: seconds)
        let admitted = bySource.canTake(now: seconds) && global.take(now: seconds) && bySource.take(now: seconds)
        synBuckets[node] = global
        synBucketsBySource[sourceKey] = bySource
        if synBucketsBySource.count > 65536 { synBucketsBySource = synBucketsBySource.filter { !$0.value.isFull(now: seconds) } }
        if !admitted { synsRateLimited += 1 }
        return admitted
    }

    /// Whether `node` may hold one more stream on `port`.
    func hasRoom(node: UInt32, port: UInt16) -> Bool {
        let room = (perIdentity[node] ?? 0) < Self.streamsPerIdentity && (perPort[PortKey(node: node, port: port)] ?? 0) < Self.streamsPerPort
        if !room { refusedAtLimit += 1 }
        return room
    }

    /// The `id` the next new stream gets.
    private var nextStreamID = 1

    /// A new stream's `id` (its handle is made with it before the stream is inserted).
    func takeID() -> Int {
        defer { nextStreamID += 1 }
        return nextStreamID
    }

    func insert(_ entry: Entry, for key: StreamConnection.Key) {
        if entries.updateValue(entry, forKey: key) == nil {
            if entry.connection.id == 0 { entry.connection.id = takeID() }
            perIdentity[key.local.node, default: 0] += 1
            perPort[PortKey(node: key.local.node, port: key.localPort), default: 0] += 1
        }
    }

    func remove(_ key: StreamConnection.Key) {
        guard let entry = entries.removeValue(forKey: key) else { return }
        retransmittedByClosed += entry.connection.retransmitted
        shutWindowsByClosed += entry.connection.shutWindowsAdvertised
        perIdentity[key.local.node, default: 1] -= 1
        perPort[PortKey(node: key.local.node, port: key.localPort), default: 1] -= 1
    }

    var listeners: [UInt32: [UInt16: Listener]] = [:]
    private var nextEphemeral: [UInt32: UInt16] = [:]
    var resetsSent = 0

    /// A free ephemeral port of `node` (49152–65535, skipping ports in use).
    func ephemeralPort(for node: UInt32) -> UInt16 {
        let busy = Set(entries.keys.filter { $0.local.node == node }.map(\.localPort))
        var port = nextEphemeral[node] ?? 49152
        for _ in 0..<16384 {
            defer { port = port == 65535 ? 49152 : port + 1 }
            if !busy.contains(port) && listeners[node]?[port] == nil {
                nextEphemeral[node] = port == 65535 ? 49152 : port + 1
                return port
            }
        }
        return 0
    }
}
