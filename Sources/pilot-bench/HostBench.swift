import Foundation
import PilotClient
import PilotWire

/// pilot-host figures: identity creation rate (each registered with a real pilot-rendezvous),
/// cold start time (process start to "pilot-host serving": every identity loaded, re-registered
/// and its socket open) and resident memory, at the given numbers of identities.
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
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-host-\(getpid())-\(count)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }

        let rendezvous = try launch(
            bin.appendingPathComponent("pilot-rendezvous"),
            ["--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--state-dir", work.path + "/rdv",
             "--new-keys-per-second", "1000000", "--connection-requests-per-second", "1000000", "--log-level", "warning"])
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }
        guard let line = rendezvous.readLine(), line.hasPrefix("registry ") else { throw BenchError("pilot-rendezvous did not start") }
        let registry = String(line.dropFirst("registry ".count))

        let arguments = ["--state-dir", work.path + "/state", "--runtime-dir", work.path + "/run", "--registry", registry,
                         "--listen", "127.0.0.1:37000", "--log-level", "info"]
        var host = try launch(bin.appendingPathComponent("pilot-host"), arguments, stderr: true)
        guard host.waitFor("pilot-host serving", timeout: 60) else { throw BenchError("pilot-host did not start") }

        let client = try ControlConnection(path: work.path + "/run/admin.sock")
        let start = Date()
        for index in 0..<count {
            let reply = try client.request(ControlRequest("identity.create", ["name": .string("agent\(index)"), "owner": "0"]))
            guard case .ok = reply else { throw BenchError("create \(index) failed: \(reply.json.encodedString())") }
        }
        let rate = Double(count) / Date().timeIntervalSince(start)
        let warmRSS = rss(host.process.processIdentifier)

        host.process.terminate()
        host.process.waitUntilExit()
        let coldStart = Date()
        host = try launch(bin.appendingPathComponent("pilot-host"), arguments, stderr: true)
        guard host.waitFor("pilot-host serving", timeout: 600) else { throw BenchError("pilot-host did not restart") }
        let cold = Date().timeIntervalSince(coldStart)
        let coldRSS = rss(host.process.processIdentifier)
        host.process.terminate()
        host.process.waitUntilExit()
        print(String(
            format: "%7d identities: create %6.0f /s   cold start %6.2f s   RSS %7d KiB after creating, %7d KiB after cold start (%.1f KiB/identity)",
            count, rate, cold, warmRSS, coldRSS, Double(coldRSS) / Double(count)))
    }

    private func rss(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return -1 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    private func launch(_ executable: URL, _ arguments: [String], stderr: Bool = false) throws -> Launched {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        if stderr { process.standardError = pipe } else { process.standardOutput = pipe }
        try process.run()
        return Launched(process: process, output: pipe.fileHandleForReading)
    }
}

/// A child process and the pipe it writes to.
struct Launched {
    let process: Process
    let output: FileHandle

    func readLine() -> String? {
        var bytes: [UInt8] = []
        while bytes.last != 0x0A {
            guard let byte = output.readData(ofLength: 1).first else { return nil }
            bytes.append(byte)
        }
        return String(decoding: bytes.dropLast(), as: UTF8.self)
    }

    /// Reads lines until one contains `text`.
    func waitFor(_ text: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let line = readLine() else { return false }
            if line.contains(text) { return true }
        }
        return false
    }
}
