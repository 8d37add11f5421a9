import Foundation
import PilotClient
import PilotStore
import PilotWire

/// pilot-host figures: identity creation rate (each registered with a real pilot-rendezvous),
/// cold start time (process start to "pilot-host serving": every identity loaded and its socket
/// open; then to "identities registered", done in the background) and resident memory, at the
/// given numbers of identities, each of which trusts one peer.
struct HostBench {
    let sizes: [Int]

    func run() {
        do {
            for size in sizes { try measure(size) }
        } catch {
            print("pilot-bench host: \(error)")
            exit(1)
        }
    }

    private func measure(_ count: Int) throws {
        // One listening socket per identity, plus the 256 descriptors pilot-host keeps free.
        let needed = count + 256 + 64
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        if limit.rlim_max < needed {
            var raised = rlimit(rlim_cur: rlim_t(needed), rlim_max: rlim_t(needed))
            guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 else {
                print("""
                    \(String(repeating: " ", count: max(0, 7 - String(count).count)))\(count) identities: skipped: pilot-host needs \(needed) open files \
                    and the hard limit here is \(limit.rlim_max) (raising it needs CAP_SYS_RESOURCE; under systemd, LimitNOFILE=); \
                    `pilot-bench pool` measures the identities without their sockets
                    """)
                return
            }
        }
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-host-\(getpid())-\(count)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        let (rendezvous, registry) = try startRendezvous(bin: bin, stateDirectory: work.path + "/rdv")
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }

        // systemd's RuntimeDirectory= is under /run, a tmpfs; /dev/shm is the tmpfs at hand.
        // (On ext4, creating and renaming 100,000 socket files costs several times more.)
        let runtime = FileManager.default.isWritableFile(atPath: "/dev/shm")
            ? "/dev/shm/pilot-bench-host-\(getpid())-\(count)" : work.path + "/run"
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        let arguments = ["--state-dir", work.path + "/state", "--runtime-dir", runtime, "--registry", registry,
                         "--listen", "127.0.0.1:0", "--log-level", "info"]
        var host = try launch(bin.appendingPathComponent("pilot-host"), arguments, stderr: true)
        guard host.waitFor("pilot-host serving", timeout: 60) else { throw BenchError("pilot-host did not start") }
        let emptyRSS = rss(host.process.processIdentifier)

        // Four admin connections create at once, as several operators or scripts would.
        let connections = 4
        let failure = FailureBox()
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: connections) { lane in
            do {
                let client = try ControlConnection(path: runtime + "/admin.sock")
                for index in stride(from: lane, to: count, by: connections) {
                    do {
                        _ = try client.send(AdminControl.CreateIdentity(identity: "agent\(index)", owner: "0"))
                    } catch let failure as ControlFailure { throw BenchError("create \(index) failed: \(failure)") }
                }
            } catch {
                failure.set(error)
            }
        }
        if let error = failure.error { throw BenchError("\(error)\npilot-host's last lines:\n\(host.tail())") }
        let rate = Double(count) / Date().timeIntervalSince(start)
        let warmRSS = rss(host.process.processIdentifier)

        host.process.terminate()
        host.process.waitUntilExit()
        // Each identity trusts one peer, as an agent working with another does: the cold start
        // reads the trust tables and puts the private identities at rest with their peers.
        try Database(path: work.path + "/state/host.db").execute(
            "INSERT INTO trust (identity_id, peer_node, state, updated_at) SELECT id, 1000000 + id, 'trusted', 0 FROM identity")
        let coldStart = Date()
        host = try launch(bin.appendingPathComponent("pilot-host"), arguments, stderr: true)
        guard host.waitFor("pilot-host serving", timeout: 600) else { throw BenchError("pilot-host did not restart") }
        let cold = Date().timeIntervalSince(coldStart)
        let coldRSS = rss(host.process.processIdentifier)
        guard host.waitFor("identities registered", timeout: 600) else { throw BenchError("pilot-host did not re-register") }
        let registered = Date().timeIntervalSince(coldStart)
        let registeredRSS = rss(host.process.processIdentifier)
        // Idle: the start-up's work done (public identities joined, resting ones announced).
        Thread.sleep(forTimeInterval: 3)
        let idleRSS = rss(host.process.processIdentifier)
        host.process.terminate()
        host.process.waitUntilExit()
        print(String(
            format: """
                %7d identities: create %4.0f /s; cold start: serving after %5.2f s, all re-registered after %5.2f s
                                    RSS: empty %d KiB, after creating %d KiB, serving %d KiB, registered %d KiB, idle 3 s later %d KiB = %.2f KiB per identity
                """,
            count, rate, cold, registered, emptyRSS, warmRSS, coldRSS, registeredRSS, idleRSS, Double(idleRSS - emptyRSS) / Double(count)))
    }

    private func rss(_ pid: Int32) -> Int { residentKiB(pid) }

    private func launch(_ executable: URL, _ arguments: [String], stderr: Bool = false) throws -> Launched {
        try Launched.start(executable, arguments, stderr: stderr)
    }
}

/// A child process and the pipe it writes to. A thread reads the pipe to its end all the time,
/// so a chatty child never blocks on a full pipe, and keeps every line for `waitFor`.
final class Launched: @unchecked Sendable {
    let process: Process
    private let condition = NSCondition()
    private var lines: [String] = []
    private var consumed = 0
    private var ended = false

    init(process: Process, output: FileHandle) {
        self.process = process
        let thread = Thread { [self] in
            var pending: [UInt8] = []
            while true {
                let chunk = output.availableData
                if chunk.isEmpty { break }
                pending.append(contentsOf: chunk)
                var complete: [String] = []
                while let newline = pending.firstIndex(of: 0x0A) {
                    complete.append(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                condition.lock()
                lines.append(contentsOf: complete)
                condition.broadcast()
                condition.unlock()
            }
            condition.lock()
            ended = true
            condition.broadcast()
            condition.unlock()
        }
        thread.start()
    }

    /// Starts `executable`, reading its standard output (or its standard error).
    static func start(_ executable: URL, _ arguments: [String], stderr: Bool = false) throws -> Launched {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        if stderr { process.standardError = pipe } else { process.standardOutput = pipe }
        try process.run()
        return Launched(process: process, output: pipe.fileHandleForReading)
    }

    /// The next line not read yet, or nil once the pipe has ended.
    func readLine(timeout: TimeInterval = 60) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while consumed == lines.count && !ended && Date() < deadline { _ = condition.wait(until: deadline) }
        guard consumed < lines.count else { return nil }
        consumed += 1
        return lines[consumed - 1]
    }

    /// Reads lines until one contains `text`.
    func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while let line = readLine(timeout: max(0, deadline.timeIntervalSinceNow)) {
            if line.contains(text) { return true }
        }
        return false
    }

    /// The child's last lines, for an error message.
    func tail(_ count: Int = 20) -> String {
        condition.lock()
        defer { condition.unlock() }
        return lines.suffix(count).joined(separator: "\n")
    }
}
