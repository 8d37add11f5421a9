public import Foundation

/// A child process started by a test, with its output captured in a file.
///
/// Every child is killed when the value is stopped or deinitialised, so a failing test leaves no
/// daemon behind.
public final class ChildProcess: @unchecked Sendable {
    // @unchecked: `process` is only mutated by Foundation internally; the rest is immutable.
    public let process: Process
    /// Where stdout and stderr go.
    public let logFile: URL
    public let name: String

    /// Starts `executable` with `arguments`; `environment` entries are added to (or replace) the
    /// inherited ones.
    public init(
        name: String, executable: URL, arguments: [String],
        environment: [String: String] = [:], logDirectory: URL
    ) throws {
        self.name = name
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        logFile = logDirectory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logFile)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit { stop() }

    public var isRunning: Bool { process.isRunning }
    public var pid: Int32 { process.processIdentifier }

    /// The captured output so far.
    public var output: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// SIGTERM, then SIGKILL after `grace` seconds if it is still there.
    public func stop(grace: TimeInterval = 3) {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// SIGKILL at once, as a crash would.
    public func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits until `condition` holds or `timeout` passes; returns whether it held.
    public static func waitUntil(
        timeout: TimeInterval, every interval: TimeInterval = 0.05, _ condition: () throws -> Bool
    ) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if try condition() { return true }
            usleep(useconds_t(interval * 1_000_000))
        } while Date() < deadline
        return try condition()
    }

    /// The result of a short command run to completion.
    public struct Result: Sendable {
        public let status: Int32
        /// stdout and stderr together.
        public let output: String
        public let stdout: String

        public init(status: Int32, output: String, stdout: String) {
            self.status = status
            self.output = output
            self.stdout = stdout
        }
    }

    /// Runs a short command to completion, killing it after `timeout` seconds (status -9).
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        timeout: TimeInterval = 60
    ) -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            return Result(status: -1, output: "could not start \(executable): \(error)", stdout: "")
        }
        // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
        let collected = Collected()
        let group = DispatchGroup()
        for (pipe, isStdout) in [(out, true), (err, false)] {
            group.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.append(data, isStdout: isStdout)
                group.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        var killed = false
        while process.isRunning {
            if Date() >= deadline {
                kill(process.processIdentifier, SIGKILL)
                killed = true
                break
            }
            usleep(10_000)
        }
        process.waitUntilExit()
        group.wait()
        return Result(
            status: killed ? -9 : process.terminationStatus,
            output: collected.stdout + collected.stderr, stdout: collected.stdout)
    }
}

/// Output gathered from two pipes on two threads.
private final class Collected: @unchecked Sendable {
    // @unchecked: every access goes through `lock`.
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()

    func append(_ data: Data, isStdout: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if isStdout { out.append(data) } else { err.append(data) }
    }

    var stdout: String { lock.lock(); defer { lock.unlock() }; return String(decoding: out, as: UTF8.self) }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: err, as: UTF8.self) }
}

/// A directory under the system temp dir, removed with everything in it on `remove()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL

    public init(prefix: String = "pilot-test") throws {
        // Unix socket paths are limited to 108 bytes: keep the prefix short, under /tmp.
        let template = "/tmp/\(prefix).XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else {
            throw CocoaError(.fileWriteUnknown)
        }
        url = URL(fileURLWithPath: String(cString: made))
    }

    public func path(_ component: String) -> String {
        url.appendingPathComponent(component).path
    }

    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}
