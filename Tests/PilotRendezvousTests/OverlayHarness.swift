import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// A private overlay on 127.0.0.1 for tests: our `pilot-rendezvous` and official 1.18 daemons,
/// driven by the official `pilotctl --json`.
final class OverlayHarness {
    let official: OfficialPilot
    let directory: TemporaryDirectory
    let registryPort: UInt16
    let beaconPort: UInt16
    private(set) var rendezvous: ChildProcess?
    private var daemons: [String: ChildProcess] = [:]
    private var restarts = 0

    init() throws {
        do { official = try OfficialPilot.binaries() } catch {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        directory = try TemporaryDirectory(prefix: "pilot-overlay")
        registryPort = try LoopbackSocket.freePort()
        beaconPort = try LoopbackSocket.freePort()
    }

    deinit { stopAll() }

    var registryEndpoint: LoopbackEndpoint { LoopbackEndpoint(ip: [127, 0, 0, 1], port: registryPort) }
    var beaconEndpoint: LoopbackEndpoint { LoopbackEndpoint(ip: [127, 0, 0, 1], port: beaconPort) }

    /// The `pilot-rendezvous` built beside the test bundle.
    static var rendezvousBinary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pilot-rendezvous")
    }

    /// Starts `pilot-rendezvous`; with `tls`, the registry serves TLS with that PEM pair.
    func startRendezvous(tls: (certificate: String, key: String)? = nil) throws {
        restarts += 1
        let tlsArguments = tls.map { ["--tls", "--tls-cert", $0.certificate, "--tls-key", $0.key] } ?? []
        let process = try ChildProcess(
            name: "rendezvous-\(restarts)", executable: Self.rendezvousBinary,
            arguments: [
                "--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:\(beaconPort)",
                "--state-dir", directory.path("rendezvous"), "--log-level", "info",
            ] + tlsArguments,
            logDirectory: directory.url)
        rendezvous = process
        let up = ChildProcess.waitUntil(timeout: 20) { process.output.contains("registry 127.0.0.1:\(registryPort)") }
        guard up else { throw HarnessError("pilot-rendezvous did not start:\n\(process.output)") }
    }

    func stopRendezvous() {
        rendezvous?.stop()
        rendezvous = nil
    }

    /// Starts an official daemon named `name` (also its hostname) and waits until it answers.
    @discardableResult
    func startDaemon(_ name: String, extra: [String] = [], timeout: TimeInterval = 30) throws -> UInt32 {
        let home = directory.url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let process = try ChildProcess(
            name: name, executable: official.daemon,
            arguments: [
                "-registry", "127.0.0.1:\(registryPort)", "-beacon", "127.0.0.1:\(beaconPort)",
                "-listen", "127.0.0.1:0", "-socket", socket(name), "-identity", home.appendingPathComponent("identity.json").path,
                "-hostname", name, "-telemetry-url", "", "-motd-feed-url", "",
            ] + extra,
            environment: ["HOME": home.path], logDirectory: directory.url)
        daemons[name] = process
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

    func socket(_ name: String) -> String { directory.path("\(name).sock") }

    /// Runs `pilotctl --json ARGS` as daemon `name`; returns the `data` of an ok envelope.
    func ctl(_ name: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> JSON {
        let home = directory.url.appendingPathComponent(name).path
        let result = ChildProcess.run(
            official.pilotctl.path, ["--json"] + arguments,
            environment: [
                "HOME": home, "PILOT_SOCKET": socket(name), "PILOT_REGISTRY": "127.0.0.1:\(registryPort)",
            ], timeout: timeout)
        let text = result.stdout.isEmpty ? result.output : result.stdout
        guard let envelope = try? JSON(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("pilotctl \(arguments.joined(separator: " ")) (exit \(result.status)): \(result.output.suffix(600))")
        }
        guard envelope["status"] == "ok", result.status == 0 else {
            throw HarnessError("pilotctl \(arguments.joined(separator: " ")) failed: \(text.suffix(600))")
        }
        return envelope["data"] ?? .null
    }

    /// Polls `condition` every 0.2 s until it holds or `timeout` passes.
    func eventually(_ what: String, timeout: TimeInterval = 45, _ condition: () throws -> Bool) throws {
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
    func registryRequest(_ message: RegistryMessage) throws -> RegistryMessage {
        let connection = try LoopbackSocket.connect(to: registryEndpoint)
        try connection.write(RegistryFrame.encode(message))
        var decoder = RegistryFrameDecoder()
        if let frame = try connection.readFrame(timeout: 10) {
            decoder.append(frame)
            if case .message(let reply)? = try decoder.next() { return reply }
        }
        throw HarnessError("no registry reply to \(message.type)")
    }

    func logs() -> String {
        ([rendezvous].compactMap { $0 } + daemons.values).map { "--- \($0.name)\n\($0.output.suffix(4000))" }
            .joined(separator: "\n")
    }

    func stopAll() {
        for daemon in daemons.values { daemon.stop() }
        daemons.removeAll()
        stopRendezvous()
        directory.remove()
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
