public import Foundation

/// Asks two ends of a NAT lab case how they reach each other, every 100 ms on a thread of its
/// own, from `since` until `stop()`: what each said last, when each first said direct, and every
/// change. `stop()` must be called: the watching thread holds the watch until then.
public final class NATLabPathWatch: @unchecked Sendable {
    // @unchecked: `seen`, `changes` and `stopping` are guarded by `lock`; the rest is fixed.

    /// What one end said.
    public struct Seen: Sendable {
        /// The last path it reported (nil: it has never listed the other end).
        public var last: NATLabNode.Path?
        /// Seconds after `since` when it first reported a direct path.
        public var firstDirect: TimeInterval?
        /// Where its last report said the other end is.
        public var endpoint: String?
    }

    /// One end's report of a path other than its previous one.
    public struct Change: Sendable, CustomStringConvertible {
        public let end: Int
        public let path: NATLabNode.Path
        public let seconds: TimeInterval
        public var description: String { String(format: "end %d %@ at %.1f s", end, path.rawValue, seconds) }
    }

    private let ends: [NATLabNode]
    private let since: Date
    private let interval: TimeInterval
    private let lock = NSLock()
    private var seen: [Seen]
    private var changes: [Change] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    /// Starts watching `ends` (two: each is asked about the other), times counted from `since`.
    public init(_ ends: [NATLabNode], since: Date, every interval: TimeInterval = 0.1) {
        self.ends = ends
        self.since = since
        self.interval = interval
        seen = ends.map { _ in Seen() }
        Thread { [self] in watch() }.start()
    }

    /// What each end said so far.
    public var reports: [Seen] {
        lock.lock()
        defer { lock.unlock() }
        return seen
    }

    /// Every change of path, in order.
    public var timeline: [Change] {
        lock.lock()
        defer { lock.unlock() }
        return changes
    }

    /// Stops asking (waiting for the question under way) and returns what each end said.
    @discardableResult
    public func stop() -> [Seen] {
        lock.lock()
        let first = !stopping
        stopping = true
        lock.unlock()
        if first { finished.wait() }
        return reports
    }

    private func watch() {
        // Opened here and used only here: one connection per pilot-host end for the whole case.
        let connections = ends.map { $0.controlConnection() }
        while true {
            lock.lock()
            let stopped = stopping
            lock.unlock()
            if stopped { break }
            let round = Date()
            for (index, end) in ends.enumerated() {
                let other = ends[1 - index].node
                let entry = end.peerEntry(other, over: connections[index])
                record(index, path: entry.flatMap { NATLabNode.Path(peer: $0) }, endpoint: entry?["endpoint"]?.stringValue)
            }
            let spent = Date().timeIntervalSince(round)
            if spent < interval { usleep(useconds_t((interval - spent) * 1_000_000)) }
        }
        finished.signal()
    }

    private func record(_ index: Int, path: NATLabNode.Path?, endpoint: String?) {
        let seconds = Date().timeIntervalSince(since)
        lock.lock()
        defer { lock.unlock() }
        guard let path else { return }
        if path != seen[index].last { changes.append(Change(end: index, path: path, seconds: seconds)) }
        seen[index].last = path
        seen[index].endpoint = endpoint
        if path == .direct, seen[index].firstDirect == nil { seen[index].firstDirect = seconds }
    }
}
