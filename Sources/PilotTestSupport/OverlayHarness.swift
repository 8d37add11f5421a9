public import Foundation
public import PilotWire

/// A private overlay on 127.0.0.1 for tests: our `pilot-rendezvous` and official 1.18 daemons,
/// driven by the official `pilotctl --json`.
public final class OverlayHarness {
    public let official: OfficialPilot
    public let directory: TemporaryDirectory
    public let registryPort: UInt16
    public let beaconPort: UInt16
    public private(set) var rendezvous: ChildProcess?
    private var daemons: [String: ChildProcess] = [:]
    /// The registry each daemon was started with, where it is not the harness's own.
    private var daemonRegistries: [String: UInt16] = [:]
    private var restarts = 0

    /// Throws `OfficialPilot.Unavailable` where the official binaries cannot be had (tests skip).
    /// A harness with the rendezvous and one official daemon `name` running; returns its node id.
    public static func started(daemon name: String, extra: [String] = []) throws -> (OverlayHarness, UInt32) {
        let overlay = try OverlayHarness()
        do {
            try overlay.startRendezvous()
            return (overlay, try overlay.startDaemon(name, extra: extra))
        } catch {
            overlay.stopAll()
            throw error
        }
    }

    public init() throws {
        official = try OfficialPilot.binaries()
        directory = try TemporaryDirectory(prefix: "pilot-overlay")
        registryPort = try LoopbackSocket.freePort()
        beaconPort = try LoopbackSocket.freePort()
    }

    deinit { stopAll() }

    public var registryEndpoint: LoopbackEndpoint { LoopbackEndpoint(ip: [127, 0, 0, 1], port: registryPort) }
    public var beaconEndpoint: LoopbackEndpoint { LoopbackEndpoint(ip: [127, 0, 0, 1], port: beaconPort) }

    /// The `pilot-rendezvous` built beside the test bundle.
    public static var rendezvousBinary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pilot-rendezvous")
    }

    /// Starts `pilot-rendezvous`; with `tls`, the registry serves TLS with that PEM pair; `extra`
    /// arguments are passed on.
    public func startRendezvous(tls: (certificate: String, key: String)? = nil, extra: [String] = []) throws {
        restarts += 1
        let tlsArguments = tls.map { ["--tls", "--tls-cert", $0.certificate, "--tls-key", $0.key] } ?? []
        let process = try ChildProcess(
            name: "rendezvous-\(restarts)", executable: Self.rendezvousBinary,
            arguments: [
                "--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:\(beaconPort)",
                "--state-dir", directory.path("rendezvous"), "--log-level", "info",
            ] + tlsArguments + extra,
            logDirectory: directory.url)
        rendezvous = process
        let up = ChildProcess.waitUntil(timeout: 20) { process.output.contains("registry 127.0.0.1:\(registryPort)") }
        guard up else { throw HarnessError("pilot-rendezvous did not start:\n\(process.output)") }
    }

    public func stopRendezvous() {
        rendezvous?.stop()
        rendezvous = nil
    }

    /// Starts an official daemon named `name` (also its hostname) and waits until it answers.
    /// `registry` and `beacon` are ports on 127.0.0.1 other than the harness's rendezvous (a
    /// second instance's).
    @discardableResult
    public func startDaemon(
        _ name: String, extra: [String] = [], timeout: TimeInterval = 30, registry: UInt16? = nil, beacon: UInt16? = nil
    ) throws -> UInt32 {
        let home = directory.url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let process = try ChildProcess(
            name: name, executable: official.daemon,
            arguments: [
                "-registry", "127.0.0.1:\(registry ?? registryPort)", "-beacon", "127.0.0.1:\(beacon ?? beaconPort)",
                "-listen", "127.0.0.1:0", "-socket", socket(name), "-identity", home.appendingPathComponent("identity.json").path,
                "-hostname", name, "-telemetry-url", "", "-motd-feed-url", "",
            ] + extra,
            environment: ["HOME": home.path], logDirectory: directory.url)
        daemons[name] = process
        daemonRegistries[name] = registry
        var info: JSON?
        _ = ChildProcess.waitUntil(timeout: timeout, every: 0.2) {
            info = try? ctl(name, ["info"])
            return info != nil
        }
        guard let node = info?["node_id"]?.integerValue, let id = UInt32(exactly: node) else {
            throw HarnessError("pilot-daemon \(name) did not come up:\n\(process.output.suffix(3000))")
        }
        return id
    }

    public func socket(_ name: String) -> String { directory.path("\(name).sock") }

    /// Runs `pilotctl --json ARGS` as daemon `name`; returns the `data` of an ok envelope.
    /// `environment` adds to (or overrides) the daemon's.
    public func ctl(_ name: String, _ arguments: [String], timeout: TimeInterval = 60, environment: [String: String] = [:]) throws -> JSON {
        let result = ChildProcess.run(
            official.pilotctl.path, ["--json"] + arguments, environment: ctlEnvironment(name).merging(environment) { $1 }, timeout: timeout)
        let text = result.stdout.isEmpty ? result.output : result.stdout
        guard let envelope = try? JSON(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("pilotctl \(arguments.joined(separator: " ")) (exit \(result.status)): \(result.output.suffix(600))")
        }
        guard envelope["status"] == "ok", result.status == 0 else {
            throw HarnessError("pilotctl \(arguments.joined(separator: " ")) failed: \(text.suffix(600))")
        }
        return envelope["data"] ?? .null
    }

    /// Starts `pilotctl --json ARGS` as daemon `name` as a child process and returns at once
    /// (for commands that wait, like `subscribe`, while the test acts): its output is the
    /// process's, and it is killed when released (ChildProcess).
    public func startCtl(_ name: String, _ arguments: [String], label: String) throws -> ChildProcess {
        try ChildProcess(
            name: label, executable: official.pilotctl, arguments: ["--json"] + arguments, environment: ctlEnvironment(name),
            logDirectory: directory.url)
    }

    private func ctlEnvironment(_ name: String) -> [String: String] {
        [
            "HOME": directory.url.appendingPathComponent(name).path, "PILOT_SOCKET": socket(name),
            "PILOT_REGISTRY": "127.0.0.1:\(daemonRegistries[name] ?? registryPort)",
        ]
    }

    /// Polls `condition` every 0.2 s until it holds or `timeout` passes.
    public func eventually(_ what: String, timeout: TimeInterval = 45, _ condition: () throws -> Bool) throws {
        var lastError: (any Error)?
        let held = ChildProcess.waitUntil(timeout: timeout, every: 0.2) {
            do { return try condition() } catch {
                lastError = error
                return false
            }
        }
        guard held else { throw HarnessError("timed out waiting for \(what); last error: \(lastError.map { "\($0)" } ?? "none")") }
    }

    /// Sends one registry request over a fresh TCP connection and returns the reply.
    public func registryRequest(_ message: RegistryMessage) throws -> RegistryMessage {
        let connection = try LoopbackSocket.connect(to: registryEndpoint)
        try connection.write(RegistryFrame.encode(message))
        var decoder = RegistryFrameDecoder()
        if let frame = try connection.readFrame(timeout: 10) {
            decoder.append(frame)
            if case .message(let reply)? = try decoder.next() { return reply }
        }
        throw HarnessError("no registry reply to \(message.type)")
    }

    /// What daemon `name` has written to stdout and stderr so far.
    public func log(of name: String) -> String { daemons[name]?.output ?? "" }

    public func logs() -> String {
        ([rendezvous].compactMap { $0 } + daemons.values).map { "--- \($0.name)\n\($0.output.suffix(4000))" }
            .joined(separator: "\n")
    }

    public func stopAll() {
        for daemon in daemons.values { daemon.stop() }
        daemons.removeAll()
        stopRendezvous()
        directory.remove()
    }
}

public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
