public import Foundation

/// What one run of a `NATLabCase` saw: the path each end reported, the files, the event, what
/// the registry and the routers held, and the capture. A row of `pilot-bench nat`'s table.
public struct NATLabOutcome: Sendable {
    /// One file from one end to the other.
    public struct Transfer: Sendable {
        public let from: String
        public let to: String
        public let bytes: Int
        /// From the send until its acknowledgement (nil: it failed).
        public var seconds: TimeInterval?
        /// Whether what arrived is the file, byte for byte.
        public var exact = false
        /// What went wrong, if anything did.
        public var error: String?

        public init(from: String, to: String, bytes: Int) {
            self.from = from
            self.to = to
            self.bytes = bytes
        }

        public var megabytesPerSecond: Double? { seconds.map { Double(bytes) / 1e6 / max($0, 1e-6) } }
    }

    /// When the rebinding of `NATLabCase.Event.rebinding` was done.
    public struct RebindingReport: Sendable {
        /// Seconds after the transfer began sending when the router had its new rules and an
        /// empty conntrack table (nil: it did not happen).
        public let secondsIntoTransfer: TimeInterval?
        public let error: String?
    }

    /// The idle spell of `NATLabCase.Event.idle`.
    public struct Idle: Sendable {
        /// The routers' UDP conntrack timeouts during it, in seconds.
        public let timeout: Int
        /// What each router tracked of UDP at its end, just before the next messages.
        public let flowsBefore: [String]
        /// Seconds from sending each next message (end 0 to 1, then 1 to 0) to its
        /// acknowledgement; nil where none came within 30 s.
        public var delays: [TimeInterval?] = []
    }

    public let labCase: NATLabCase
    /// What each end reported last, and when first direct.
    public var seen: [NATLabPathWatch.Seen] = []
    public var timeline: [NATLabPathWatch.Change] = []
    /// End 0's files to end 1, then end 1's to end 0.
    public var transfers: [Transfer] = []
    public var rebinding: RebindingReport?
    /// With `.rebinding`: whether a message went each way after the files.
    public var messagesAfterEvent: [Bool] = []
    public var idle: Idle?
    /// Each end's `real_addr` in the registry at the end.
    public var registryEndpoints: [String] = []
    /// What each router tracked of UDP at the end (`conntrack -L -p udp`).
    public var routerFlows: [String] = []
    public var capture: NATLabCapture?
    /// The end of every process's output.
    public var logs = ""

    public init(labCase: NATLabCase) { self.labCase = labCase }

    /// Seconds from mutual trust until both ends reported a direct path (nil: not both did).
    public var timeToDirect: TimeInterval? {
        let times = seen.compactMap(\.firstDirect)
        return times.count == 2 && seen.count == 2 ? times.max() : nil
    }

    /// Seconds from each end's first report of the other (the tunnel's first frame) until it
    /// reported a direct path, the larger of the two (nil: not both did): the traversal itself,
    /// without what came before the first frame (such as an SDK uploading the file it sends,
    /// which takes seconds of CPU on a loaded machine).
    public var timeToDirectFromFirstFrame: TimeInterval? {
        guard seen.count == 2 else { return nil }
        var times: [TimeInterval] = []
        for end in 0..<2 {
            guard let direct = seen[end].firstDirect, let first = timeline.first(where: { $0.end == end })?.seconds else { return nil }
            times.append(max(0, direct - first))
        }
        return times.max()
    }

    /// Whether every file arrived byte for byte (and there was at least one each way).
    public var everyFileExact: Bool {
        transfers.allSatisfy(\.exact) && Set(transfers.map(\.from)).count == 2
    }

    /// The MB/s of each way's files together: end 0 to 1, then 1 to 0 (nil where one failed).
    public var megabytesPerSecond: [Double?] {
        guard let firstFrom = transfers.first?.from else { return [nil, nil] }
        return [transfers.filter { $0.from == firstFrom }, transfers.filter { $0.from != firstFrom }].map { way in
            let seconds = way.compactMap(\.seconds)
            guard !way.isEmpty, seconds.count == way.count else { return nil }
            return Double(way.map(\.bytes).reduce(0, +)) / 1e6 / max(seconds.reduce(0, +), 1e-6)
        }
    }

    /// The table's header, for `row`.
    public static let header = [
        pad("case", 5), pad("NATs", 35), pad("pair", 26), pad("path (each end)", 17), pad("to direct", 10), pad("MB/s (each way)", 16), "notes",
    ].joined()

    /// One line of the table.
    public var row: String {
        let names = labCase.software.enumerated().map { index, software in "\(software)" + (index == labCase.asker ? " (asks)" : "") }
        let paths = seen.map { $0.last?.rawValue ?? "none" }.joined(separator: " / ")
        let direct = timeToDirect.map { String(format: "%.1f s", $0) } ?? "—"
        let rates = megabytesPerSecond.map { $0.map { String(format: "%.1f", $0) } ?? "failed" }.joined(separator: " / ")
        return [
            Self.pad(labCase.name, 5), Self.pad("\(labCase.kinds[0]) ↔ \(labCase.kinds[1])", 35), Self.pad(names.joined(separator: " ↔ "), 26),
            Self.pad(paths.isEmpty ? "none" : paths, 17), Self.pad(direct, 10), Self.pad(rates, 16), notes.joined(separator: "; "),
        ].joined()
    }

    /// What else the row must say: failures, the event, the capture's verdict.
    public var notes: [String] {
        var notes = transfers.compactMap { transfer in
            transfer.exact ? nil : "\(transfer.from)→\(transfer.to) \(transfer.bytes / 1_000_000) MB: \(transfer.error ?? "not exact")"
        }
        if let rebinding {
            let during = transfers.first?.seconds.map { String(format: " of %.1f s", $0) } ?? ""
            notes.append(rebinding.secondsIntoTransfer.map { String(format: "rebound %.2f s into the transfer", $0) + during } ?? "no rebinding")
            if let into = rebinding.secondsIntoTransfer, let seconds = transfers.first?.seconds, into >= seconds {
                notes.append("the transfer had finished before the rebinding: it proves nothing")
            }
            if let error = rebinding.error { notes.append("rebinding failed: \(error)") }
            notes.append("message after: \(messagesAfterEvent.map { $0 ? "ok" : "lost" }.joined(separator: " / "))")
        }
        if let idle {
            let delays = idle.delays.map { $0.map { String(format: "%.2f s", $0) } ?? "none in 30 s" }.joined(separator: " / ")
            notes.append("after \(idle.timeout + 5) s idle (conntrack \(idle.timeout) s): next message \(delays)")
        }
        if let capture {
            notes.append("capture: \(capture.verdictName), kept as \(capture.file.lastPathComponent)")
        }
        return notes
    }

    /// A report of everything seen, for a test's output or the bench's details.
    public var details: String {
        var lines = ["\(labCase)"]
        for (index, seen) in seen.enumerated() {
            let first = seen.firstDirect.map { String(format: ", first direct at %.1f s", $0) } ?? ""
            lines.append("  end \(index) (\(labCase.software[index])): last \(seen.last?.rawValue ?? "none"), sends to \(seen.endpoint.map { $0.isEmpty ? "(no endpoint)" : $0 } ?? "?")\(first)")
        }
        lines.append("  registry holds: \(registryEndpoints.joined(separator: " / "))")
        if !timeline.isEmpty { lines.append("  paths: \(timeline.map(\.description).joined(separator: ", "))") }
        for transfer in transfers {
            let rate = transfer.megabytesPerSecond.map { String(format: "%.1f MB/s", $0) } ?? "failed"
            lines.append("  \(transfer.from) → \(transfer.to): \(transfer.bytes) bytes, \(rate), \(transfer.exact ? "exact" : transfer.error ?? "not exact")")
        }
        lines += notes.map { "  \($0)" }
        if let capture { lines.append("  capture: \(capture.reason)") }
        if let idle { lines += idle.flowsBefore.enumerated().map { "  router \($0.offset) before the next message:\n\($0.element)" } }
        lines += routerFlows.enumerated().map { "  router \($0.offset) at the end:\n\($0.element)" }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
