public import Foundation

/// What a capture on the lab's wan bridge (`NATLab.startCapture`) shows of the datagrams two
/// routers sent each other directly, not through the rendezvous: the flows between their WAN
/// addresses, and from them why a direct path formed or did not.
///
/// The bridge sees datagrams after translation, before the receiving router filters them: a
/// flow one way with nothing on the same two endpoints the other way was dropped by the
/// receiving NAT (or never answered).
public struct NATLabCapture: Sendable {
    /// Datagrams from one WAN endpoint to another.
    public struct Flow: Sendable, Hashable, CustomStringConvertible {
        public let source: String
        public let destination: String
        public var datagrams: Int
        /// When the first one passed (seconds since 1970, as tcpdump stamps it) and its length.
        public let first: Double
        public let firstLength: Int
        public var description: String { "\(source) > \(destination): \(datagrams)" }
    }

    /// Why there is, or is not, a direct path, as the capture shows it.
    public enum Verdict: Sendable, Equatable {
        /// Neither router sent the other anything: both ends used only the rendezvous.
        case noAttempt
        /// Only one router sent to the other; nothing came back on any pair of endpoints.
        case oneWay(from: String)
        /// Both sent, but never on the same two endpoints: each hit a port the other's NAT had
        /// not opened to it.
        case crossed
        /// Datagrams went both ways on the same two endpoints: the NATs let a path through.
        case open(String)
    }

    /// The capture file (pcap), kept as the case's artifact.
    public let file: URL
    public let flows: [Flow]
    public let verdict: Verdict
    /// Datagrams each of the two WAN addresses sent the rendezvous: beacon traffic, mostly
    /// relayed frames while a path goes through the beacon.
    public let toRendezvous: [String: Int]

    /// Reads `file` with tcpdump and keeps the datagrams between WAN addresses `a` and `b`, and
    /// those each sent to `rendezvous`.
    public init(reading file: URL, between a: String, and b: String, rendezvous: String) throws {
        let read = ChildProcess.run("/usr/bin/tcpdump", ["-r", file.path, "-n", "-q", "-tt", "udp"], timeout: 30)
        guard read.status == 0 else { throw HarnessError("tcpdump -r \(file.path): \(read.output.suffix(300))") }
        var counted: [String: Flow] = [:]
        var toRendezvous = [a: 0, b: 0]
        for line in read.stdout.split(separator: "\n") {
            // "1796405444.087517 IP 203.0.113.2.37000 > 203.0.113.3.37000: UDP, length 125"
            let words = line.split(separator: " ")
            guard let at = words.firstIndex(of: "IP"), at + 3 < words.count, words[at + 2] == ">", let time = Double(words[0]) else { continue }
            let source = Self.endpoint(words[at + 1]), destination = Self.endpoint(words[at + 3].dropLast())
            if destination.address == rendezvous, toRendezvous[source.address] != nil { toRendezvous[source.address, default: 0] += 1 }
            guard Set([source.address, destination.address]) == Set([a, b]) else { continue }
            let key = "\(source.text) \(destination.text)"
            let length = words.last.flatMap { Int($0) } ?? 0
            counted[key, default: Flow(source: source.text, destination: destination.text, datagrams: 0, first: time, firstLength: length)].datagrams += 1
        }
        self.file = file
        self.toRendezvous = toRendezvous
        let flows = counted.values.sorted { ($0.source, $0.destination) < ($1.source, $1.destination) }
        self.flows = flows
        let senders = Set(flows.map { $0.source.split(separator: ":")[0] })
        if let answered = flows.first(where: { flow in flows.contains { $0.source == flow.destination && $0.destination == flow.source } }) {
            verdict = .open("\(answered.source) <> \(answered.destination)")
        } else if senders.count == 2 {
            verdict = .crossed
        } else if let only = senders.first {
            verdict = .oneWay(from: String(only))
        } else {
            verdict = .noAttempt
        }
    }

    /// The verdict in a sentence, with the flows that support it.
    public var reason: String {
        let seen = flows.isEmpty ? "" : " (\(flows.map(\.description).joined(separator: ", ")))"
        let beacon = toRendezvous.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        return sentence(seen) + order + "; datagrams to the rendezvous: \(beacon)"
    }

    /// Which router sent the other its first datagram, and how long before the other's first:
    /// a NAT drops what reaches it before its host has sent the other way.
    private var order: String {
        let firsts = Dictionary(grouping: flows) { $0.source.split(separator: ":")[0] }.compactMapValues { $0.min { $0.first < $1.first } }
            .values.sorted { $0.first < $1.first }
        guard let earliest = firsts.first else { return "" }
        let lead = "; \(earliest.source) sent first (\(earliest.firstLength) bytes)"
        guard firsts.count == 2 else { return lead }
        return lead + String(format: ", %.2f ms before ", (firsts[1].first - earliest.first) * 1000) + "\(firsts[1].source) (\(firsts[1].firstLength) bytes)"
    }

    private func sentence(_ seen: String) -> String {
        switch verdict {
        case .noAttempt: return "neither router sent the other a datagram: both ends went only through the beacon"
        case .oneWay(let from): return "only \(from) sent to the other router, and nothing came back on those endpoints: dropped by the other NAT\(seen)"
        case .crossed: return "both routers sent, never on the same two endpoints: each hit a port the other NAT had not opened to it\(seen)"
        case .open(let pair): return "datagrams crossed both ways on \(pair): the NATs let a direct path through\(seen)"
        }
    }

    /// The verdict in a few words, for a table.
    public var verdictName: String {
        switch verdict {
        case .noAttempt: "no direct datagram"
        case .oneWay(let from): "one way, from \(from)"
        case .crossed: "both ways, never matched"
        case .open: "open both ways"
        }
    }

    /// "203.0.113.2.37000" as its address and "address:port".
    private static func endpoint(_ word: Substring) -> (address: String, text: String) {
        guard let dot = word.lastIndex(of: ".") else { return (String(word), String(word)) }
        let address = String(word[..<dot])
        return (address, "\(address):\(word[word.index(after: dot)...])")
    }
}
