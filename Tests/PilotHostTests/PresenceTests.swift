import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// An identity's presence on the network (`Presence`): a relay-only official daemon is reached
/// through the beacon, both ways.
final class PresenceTests: OfficialOverlayTestCase {
    /// An official daemon started `-relay-only` registers without an endpoint to hand out:
    /// alice's handshake goes through the registry, and everything after (pings, messages, a
    /// 2 MB file each way) through the beacon, 0x05 out and 0x06/0x09 in, both directions.
    func testARelayOnlyOfficialDaemonIsReachedThroughTheBeaconBothWays() throws {
        let overlay: OverlayHarness, daemon: UInt32
        do { (overlay, daemon) = try OverlayHarness.started(daemon: "alpha", extra: ["-relay-only", "-trust-auto-approve"]) } catch let error as OfficialPilot.Unavailable {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        defer { overlay.stopAll() }
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())", extra: ["--handshake-poll", "1", "--log-level", "info"])
        defer { host.stop() }
        func pilotctl(_ arguments: [String]) -> JSON? { self.pilotctl(overlay, arguments) }
        XCTAssertEqual(pilotctl(["identity", "create", "alice", "--hostname", "alice"])?["status"], "ok")

        // The registry hides the daemon's endpoint from everyone, trusted or not.
        let lookup = try overlay.ctl("alpha", ["lookup", "alpha"])
        XCTAssertNil(lookup["real_addr"], "\(lookup)")

        XCTAssertNotNil(pilotctl(["handshake", "\(daemon)", "relay me", "--identity", "alice"])?["data"])
        try overlay.eventually("alice and the daemon trust each other", timeout: 45) {
            pilotctl(["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.contains {
                $0["node_id"]?.integerValue == Int64(daemon) && $0["mutual"] == true
            } == true
        }
        let pinged = pilotctl(["ping", "\(daemon)", "--identity", "alice", "--count", "2"])
        let results = pinged?["data"]?["results"]?.arrayValue ?? []
        XCTAssertEqual(results.count, 2, "\(String(describing: pinged))\n\(host.output.suffix(3000))")
        XCTAssertTrue(results.allSatisfy { $0["error"] == nil }, "\(String(describing: pinged))")
        let peer = pilotctl(["peers", "--identity", "alice"])?["data"]?["peers"]?.arrayValue?.first { $0["node_id"]?.integerValue == Int64(daemon) }
        XCTAssertEqual(peer?["relay"], true, "\(String(describing: peer))")
        XCTAssertTrue(host.output.contains("relaying through the beacon"), host.output.suffix(3000).description)

        // Messages both ways.
        let sent = pilotctl(["send-message", "\(daemon)", "--data", "through the beacon", "--identity", "alice"])
        XCTAssertEqual(sent?["data"]?["ack"], "ACK TEXT 18 bytes", "\(String(describing: sent))")
        let theirs = try overlay.ctl("alpha", ["inbox"])
        XCTAssertEqual(theirs["messages"]?.arrayValue?.first?["preview"], "through the beacon", "\(theirs)")
        let reply = try overlay.ctl("alpha", ["send-message", "alice", "--data", "and back"])
        XCTAssertEqual(reply["ack"], "ACK TEXT 8 bytes", "\(reply)")
        let inbox = pilotctl(["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue ?? []
        XCTAssertEqual(inbox.map { $0["data"]?.stringValue }, ["and back"])

        // 2 MB each way, byte for byte.
        try filesBothWays(overlay, to: "\(daemon)", daemon: daemon, outgoing: 2_000_000, incoming: 2_000_000, seed: 55)
    }
}
