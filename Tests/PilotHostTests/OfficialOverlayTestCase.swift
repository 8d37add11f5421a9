import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// What the tests of pilot-host's identities on the network with the official 1.18 daemon share:
/// our rendezvous and an official daemon "alpha" (`OverlayHarness`), pilot-host as a process on
/// it, our pilotctl, and a file sent both ways and compared byte for byte.
class OfficialOverlayTestCase: XCTestCase {
    var processes: [ChildProcess] = []
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

    override func tearDown() {
        for process in processes { process.stop() }
    }

    /// Our rendezvous and a public official daemon "alpha" (or a skip where it cannot run).
    func overlay(public isPublic: Bool = true) throws -> (OverlayHarness, UInt32) {
        do { return try OverlayHarness.started(daemon: "alpha", extra: isPublic ? ["-public"] : []) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
    }

    /// pilot-host as a process on the overlay, its state and runtime in the overlay's directory;
    /// `registry` and `beacon` replace the overlay's rendezvous (lists, `A, B`).
    func startHost(
        _ overlay: OverlayHarness, listen: String, generation: Int = 1, registry: String? = nil, beacon: String? = nil, extra: [String] = []
    ) throws -> ChildProcess {
        let host = try ChildProcess(
            name: "pilot-host-\(generation)", executable: bin.appendingPathComponent("pilot-host"),
            arguments: [
                "--state-dir", overlay.directory.path("state"), "--runtime-dir", overlay.directory.path("run"),
                "--registry", registry ?? "127.0.0.1:\(overlay.registryPort)", "--beacon", beacon ?? "127.0.0.1:\(overlay.beaconPort)",
                "--listen", listen,
            ] + extra,
            logDirectory: overlay.directory.url)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { host.output.contains("pilot-host serving") }, host.output)
        return host
    }

    /// A file of `outgoing` random bytes from alice to the daemon "alpha" (named `target`), into
    /// its ~/.pilot/received, and one of `incoming` bytes from the daemon into alice's received
    /// files (saved, then cleared): both compared byte for byte.
    func filesBothWays(_ overlay: OverlayHarness, to target: String, daemon: UInt32, outgoing: Int, incoming: Int, seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let outgoingBytes = (0..<outgoing).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let outgoingPath = overlay.directory.path("report.bin")
        try Data(outgoingBytes).write(to: URL(fileURLWithPath: outgoingPath))
        let sentFile = pilotctl(overlay, ["send-file", target, outgoingPath, "--identity", "alice"])
        XCTAssertEqual(sentFile?["data"]?["ack"], .string("ACK FILE \(outgoing) bytes"), "\(String(describing: sentFile))")
        let theirFiles = overlay.directory.url.appendingPathComponent("alpha/.pilot/received")
        let arrived = (try? FileManager.default.contentsOfDirectory(atPath: theirFiles.path).filter { $0.hasPrefix("report") }) ?? []
        XCTAssertEqual(arrived.count, 1, "\(arrived)")
        XCTAssertEqual(try? Data(contentsOf: theirFiles.appendingPathComponent(arrived.first ?? "-")), Data(outgoingBytes))
        let incomingBytes = (0..<incoming).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let incomingPath = overlay.directory.path("data.bin")
        try Data(incomingBytes).write(to: URL(fileURLWithPath: incomingPath))
        _ = try overlay.ctl("alpha", ["send-file", "alice", incomingPath])
        let saved = overlay.directory.path("saved")
        try FileManager.default.createDirectory(atPath: saved, withIntermediateDirectories: true)
        let listing = pilotctl(overlay, ["received", "--identity", "alice", "--save", saved, "--clear"])?["data"]?["files"]?.arrayValue ?? []
        XCTAssertEqual(listing.first?["name"], "data.bin", "\(listing)")
        XCTAssertEqual(listing.first?["bytes"], .integer(Int64(incoming)))
        XCTAssertEqual(listing.first?["from"]?.stringValue, Address(node: daemon).description)
        XCTAssertEqual(try? Data(contentsOf: URL(fileURLWithPath: saved + "/data.bin")), Data(incomingBytes))
    }

    /// Our pilotctl with --json against the overlay's host; the parsed envelope.
    func pilotctl(_ overlay: OverlayHarness, _ arguments: [String]) -> JSON? {
        runPilotctl(arguments, runtime: overlay.directory.path("run"), timeout: 60)
    }
}
