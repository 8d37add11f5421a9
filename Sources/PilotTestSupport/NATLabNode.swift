public import Foundation
import PilotClient
public import PilotWire

/// One end of a NAT lab case: pilot-host with one identity, or an official 1.18 daemon, in the
/// host namespace behind one of the lab's routers, tunnelling on port 37000 of the host's LAN
/// address, with the rendezvous at the lab's wan address. Driven by the pilotctl that belongs to
/// it; stopped by `stop()` or on deinit.
public final class NATLabNode: @unchecked Sendable {
    // @unchecked: every field is fixed at init; the process is a ChildProcess.

    /// Which daemon an end runs.
    public enum Software: String, Sendable, CustomStringConvertible {
        case pilotHost = "pilot-host"
        case official = "1.18"

        public var description: String { rawValue }
    }

    /// How an end reaches a peer, as its `pilotctl peers` says: `path` where the host reports one,
    /// else `relay` true or false.
    public enum Path: String, Sendable, CustomStringConvertible {
        case direct
        case relay

        /// The path of `entry`, an element of `peers`' list.
        public init?(peer entry: JSON) {
            if let path = entry["path"]?.stringValue {
                self.init(rawValue: path)
            } else if let relayed = entry["relay"]?.boolValue {
                self = relayed ? .relay : .direct
            } else {
                return nil
            }
        }

        public var description: String { rawValue }
    }

    /// The UDP port every end tunnels on, at its host's LAN address.
    public static let tunnelPort = 37000
    /// The rendezvous' ports, at the lab's wan address.
    public static let registryPort = 9000
    public static let beaconPort = 9001

    public let software: Software
    /// The identity's name (pilot-host) or the daemon's hostname (1.18).
    public let name: String
    public let node: UInt32
    public let router: NATLab.Router
    public let process: ChildProcess
    /// pilot-host's directory (state and runtime), or the daemon's HOME.
    private let home: URL
    private let pilotctl: URL
    /// What the official pilotctl needs to find its daemon (empty for pilot-host).
    private let environment: [String: String]

    /// pilot-host with identity `name` (accepting every handshake with `autoApprove`) behind
    /// `router`; its files under `directory`.
    public static func pilotHost(_ name: String, behind router: NATLab.Router, of lab: NATLab, autoApprove: Bool, directory: URL) throws -> NATLabNode {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let home = directory.appendingPathComponent(name)
        let rendezvous = lab.wan.address
        let (executable, arguments) = lab.command(
            in: router.host.name, bin.appendingPathComponent("pilot-host").path,
            ["--state-dir", home.appendingPathComponent("state").path, "--runtime-dir", home.appendingPathComponent("run").path,
             "--registry", "\(rendezvous):\(registryPort)", "--beacon", "\(rendezvous):\(beaconPort)",
             "--listen", "\(router.host.address):\(tunnelPort)", "--handshake-poll", "1", "--log-level", "info"])
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let process = try ChildProcess(name: name, executable: executable, arguments: arguments, logDirectory: directory)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains("pilot-host serving") }) else {
            process.stop()
            throw HarnessError("pilot-host \(name) did not start:\n\(process.output.suffix(2000))")
        }
        let pilotctl = bin.appendingPathComponent("pilotctl")
        let create = ["identity", "create", name] + (autoApprove ? ["--auto-approve"] : [])
        let created = run(pilotctl, create + ["--json", "--runtime-dir", home.appendingPathComponent("run").path], environment: [:])
        guard let node = created?["node_id"]?.integerValue.flatMap({ UInt32(exactly: $0) }) else {
            process.stop()
            throw HarnessError("pilot-host \(name): identity create failed:\n\(process.output.suffix(2000))")
        }
        return NATLabNode(software: .pilotHost, name: name, node: node, router: router, process: process, home: home, pilotctl: pilotctl, environment: [:])
    }

    /// An official 1.18 daemon with hostname `name` (accepting every handshake with
    /// `autoApprove`) behind `router`; its HOME under `directory`.
    public static func official(
        _ name: String, binaries: OfficialPilot, behind router: NATLab.Router, of lab: NATLab, autoApprove: Bool, directory: URL
    ) throws -> NATLabNode {
        let home = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let rendezvous = lab.wan.address
        let (executable, arguments) = lab.command(
            in: router.host.name, binaries.daemon.path,
            ["-registry", "\(rendezvous):\(registryPort)", "-beacon", "\(rendezvous):\(beaconPort)",
             "-listen", "\(router.host.address):\(tunnelPort)", "-socket", home.appendingPathComponent("pilot.sock").path,
             "-identity", home.appendingPathComponent("identity.json").path, "-hostname", name,
             "-telemetry-url", "", "-motd-feed-url", ""] + (autoApprove ? ["-trust-auto-approve"] : []))
        let process = try ChildProcess(name: name, executable: executable, arguments: arguments, environment: ["HOME": home.path], logDirectory: directory)
        let environment = [
            "HOME": home.path, "PILOT_SOCKET": home.appendingPathComponent("pilot.sock").path, "PILOT_REGISTRY": "\(rendezvous):\(registryPort)",
        ]
        var node: UInt32?
        _ = ChildProcess.waitUntil(timeout: 30, every: 0.2) {
            node = run(binaries.pilotctl, ["--json", "info"], environment: environment)?["node_id"]?.integerValue
                .flatMap { UInt32(exactly: $0) }
            return node != nil
        }
        guard let node else {
            process.stop()
            throw HarnessError("pilot-daemon \(name) did not come up:\n\(process.output.suffix(2000))")
        }
        return NATLabNode(
            software: .official, name: name, node: node, router: router, process: process, home: home, pilotctl: binaries.pilotctl,
            environment: environment)
    }

    private init(
        software: Software, name: String, node: UInt32, router: NATLab.Router, process: ChildProcess, home: URL, pilotctl: URL,
        environment: [String: String]
    ) {
        self.software = software
        self.name = name
        self.node = node
        self.router = router
        self.process = process
        self.home = home
        self.pilotctl = pilotctl
        self.environment = environment
    }

    deinit { stop() }

    public func stop() { process.stop() }

    /// `pilotctl ARGS` as this end, in JSON: the `data` of an ok reply, or an error saying what
    /// came back instead. Bounded by `timeout` seconds.
    public func ctl(_ arguments: [String], timeout: TimeInterval = 30) throws -> JSON {
        let envelope: JSON?
        switch software {
        case .pilotHost:
            envelope = Self.envelope(pilotctl, arguments + ["--identity", name, "--json", "--runtime-dir", runtime], environment: [:], timeout: timeout)
        case .official:
            envelope = Self.envelope(pilotctl, ["--json"] + arguments, environment: environment, timeout: timeout)
        }
        guard let envelope, envelope["status"] == "ok" else {
            throw HarnessError("\(name): pilotctl \(arguments.joined(separator: " ")): \(envelope?.encodedString() ?? "no JSON")")
        }
        return envelope["data"] ?? .null
    }

    /// Asks `peer` for trust.
    public func handshake(_ peer: UInt32) throws {
        _ = try ctl(["handshake", "\(peer)", "nat lab"])
    }

    /// Whether this end lists `peer` among those it trusts.
    public func trusts(_ peer: UInt32) -> Bool {
        (try? ctl(["trust"]))?["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == Int64(peer) } == true
    }

    /// What this end's `peers` says of `peer` (nil while it lists no tunnel to it), asked over
    /// `connection` where one is given.
    func peerEntry(_ peer: UInt32, over connection: ControlConnection? = nil) -> JSON? {
        let listing: JSON?
        if let connection, case .ok(let data)? = try? connection.request(ControlRequest("peers")) {
            listing = data
        } else {
            listing = try? ctl(["peers"], timeout: 5)
        }
        return listing?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == Int64(peer) }
    }

    /// A control connection to pilot-host's identity, kept open by whoever asks often (a
    /// `NATLabPathWatch`); nil for an official daemon, whose pilotctl is run each time.
    func controlConnection() -> ControlConnection? {
        guard software == .pilotHost else { return nil }
        return try? ControlConnection(path: "\(runtime)/id/\(name).sock")
    }

    /// Sends `text` to `peer`'s data-exchange port and returns once it is acknowledged; throws
    /// when it is not within `timeout` seconds.
    public func sendMessage(_ text: String, to peer: UInt32, timeout: TimeInterval = 30) throws {
        let sent = try ctl(["send-message", "\(peer)", "--data", text], timeout: timeout)
        guard sent["ack"]?.stringValue == "ACK TEXT \(text.utf8.count) bytes" else {
            throw HarnessError("\(name): send-message to \(peer) was not acknowledged: \(sent)")
        }
    }

    /// Sends `file` to `peer`'s data-exchange port; returns the seconds from the send until
    /// its acknowledgement (pilot-host's upload of the file to the host comes first, untimed),
    /// calling `whenSending` as the send starts. Throws when it is not acknowledged in full;
    /// after `timeout` seconds the end is killed.
    public func sendFile(
        _ file: URL, to peer: UInt32, timeout: TimeInterval = 150, whenSending: (@Sendable () -> Void)? = nil
    ) throws -> TimeInterval {
        let bytes = try Data(contentsOf: file)
        let expected = "ACK FILE \(bytes.count) bytes"
        switch software {
        case .official:
            whenSending?()
            let started = Date()
            let sent = try ctl(["send-file", "\(peer)", file.path], timeout: timeout)
            let elapsed = Date().timeIntervalSince(started)
            // 1.18 answers with the ACK text, or (over its file stream) with a checked hash.
            let acknowledged = sent["ack"]?.stringValue == expected
                || (sent["verified"] == true && sent["bytes_sent"]?.integerValue == Int64(bytes.count))
            guard acknowledged else { throw HarnessError("\(name): send-file to \(peer): \(sent.encodedString())") }
            return elapsed
        case .pilotHost:
            // Through the SDK, so the time is the network's and not pilotctl's upload.
            return try bounded(timeout) { [name, runtime] in
                let connection = try ControlConnection(path: "\(runtime)/id/\(name).sock")
                let upload = "natlab\(UInt64.random(in: 0...UInt64.max))"
                for offset in stride(from: 0, to: bytes.count, by: FileChunk.size) {
                    let piece = bytes[offset..<min(offset + FileChunk.size, bytes.count)]
                    let command = MessageControl.Upload(upload: upload, size: bytes.count, offset: offset, data: Base64.encode(piece))
                    _ = try MessageControl.Upload.data(of: connection.request(command.request))
                }
                whenSending?()
                let started = Date()
                let command = MessageControl.SendFile(target: "\(peer)", file: file.lastPathComponent, upload: upload)
                let sent = try MessageControl.SendFile.data(of: connection.request(command.request))
                let elapsed = Date().timeIntervalSince(started)
                guard sent.ack == expected else { throw HarnessError("\(name): send-file to \(peer) got \(sent.ack)") }
                return elapsed
            }
        }
    }

    /// The file named `name` that arrived here (nil if none did), saved into `directory` first
    /// where pilot-host keeps it.
    public func receivedFile(named name: String, savingInto directory: URL) throws -> Data? {
        switch software {
        case .pilotHost:
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            _ = try ctl(["received", "--save", directory.path, "--clear"], timeout: 60)
            return try? Data(contentsOf: directory.appendingPathComponent(name))
        case .official:
            // 1.18 keeps what arrives in ~/.pilot/received, under a name made from the sent one.
            let received = home.appendingPathComponent(".pilot/received")
            let stem = (name as NSString).deletingPathExtension
            let found = (try? FileManager.default.contentsOfDirectory(atPath: received.path))?.filter { $0.hasPrefix(stem) } ?? []
            guard found.count == 1, let only = found.first else { return nil }
            return try? Data(contentsOf: received.appendingPathComponent(only))
        }
    }

    /// Runs `body` on another thread and waits at most `seconds` for it; past that the end is
    /// killed (so a control call that waits on it returns) and the wait is an error.
    private func bounded<T: Sendable>(_ seconds: TimeInterval, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome<T>()
        DispatchQueue.global().async {
            outcome.set(Result { try body() })
            done.signal()
        }
        if done.wait(timeout: .now() + seconds) == .timedOut {
            process.kill9()
            done.wait()
            throw HarnessError("\(name): no answer within \(Int(seconds)) s (killed)")
        }
        return try outcome.get()
    }

    private var runtime: String { home.appendingPathComponent("run").path }

    /// The `data` of an ok envelope from `pilotctl ARGS`, or nil.
    private static func run(_ pilotctl: URL, _ arguments: [String], environment: [String: String]) -> JSON? {
        let envelope = envelope(pilotctl, arguments, environment: environment, timeout: 30)
        return envelope?["status"] == "ok" ? envelope?["data"] : nil
    }

    private static func envelope(_ pilotctl: URL, _ arguments: [String], environment: [String: String], timeout: TimeInterval) -> JSON? {
        let result = ChildProcess.run(pilotctl.path, arguments, environment: environment, timeout: timeout)
        let text = result.stdout.isEmpty ? result.output : result.stdout
        return try? JSON(parsing: Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
    }
}

/// A result handed from one thread to another.
private final class Outcome<T: Sendable>: @unchecked Sendable {
    // @unchecked: `result` is guarded by `lock`.
    private let lock = NSLock()
    private var result: Result<T, any Error>?

    func set(_ result: Result<T, any Error>) {
        lock.lock()
        defer { lock.unlock() }
        self.result = result
    }

    func get() throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard let result else { throw HarnessError("no result") }
        return try result.get()
    }
}
