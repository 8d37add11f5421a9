import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// The directory agent end to end, as users run it: `pilot-rendezvous --directory-addr`,
/// identities of a pilot-host that publish or not, and askers using `pilotctl send-message
/// list-agents --data '/data {...}' --wait` and `pilotctl directory search`.
final class DirectoryAgentTests: HostProcessTestCase {
    private func startOverlay(questionsPerSecond: Double = 50) throws {
        let ports = try startRendezvousAndBeacon(extra: [
            "--directory-addr", "127.0.0.1:0", "--directory-questions-per-second", "\(questionsPerSecond)",
        ])
        _ = try start(
            "pilot-host", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(ports.registry)",
             "--beacon", "127.0.0.1:\(ports.beacon)", "--listen", "127.0.0.1:0"],
            ready: "pilot-host serving")
        // Four kinds of node: public, private but published, private, public but withdrawn.
        XCTAssertEqual(pilotctl(["identity", "create", "weather", "--hostname", "weather", "--tags", "maps", "--public"]).json?["status"], "ok")
        XCTAssertEqual(pilotctl(["identity", "create", "forecaster", "--hostname", "forecaster", "--tags", "forecast"]).json?["status"], "ok")
        XCTAssertEqual(pilotctl(["identity", "create", "quiet", "--hostname", "quiet-weather", "--tags", "weather"]).json?["status"], "ok")
        XCTAssertEqual(pilotctl(["identity", "create", "shy", "--hostname", "shy-weather", "--tags", "weather", "--public"]).json?["status"], "ok")
        XCTAssertEqual(pilotctl(["identity", "create", "asker"]).json?["status"], "ok")
        let published = pilotctl([
            "--identity", "forecaster", "directory", "publish", "--description", "Hourly weather forecasts by region", "--category", "data",
        ])
        XCTAssertEqual(published.json?["data"]?["listed"], true, "\(String(describing: published.json))")
        XCTAssertEqual(pilotctl(["--identity", "shy", "directory", "withdraw"]).json?["data"]?["listed"], false)
    }

    /// `send-message list-agents --data TEXT --wait 10s` as `asker`: the reply's text.
    private func ask(_ text: String, as asker: String = "asker") -> (reply: String?, json: JSON?) {
        let sent = pilotctl(["--identity", asker, "send-message", "list-agents", "--data", text, "--wait", "10s"])
        return (sent.json?["data"]?["reply"]?["data"]?.stringValue, sent.json)
    }

    func testAskersFindPublicAndPublishedNodesNeverPrivateOrWithdrawnOnes() throws {
        try startOverlay()
        let answer = ask("/data {\"search\":\"weather\",\"limit\":10}")
        let page = try JSON(parsing: Array((answer.reply ?? "").utf8))
        XCTAssertEqual(page["source"], "list-agents", "\(String(describing: answer.json))")
        let hostnames = page["items"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue }
        XCTAssertEqual(hostnames, ["weather", "forecaster"], "exact hostname first; never the private or the withdrawn one")
        XCTAssertEqual(page["total"], 2)
        XCTAssertEqual(page["next"], .null)
        let forecaster = page["items"]?.arrayValue?.last
        XCTAssertEqual(forecaster?["description"], "Hourly weather forecasts by region")
        XCTAssertEqual(forecaster?["category"], "data")
        XCTAssertEqual(forecaster?["tags"], ["forecast"])
        // Filters and pages.
        let byCategory = try JSON(parsing: Array((ask("/data {\"category\":\"data\"}").reply ?? "").utf8))
        XCTAssertEqual(byCategory["items"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue }, ["forecaster"])
        let firstPage = try JSON(parsing: Array((ask("/data {\"limit\":1}").reply ?? "").utf8))
        XCTAssertEqual(firstPage["next"], 2)
        XCTAssertEqual(firstPage["count"], 1)
        // The help, for /help and for free text; a clear word for bad filters.
        XCTAssertEqual(ask("/help").reply?.contains("/data {FILTERS}"), true)
        XCTAssertEqual(ask("hello, who is there?").reply?.contains("/data {FILTERS}"), true, "free text gets the help, not silence")
        XCTAssertEqual(ask("/data {\"limit\":\"many\"}").reply?.hasPrefix("bad /data filters"), true)
        // pilotctl's own front door.
        let search = pilotctl(["--identity", "asker", "directory", "search", "forecasts"])
        XCTAssertEqual(search.json?["data"]?["items"]?.arrayValue?.first?["hostname"], "forecaster", "\(String(describing: search.json))")
        // 1.18's trusted list: every listed agent (the directory itself too), by hostname, with
        // 1.18's keys, page by page.
        for pageSize in ["25", "1"] {
            let trusted = pilotctl(["--identity", "asker", "trusted", "list", "--page-size", pageSize])
            let entries = trusted.json?["data"]?["trusted"]?.arrayValue ?? []
            XCTAssertEqual(trusted.json?["data"]?["count"], 3, "page size \(pageSize): \(String(describing: trusted.json))")
            XCTAssertEqual(entries.compactMap { $0["hostname"]?.stringValue }, ["forecaster", "list-agents", "weather"], "page size \(pageSize)")
            for entry in entries {
                let address = try XCTUnwrap(entry["address"]?.stringValue.flatMap { Address($0) })
                XCTAssertEqual(entry["node_id"]?.integerValue, Int64(address.node))
            }
            XCTAssertEqual(entries.first?["category"], "data")
        }
        XCTAssertEqual(pilotctl(["--identity", "asker", "trusted", "list", "--page-size", "1", "--max", "1"]).json?["data"]?["count"], 1)
        XCTAssertEqual(pilotctl(["--identity", "asker", "trusted"]).json?["data"]?["count"], 3, "list is the default")
        // A handshake to the directory is approved at once.
        XCTAssertEqual(pilotctl(["--identity", "asker", "handshake", "list-agents", "hello"]).json?["status"], "ok")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) {
            self.pilotctl(["--identity", "asker", "trust"]).json?["data"]?["trusted"]?.arrayValue?.isEmpty == false
        }, "the directory approved the handshake")
        // Withdrawn, the published one is gone.
        XCTAssertEqual(pilotctl(["--identity", "forecaster", "directory", "withdraw"]).json?["data"]?["listed"], false)
        let after = try JSON(parsing: Array((ask("/data {\"search\":\"weather\"}").reply ?? "").utf8))
        XCTAssertEqual(after["items"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue }, ["weather"])
    }

    /// One asker asking far faster than its allowance is refused with a clear word, at once, and
    /// another asker is still answered.
    func testAFastAskerIsThrottledOthersAreNot() throws {
        try startOverlay(questionsPerSecond: 2)
        XCTAssertEqual(pilotctl(["identity", "create", "other"]).json?["status"], "ok")
        var refusals: [String] = []
        for _ in 0..<20 {
            let sent = pilotctl(["--identity", "asker", "send-message", "list-agents", "--data", "/data {}"])
            if let error = sent.json?["error"]?.stringValue ?? sent.json?["message"]?.stringValue { refusals.append(error) }
        }
        XCTAssertGreaterThan(refusals.count, 5, "a burst of 10 at most is answered")
        XCTAssertTrue(refusals.allSatisfy { $0.contains("rate limited") }, "\(refusals.prefix(3))")
        let other = try JSON(parsing: Array((ask("/data {}", as: "other").reply ?? "").utf8))
        XCTAssertEqual(other["source"], "list-agents")
        // pilotctl's own paging waits the limit out: every page comes, none is refused.
        let trusted = pilotctl(["--identity", "asker", "trusted", "list", "--page-size", "1"])
        XCTAssertEqual(trusted.json?["data"]?["count"], 3, "\(String(describing: trusted.json))")
    }
}
