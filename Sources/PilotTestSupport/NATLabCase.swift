public import Foundation
import PilotWire

/// A case of the NAT lab (issue 15): two ends behind two routers of the case's kinds, with our
/// pilot-rendezvous in the lab's wan namespace, come to trust each other; then files go each way
/// and are compared byte for byte, while a `NATLabPathWatch` notes the path each end reports
/// from the moment of mutual trust. Some cases add an event (a rebinding, an idle spell) or a
/// capture that explains the path.
///
/// `run` measures and asserts nothing: the tests judge the `NATLabOutcome`, and `pilot-bench nat`
/// prints it.
public struct NATLabCase: Sendable, CustomStringConvertible {
    /// What happens to the path besides the files.
    public enum Event: Sendable, Equatable {
        case none
        /// As the first file from end 0 starts on its way, router 0 starts masquerading into
        /// other ports (40000-49999) and forgets every flow (`NATLab.rebind`): each mapping of its
        /// host changes mid-transfer. The outcome says when the rebinding was done, so a transfer
        /// that finished first (10 MB take a quarter of a second on a fast path) is seen as such.
        case rebinding
        /// After the files, both routers' UDP conntrack timeouts go down to `timeout` seconds (both
        /// unreplied and stream), a message goes each way (so every flow runs on them), and the
        /// ends send nothing for `timeout + 5` seconds; then one message each way, timed.
        case idle(timeout: Int)
    }

    /// "1a", "2", ...: the numbering of the proof section.
    public let name: String
    /// Router 0's and router 1's.
    public let kinds: [NATLab.Kind]
    /// End 0's and end 1's.
    public let software: [NATLabNode.Software]
    /// The end that asks for trust; the other approves every handshake.
    public let asker: Int
    /// The path NAT traversal should find between these NATs.
    public let traversal: NATLabNode.Path
    public let event: Event
    /// Whether every UDP datagram on the wan bridge is captured (and the file kept) to explain
    /// the path.
    public let capture: Bool

    public init(
        _ name: String, _ kinds: [NATLab.Kind], _ software: [NATLabNode.Software], asker: Int = 0, traversal: NATLabNode.Path,
        event: Event = .none, capture: Bool = false
    ) {
        self.name = name
        self.kinds = kinds
        self.software = software
        self.asker = asker
        self.traversal = traversal
        self.event = event
        self.capture = capture
    }

    /// The cases of the issue, in its order.
    public static let all: [NATLabCase] = [
        NATLabCase("1a", [.portPreserving, .portPreserving], [.pilotHost, .pilotHost], traversal: .direct),
        NATLabCase("1b", [.portPreserving, .portPreserving], [.pilotHost, .official], asker: 0, traversal: .direct, capture: true),
        NATLabCase("1c", [.portPreserving, .portPreserving], [.pilotHost, .official], asker: 1, traversal: .direct, capture: true),
        NATLabCase("2", [.portPreserving, .portPreserving], [.official, .official], traversal: .direct, capture: true),
        NATLabCase("3", [.fullyRandom, .fullyRandom], [.pilotHost, .pilotHost], traversal: .relay),
        NATLabCase("4", [.fullyRandom, .fullCone], [.pilotHost, .pilotHost], traversal: .direct),
        NATLabCase("5", [.portPreserving, .portPreserving], [.pilotHost, .pilotHost], traversal: .direct, event: .rebinding),
        NATLabCase("6", [.portPreserving, .portPreserving], [.pilotHost, .pilotHost], traversal: .direct, event: .idle(timeout: 30)),
    ]

    /// The case of `all` named `name`.
    public static func named(_ name: String) -> NATLabCase? { all.first { $0.name == name } }

    /// Whether an end runs the official daemon (so the case needs its binaries).
    public var needsOfficial: Bool { software.contains(.official) }

    /// "pilot-host → 1.18": the asker first.
    public var pair: String { "\(software[asker]) → \(software[1 - asker])" }

    public var description: String { "case \(name): \(kinds[0]) ↔ \(kinds[1]), \(pair)" }

    /// Runs the case with files of `megabytes` MB, `files` of them each way; a capture goes into
    /// `artifacts` and stays there. Throws when the case cannot get as far as the files (the lab,
    /// a daemon, trust); what goes wrong after that is in the outcome.
    public func run(official: OfficialPilot?, megabytes: Int = 10, files: Int = 1, artifacts: URL) throws -> NATLabOutcome {
        let directory = try TemporaryDirectory(prefix: "pilot-nat")
        defer { directory.remove() }
        let lab = try NATLab(kinds)
        var processes: [ChildProcess] = []
        defer {
            for process in processes.reversed() { process.stop() }
            lab.remove()
        }
        func logs() -> String { processes.map { "--- \($0.name)\n\($0.output.suffix(3000))" }.joined(separator: "\n") }
        // The lab and the capture throw NATLab.Unavailable as it is, so a test can skip on it.
        var capture: (process: ChildProcess, file: URL)?
        if self.capture {
            try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
            let file = artifacts.appendingPathComponent("nat-case\(name)-\(Int(Date().timeIntervalSince1970)).pcap")
            let tcpdump = try lab.startCapture(to: file, logDirectory: directory.url)
            processes.append(tcpdump)
            capture = (tcpdump, file)
        }
        do {
            processes.append(try startRendezvous(in: lab, directory: directory))
            var ends: [NATLabNode] = []
            for (index, software) in software.enumerated() {
                let end = try start(software, index, in: lab, official: official, directory: directory)
                ends.append(end)
                processes.append(end.process)
            }
            var outcome = try exchange(ends, in: lab, megabytes: megabytes, files: files, directory: directory)
            outcome.registryEndpoints = Self.registryEndpoints(directory, nodes: ends.map(\.node))
            if let capture {
                capture.process.stop()
                outcome.capture = try NATLabCapture(
                    reading: capture.file, between: lab.routers[0].wanAddress, and: lab.routers[1].wanAddress, rendezvous: lab.wan.address)
            }
            outcome.logs = logs()
            return outcome
        } catch {
            throw HarnessError("\(self): \(error)\n\(logs())")
        }
    }

    /// Trust, then the files, the event and what the routers hold at the end.
    private func exchange(_ ends: [NATLabNode], in lab: NATLab, megabytes: Int, files: Int, directory: TemporaryDirectory) throws -> NATLabOutcome {
        try ends[asker].handshake(ends[1 - asker].node)
        let mutual = ChildProcess.waitUntil(timeout: 45, every: 0.2) { ends[0].trusts(ends[1].node) && ends[1].trusts(ends[0].node) }
        guard mutual else { throw HarnessError("no mutual trust within 45 s") }
        let watch = NATLabPathWatch(ends, since: Date())
        defer { watch.stop() }
        var outcome = NATLabOutcome(labCase: self)
        var random = SplitMix64(seed: name.utf8.reduce(UInt64(0)) { $0 &* 31 &+ UInt64($1) })
        for (from, to) in [(0, 1), (1, 0)] {
            for round in 0..<files {
                let rebinding = event == .rebinding && from == 0 && round == 0 ? Rebinding(lab: lab, router: lab.routers[0]) : nil
                outcome.transfers.append(transfer(
                    Self.randomBytes(megabytes * 1_000_000, &random), named: "case\(name)-\(from)to\(to)-\(round).bin", from: ends[from],
                    to: ends[to], directory: directory, rebinding: rebinding))
                if let rebinding { outcome.rebinding = rebinding.finish() }
            }
        }
        if event == .rebinding {
            // The path back: a message each way, then whatever the ends report.
            for (from, to) in [(0, 1), (1, 0)] {
                let sent: Void? = try? ends[from].sendMessage("after the rebinding", to: ends[to].node)
                outcome.messagesAfterEvent.append(sent != nil)
            }
        }
        if case .idle(let timeout) = event {
            outcome.idle = try idle(ends, in: lab, timeout: timeout)
        }
        let seen = watch.stop()
        outcome.seen = seen
        outcome.timeline = watch.timeline
        outcome.routerFlows = lab.routers.map { lab.udpFlows($0) }
        return outcome
    }

    /// One file from `from` to `to`, and whether it arrived whole.
    private func transfer(
        _ bytes: Data, named name: String, from: NATLabNode, to: NATLabNode, directory: TemporaryDirectory, rebinding: Rebinding?
    ) -> NATLabOutcome.Transfer {
        let file = directory.url.appendingPathComponent(name)
        var record = NATLabOutcome.Transfer(from: from.name, to: to.name, bytes: bytes.count)
        do {
            try bytes.write(to: file)
            var whenSending: (@Sendable () -> Void)?
            if let rebinding { whenSending = { rebinding.start() } }
            record.seconds = try from.sendFile(file, to: to.node, whenSending: whenSending)
        } catch {
            record.error = "\(error)"
        }
        // Looked for even when the send failed: a file can arrive whole while its ACK is lost.
        let arrived = try? to.receivedFile(named: name, savingInto: directory.url.appendingPathComponent("saved-\(to.name)"))
        record.exact = record.error == nil && arrived == bytes
        let what = arrived.flatMap { $0 }.map { $0 == bytes ? "the file arrived whole" : "\($0.count) bytes arrived, not the same" } ?? "nothing arrived"
        if record.error != nil || !record.exact { record.error = [record.error, what].compactMap { $0 }.joined(separator: "; ") }
        try? FileManager.default.removeItem(at: file)
        return record
    }

    /// The idle spell of `.idle`: what the next message each way took.
    private func idle(_ ends: [NATLabNode], in lab: NATLab, timeout: Int) throws -> NATLabOutcome.Idle {
        for router in lab.routers { try lab.setUDPTimeouts(router, unreplied: timeout, stream: timeout) }
        for (from, to) in [(0, 1), (1, 0)] { try ends[from].sendMessage("before the idle spell", to: ends[to].node) }
        Thread.sleep(forTimeInterval: TimeInterval(timeout + 5))
        var idle = NATLabOutcome.Idle(timeout: timeout, flowsBefore: lab.routers.map { lab.udpFlows($0) })
        for (from, to) in [(0, 1), (1, 0)] {
            let started = Date()
            let arrived = (try? ends[from].sendMessage("after the idle spell", to: ends[to].node, timeout: 30)) != nil
            idle.delays.append(arrived ? Date().timeIntervalSince(started) : nil)
        }
        return idle
    }

    private func startRendezvous(in lab: NATLab, directory: TemporaryDirectory) throws -> ChildProcess {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let beacon = "\(lab.wan.address):\(NATLabNode.beaconPort)"
        let (executable, arguments) = lab.command(
            in: lab.wan.name, bin.appendingPathComponent("pilot-rendezvous").path,
            ["--registry-addr", "\(lab.wan.address):\(NATLabNode.registryPort)", "--beacon-addr", beacon, "--advertise-beacon", beacon,
             "--state-dir", directory.path("rendezvous"), "--log-level", "info"])
        let process = try ChildProcess(name: "rendezvous", executable: executable, arguments: arguments, logDirectory: directory.url)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains("beacon \(beacon)") }) else {
            process.stop()
            throw HarnessError("pilot-rendezvous did not start:\n\(process.output.suffix(2000))")
        }
        return process
    }

    /// End `index` (behind router `index`): alice and bob on pilot-host, alpha and beta on 1.18.
    private func start(_ software: NATLabNode.Software, _ index: Int, in lab: NATLab, official: OfficialPilot?, directory: TemporaryDirectory) throws -> NATLabNode {
        let router = lab.routers[index]
        switch software {
        case .pilotHost:
            return try NATLabNode.pilotHost(["alice", "bob"][index], behind: router, of: lab, autoApprove: index != asker, directory: directory.url)
        case .official:
            guard let official else { throw HarnessError("the case needs the official 1.18 binaries") }
            return try NATLabNode.official(
                ["alpha", "beta"][index], binaries: official, behind: router, of: lab, autoApprove: index != asker, directory: directory.url)
        }
    }

    /// The endpoint the registry holds for each of `nodes` (its `real_addr`: the address its
    /// registration came from, with the port it named), read from pilot-rendezvous' database.
    private static func registryEndpoints(_ directory: TemporaryDirectory, nodes: [UInt32]) -> [String] {
        let query = """
            import sqlite3, sys
            db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
            for node in sys.argv[2:]:
                row = db.execute("SELECT real_addr FROM node WHERE id = ?", (int(node),)).fetchone()
                print(row[0] if row and row[0] else "-")
            """
        let result = ChildProcess.run(
            "/usr/bin/env", ["python3", "-c", query, directory.path("rendezvous/registry.db")] + nodes.map { "\($0)" }, timeout: 20)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        return lines.count == nodes.count ? lines : nodes.map { _ in "?" }
    }

    /// `count` bytes (a multiple of 8) from `random`, eight at a time.
    private static func randomBytes(_ count: Int, _ random: inout SplitMix64) -> Data {
        var words = [UInt64](repeating: 0, count: count / 8)
        for index in words.indices { words[index] = random.next() }
        return words.withUnsafeBytes { Data($0) }
    }
}

/// The rebinding of `NATLabCase.Event.rebinding`: started by the transfer once its file is on its
/// way, on a thread of its own; `finish` waits for it.
private final class Rebinding: @unchecked Sendable {
    // @unchecked: `sending` is written once by the transfer before its send, which returns
    // before `finish` reads it; `rebound` and `failure` are written once on the rebinding's
    // thread before `done` is signalled, and read only after waiting for it.
    private let lab: NATLab
    private let router: NATLab.Router
    private let done = DispatchSemaphore(value: 0)
    private var sending: Date?
    private var rebound: Date?
    private var failure: String?

    init(lab: NATLab, router: NATLab.Router) {
        self.lab = lab
        self.router = router
    }

    func start() {
        sending = Date()
        DispatchQueue.global().async { [self] in
            do {
                try lab.rebind(router, to: 40000...49999)
                rebound = Date()
            } catch {
                failure = "\(error)"
            }
            done.signal()
        }
    }

    /// Waits for the rebinding (if the transfer started it) and says when it was done.
    func finish() -> NATLabOutcome.RebindingReport {
        guard let sending else { return NATLabOutcome.RebindingReport(secondsIntoTransfer: nil, error: "the transfer never started sending") }
        done.wait()
        return NATLabOutcome.RebindingReport(secondsIntoTransfer: rebound.map { $0.timeIntervalSince(sending) }, error: failure)
    }
}
