import Foundation
import PilotClient
import PilotStore
import PilotWire

/// `pilot-bench fleet`: disposable agents' identities made and ended as fast as a fleet makes
/// them. A real pilot-rendezvous (its default limits, an admin token) and pilot-host (the host
/// credential derived from that token: its registrations are the operator's, not the anonymous
/// per-address budget's); `lanes` admin connections each create an identity leased to this
/// process, then delete it, `cycles` times in all. Prints the rate, and host.db's and
/// registry.db's sizes as the cycles go on: a fleet that turns over must not grow either.
struct FleetBench {
    let cycles: Int
    let lanes: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench fleet: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-fleet-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        setenv("PILOT_ADMIN_TOKEN", token, 1)
        let credential = try Self.hostCredential(bin: bin)
        let credentialFile = work.path + "/registry-credential"
        try Data((credential + "\n").utf8).write(to: URL(fileURLWithPath: credentialFile))

        let rendezvousState = work.path + "/rdv"
        let rendezvous = try Launched.start(
            bin.appendingPathComponent("pilot-rendezvous"),
            ["--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--state-dir", rendezvousState, "--log-level", "warning"])
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }
        guard let line = rendezvous.readLine(), line.hasPrefix("registry ") else { throw BenchError("pilot-rendezvous did not start") }
        let registry = String(line.dropFirst("registry ".count))

        let runtime = FileManager.default.isWritableFile(atPath: "/dev/shm") ? "/dev/shm/pilot-bench-fleet-\(getpid())" : work.path + "/run"
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        let state = work.path + "/state"
        let host = try Launched.start(
            bin.appendingPathComponent("pilot-host"),
            ["--state-dir", state, "--runtime-dir", runtime, "--registry", registry, "--registry-credential-file", credentialFile,
             "--listen", "127.0.0.1:0", "--beacon", "127.0.0.1:1", "--log-level", "warning"], stderr: true)
        defer { host.process.terminate(); host.process.waitUntilExit() }
        guard Self.waitForSocket(runtime + "/admin.sock", timeout: 60) else { throw BenchError("pilot-host did not start: \(host.tail())") }

        print("fleet: \(cycles) leased identities created and deleted over \(lanes) admin connections (host credential)")
        let sizes = SizeLog(state: state, rendezvous: rendezvousState)
        sizes.note(after: 0)
        let checkpoints = Set([cycles / 10, cycles / 2, cycles].filter { $0 > 0 })
        let done = Counter()
        let failure = FailureBox()
        let start = Date()
        // A thread per lane: concurrentPerform would run only as many lanes as there are cores,
        // and each lane mostly waits for its replies.
        let finished = DispatchGroup()
        for lane in 0..<lanes {
            finished.enter()
            Thread {
            defer { finished.leave() }
            do {
                let admin = try ControlConnection(path: runtime + "/admin.sock")
                for index in stride(from: lane, to: cycles, by: lanes) {
                    let name = "fleet-\(index)"
                    do {
                        _ = try admin.send(AdminControl.CreateIdentity(identity: name, owner: "0", lease: .caller))
                        _ = try admin.send(AdminControl.DeleteIdentity(identity: name))
                    } catch let failure as ControlFailure { throw BenchError("cycle \(index) failed: \(failure)") }
                    let finished = done.increment()
                    if checkpoints.contains(finished) { sizes.note(after: finished, seconds: Date().timeIntervalSince(start)) }
                }
            } catch {
                failure.set(error)
            }
            }.start()
        }
        finished.wait()
        if let error = failure.error { throw BenchError("\(error)\npilot-host's last lines:\n\(host.tail())") }
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "  %.0f create+delete cycles /s (%d in %.2f s)", Double(cycles) / seconds, cycles, seconds))
        sizes.print()
        let identities = try Database(path: state + "/host.db").rows("SELECT count(*) FROM identity").first?[0].integer ?? -1
        print("  host.db identities left: \(identities)")
    }

    /// The host credential pilot-rendezvous derives from `$PILOT_ADMIN_TOKEN`.
    private static func hostCredential(bin: URL) throws -> String {
        let process = Process()
        process.executableURL = bin.appendingPathComponent("pilot-rendezvous")
        process.arguments = ["--print-host-credential"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let credential = output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0, !credential.isEmpty else { throw BenchError("no host credential: \(output)") }
        return credential
    }

    private static func waitForSocket(_ path: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? ControlConnection(path: path)) != nil { return true }
            usleep(50_000)
        }
        return false
    }
}

/// The sizes of host.db and registry.db (with their WAL files), noted as the cycles go on.
private final class SizeLog: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private let state: String
    private let rendezvous: String
    private var rows: [String] = []

    init(state: String, rendezvous: String) {
        self.state = state
        self.rendezvous = rendezvous
    }

    func note(after cycles: Int, seconds: TimeInterval = 0) {
        let host = Self.bytes(state + "/host.db")
        let registry = Self.bytes(rendezvous + "/registry.db")
        let row = String(format: "  after %7d cycles (%6.1f s): host.db %6d KiB, registry.db %6d KiB", cycles, seconds, host >> 10, registry >> 10)
        lock.lock()
        rows.append(row)
        lock.unlock()
    }

    func print() {
        lock.lock()
        defer { lock.unlock() }
        for row in rows { Swift.print(row) }
    }

    /// A database's bytes on disk: the file and its write-ahead log.
    private static func bytes(_ path: String) -> Int {
        [path, path + "-wal"].reduce(0) { total, file in
            total + ((try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0)
        }
    }
}

/// A count shared by threads.
private final class Counter: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var value = 0

    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value
    }
}
