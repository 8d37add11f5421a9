/// Replay protection for one remote sender, kept per sender *epoch* as Pilot Protocol 1.18 does
/// (`docs/PROTOCOL.md §5.4` has the single window of the older tree).
///
/// An epoch is named by the sender's nonce prefix: a prefix never seen before means the sender
/// re-derived its session and restarted its counter at 1, so it gets a fresh 256-wide window,
/// and the previous newest epoch is kept. At most `retainedEpochs` older epochs are kept, least
/// recently used evicted; a frame of a retained epoch is judged in that epoch's own window.
///
/// Call `accept` only after the frame authenticated: a forged frame must not move the window.
public struct ReplayWindow: Sendable {
    /// How far behind an epoch's newest counter a frame may be and still be judged.
    public static let width: UInt64 = 256
    /// How many epochs are kept besides the newest.
    public static let retainedEpochs = 4

    /// What `accept` decided for a frame.
    public enum Verdict: Hashable, Sendable {
        /// New: deliver it. The window now remembers it.
        case accepted
        /// Seen before in this epoch.
        case duplicate
        /// More than `width` behind the newest counter of its epoch.
        case tooOld
        /// Counter 0 is never sent (counters start at 1).
        case invalidCounter
    }

    private struct Epoch: Sendable {
        let prefix: UInt32
        var highest: UInt64 = 0
        /// Bit i of the 256-bit map (word i / 64) is set when counter `highest - i` was seen.
        var seen: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var lastUsed: UInt64 = 0

        func isSeen(_ offset: UInt64) -> Bool {
            word(Int(offset / 64)) & (1 << (offset % 64)) != 0
        }

        mutating func mark(_ offset: UInt64) {
            setWord(Int(offset / 64), word(Int(offset / 64)) | 1 << (offset % 64))
        }

        /// Moves the window forward by `distance`: old offsets grow, new ones start clear.
        mutating func slide(by distance: UInt64) {
            guard distance < ReplayWindow.width else {
                seen = (0, 0, 0, 0)
                return
            }
            let words = Int(distance / 64)
            let bits = distance % 64
            var result: [UInt64] = [0, 0, 0, 0]
            for index in stride(from: 3, through: 0, by: -1) where index - words >= 0 {
                let source = index - words
                result[index] = word(source) << bits
                if bits > 0, source - 1 >= 0 { result[index] |= word(source - 1) >> (64 - bits) }
            }
            seen = (result[0], result[1], result[2], result[3])
        }

        private func word(_ index: Int) -> UInt64 {
            switch index {
            case 0: seen.0
            case 1: seen.1
            case 2: seen.2
            default: seen.3
            }
        }

        private mutating func setWord(_ index: Int, _ value: UInt64) {
            switch index {
            case 0: seen.0 = value
            case 1: seen.1 = value
            case 2: seen.2 = value
            default: seen.3 = value
            }
        }
    }

    private var newest: Epoch?
    private var older: [Epoch] = []
    private var clock: UInt64 = 0

    /// A window that has seen nothing.
    public init() {}

    /// The nonce prefix of the sender's newest epoch, if any frame was accepted.
    public var currentPrefix: UInt32? { newest?.prefix }

    /// How the frame would be judged, without recording it.
    public func check(prefix: UInt32, counter: UInt64) -> Verdict {
        guard counter > 0 else { return .invalidCounter }
        if let newest, newest.prefix == prefix { return Self.judge(newest, counter) }
        if let epoch = older.first(where: { $0.prefix == prefix }) { return Self.judge(epoch, counter) }
        return .accepted
    }

    /// Judges an authenticated frame and, if it is new, records it.
    public mutating func accept(prefix: UInt32, counter: UInt64) -> Verdict {
        guard counter > 0 else { return .invalidCounter }
        clock += 1
        if var epoch = newest, epoch.prefix == prefix {
            let verdict = Self.record(&epoch, counter)
            epoch.lastUsed = clock
            newest = epoch
            return verdict
        }
        if let index = older.firstIndex(where: { $0.prefix == prefix }) {
            let verdict = Self.record(&older[index], counter)
            older[index].lastUsed = clock
            return verdict
        }
        // A prefix never seen: the sender re-derived. Keep the previous newest epoch.
        if let previous = newest {
            older.append(previous)
            if older.count > Self.retainedEpochs,
                let stalest = older.indices.min(by: { older[$0].lastUsed < older[$1].lastUsed })
            {
                older.remove(at: stalest)
            }
        }
        var epoch = Epoch(prefix: prefix)
        epoch.lastUsed = clock
        let verdict = Self.record(&epoch, counter)
        newest = epoch
        return verdict
    }

    private static func judge(_ epoch: Epoch, _ counter: UInt64) -> Verdict {
        if counter > epoch.highest { return .accepted }
        let offset = epoch.highest - counter
        if offset >= width { return .tooOld }
        return epoch.isSeen(offset) ? .duplicate : .accepted
    }

    private static func record(_ epoch: inout Epoch, _ counter: UInt64) -> Verdict {
        let verdict = judge(epoch, counter)
        guard verdict == .accepted else { return verdict }
        if counter > epoch.highest {
            epoch.slide(by: counter - epoch.highest)
            epoch.highest = counter
            epoch.mark(0)
        } else {
            epoch.mark(epoch.highest - counter)
        }
        return .accepted
    }
}
