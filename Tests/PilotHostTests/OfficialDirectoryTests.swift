import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// The directory agent as the official 1.18 client asks it: `pilotctl send-message list-agents
/// --data '/data {...}' --wait` on an official daemon, and on a pilot-host identity through the
/// official pilotctl (the driver protocol and the inbox spool).
final class OfficialDirectoryTests: OfficialOverlayTestCase {
    func testTheOfficialPilotctlGetsTheDirectorysAnswer() throws {
        let overlay: OverlayHarness
        do { overlay = try OverlayHarness() } catch let error as OfficialPilot.Unavailable { throw XCTSkip("official pilot-daemon unavailable: \(error)") }
        defer { overlay.stopAll() }
        try overlay.startRendezvous(extra: ["--directory-addr", "127.0.0.1:0"])
        _ = try overlay.startDaemon("alpha")
        processes.append(try startHost(overlay, listen: "127.0.0.1:0", extra: ["--spool-dir", overlay.directory.path("spool")]))
        for arguments in [
            ["identity", "create", "forecaster", "--hostname", "forecaster", "--tags", "weather"],
            ["identity", "create", "alice"],
        ] {
            XCTAssertEqual(pilotctl(overlay, arguments)?["status"], "ok")
        }
        let published = pilotctl(overlay, ["--identity", "forecaster", "directory", "publish", "--description", "Weather forecasts", "--category", "data"])
        XCTAssertEqual(published?["data"]?["listed"], true, "\(String(describing: published))")

        // The official daemon asks.
        let sent = try overlay.ctl("alpha", ["send-message", "list-agents", "--data", "/data {\"search\":\"weather\",\"limit\":5}", "--wait", "15s"])
        let text = sent["reply"]?["data"]?.stringValue ?? ""
        let page = try JSON(parsing: Array(text.utf8))
        XCTAssertEqual(page["source"], "list-agents", "\(sent)")
        XCTAssertEqual(page["items"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue }, ["forecaster"])
        XCTAssertEqual(page["items"]?.arrayValue?.first?["description"], "Weather forecasts")

        // A handshake to the directory is approved at once, as the official directory's are.
        let directoryNode = try XCTUnwrap(Address(sent["to"]?.stringValue ?? "")).node
        _ = try overlay.ctl("alpha", ["handshake", "list-agents", "hello directory"])
        try overlay.eventually("alpha trusts list-agents", timeout: 20) {
            let trusted = try overlay.ctl("alpha", ["trust"])["trusted"]?.arrayValue ?? []
            return trusted.contains { $0["node_id"] == .integer(Int64(directoryNode)) }
        }

        // The official pilotctl on alice's socket asks, through pilot-host (its --wait reads the
        // inbox spool: HOME=SPOOL/alice).
        let result = ChildProcess.run(
            overlay.official.pilotctl.path,
            ["--json", "send-message", "list-agents", "--data", "/data {\"category\":\"data\"}", "--wait", "15s"],
            environment: [
                "HOME": overlay.directory.path("spool") + "/alice", "PILOT_SOCKET": overlay.directory.path("run") + "/id/alice.sock",
                "PILOT_REGISTRY": "127.0.0.1:\(overlay.registryPort)",
            ],
            timeout: 60)
        let envelope = try JSON(parsing: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        let answer = try JSON(parsing: Array((envelope["data"]?["reply"]?["data"]?.stringValue ?? "").utf8))
        XCTAssertEqual(answer["items"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue }, ["forecaster"], result.output)
    }
}
