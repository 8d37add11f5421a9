import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// pilot-host's Prometheus endpoint, on the real executables.
final class HostMetricsTests: HostProcessTestCase {
    func testNoMetricsListenerWithoutTheSetting() throws {
        let registryPort = try startRendezvous()
        let host = try startHost(registryPort: registryPort, generation: 1)
        XCTAssertEqual(host.listeningTCPPorts, [])
        XCTAssertFalse(host.output.contains("metrics endpoint"), host.output)
    }

    func testANonLoopbackMetricsAddressStopsTheStartUnlessRemoteIsAllowed() throws {
        let registryPort = try startRendezvous()
        let arguments = [
            "--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registryPort)",
            "--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0",
        ]
        let refused = ChildProcess.run(bin.appendingPathComponent("pilot-host").path, arguments, timeout: 20)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("is not loopback"), refused.output)
        XCTAssertTrue(refused.output.contains("metrics-allow-remote"), refused.output)

        let allowed = try start("pilot-host", "pilot-host", arguments + ["--metrics-allow-remote", "yes"], ready: "pilot-host serving")
        XCTAssertEqual(allowed.listeningTCPPorts.count, 1)
    }

    /// Two hosts, each scraped: a private identity asks an auto-approving service on the other
    /// host for trust, then 8 MB go through the service's echo. The scrape during the transfer
    /// parses; the one after shows the bytes both ways, a direct tunnel, the handshake, the key
    /// exchange and the registry requests; per-identity series only on the host that asked for
    /// them.
    func testAScrapeDuringATransferShowsItsBytesTunnelsAndHandshakes() throws {
        let registryPort = try startRendezvous()
        let metricsPorts = [try LoopbackSocket.freePort(), try LoopbackSocket.freePort()]
        let runtimes = try (0..<2).map { index in
            try startHost(
                index, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())",
                extra: ["--metrics-listen", "127.0.0.1:\(metricsPorts[index])"] + (index == 0 ? ["--metrics-per-identity", "1"] : [])
            ).runtime
        }
        func ctl(_ host: Int, _ arguments: [String]) -> JSON? { self.ctl(runtimes[host], arguments) }
        func scrape(_ host: Int) throws -> Exposition {
            let answer = try MetricsScrape.get(port: metricsPorts[host])
            XCTAssertEqual(answer.status, 200)
            XCTAssertEqual(answer.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
            let exposition = answer.exposition
            XCTAssertEqual(exposition.malformed, [], "host \(host)")
            return exposition
        }
        _ = try XCTUnwrap(ctl(0, ["identity", "create", "asker"])?["data"]?["node_id"]?.integerValue)
        _ = try XCTUnwrap(ctl(0, ["identity", "create", "idle"])?["data"]?["node_id"]?.integerValue)
        let service = try XCTUnwrap(ctl(1, ["identity", "create", "service", "--public", "--auto-approve"])?["data"]?["node_id"]?.integerValue)
        let before = try scrape(0)
        XCTAssertEqual(before.value("pilot_host_identities"), 2)
        XCTAssertNil(before.value("pilot_host_identity_bytes_total"), "no identity has carried anything yet")
        XCTAssertEqual(before.types["pilot_host_bytes_total"], "counter")
        let bytesOutBefore = try XCTUnwrap(before.value("pilot_host_bytes_total", ["direction": "out"]))
        let bytesInBefore = try XCTUnwrap(before.value("pilot_host_bytes_total", ["direction": "in"]))

        XCTAssertEqual(ctl(0, ["handshake", "\(service)", "please", "--identity", "asker"])?["data"]?["status"], "sent")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            ctl(0, ["trust", "--identity", "asker"])?["data"]?["trusted"]?.arrayValue?.first?["mutual"] == true
        })
        let megabytes = 8
        let bench = try ChildProcess(
            name: "bench", executable: bin.appendingPathComponent("pilotctl"),
            arguments: ["bench", "\(service)", "\(megabytes)", "--identity", "asker", "--json", "--runtime-dir", runtimes[0]],
            logDirectory: directory.url)
        processes.append(bench)
        let during = try scrape(0)
        XCTAssertNotNil(during.value("pilot_host_bytes_total", ["direction": "out"]))
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 60) { !bench.isRunning })
        let result = try JSON(parsing: Array(bench.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        XCTAssertEqual(result["data"]?["verified"], true, "\(result)")

        let after = try scrape(0)
        let transferred = Double(megabytes << 20)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_bytes_total", ["direction": "out"])) - bytesOutBefore, transferred)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_bytes_total", ["direction": "in"])) - bytesInBefore, transferred)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_packets_total", ["direction": "out"])), transferred / 1152)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_tunnels", ["path": "direct"])), 1)
        XCTAssertEqual(after.value("pilot_host_tunnels", ["path": "relay"]), 0)
        XCTAssertEqual(after.value("pilot_host_trust_handshakes_total", ["outcome": "sent"]), 1)
        XCTAssertEqual(after.value("pilot_host_trust_handshakes_total", ["outcome": "accepted"]), 1)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_key_exchanges_total", ["outcome": "installed"])), 1)
        XCTAssertNotNil(after.value("pilot_host_drops_total", ["reason": "replayed"]))
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_registry_requests_total", ["outcome": "ok"])), 1)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_registry_request_duration_seconds_count")), 1)
        XCTAssertEqual(after.types["pilot_host_registry_request_duration_seconds"], "histogram")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_registry_batch_items_total", ["type": "register", "outcome": "ok"])), 2)
        // Every series the Grafana dashboard queries is one this host writes.
        let queried = try Exposition.dashboardSeries(prefix: "pilot_host_")
        XCTAssertFalse(queried.isEmpty)
        XCTAssertEqual(queried.subtracting(after.types.keys), [], "the dashboard queries series the host does not write")
        XCTAssertEqual(Set(after.types.keys).subtracting(after.help.keys), [], "every series says what it counts")

        // One identity's series, asked for on host 0: the one that carried the bytes.
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_identity_bytes_total", ["identity": "asker", "direction": "out"])), transferred)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(after.value("pilot_host_identity_bytes_total", ["identity": "asker", "direction": "in"])), transferred)
        XCTAssertEqual(Set(after.samples.filter { $0.name.hasPrefix("pilot_host_identity_") }.compactMap { $0.labels["identity"] }), ["asker"])

        // The service's host counted its side: an auto-approved request, and the echo's bytes.
        let service1 = try scrape(1)
        XCTAssertEqual(service1.value("pilot_host_trust_handshakes_total", ["outcome": "auto_approved"]), 1)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(service1.value("pilot_host_bytes_total", ["direction": "in"])), transferred)
        XCTAssertNil(service1.value("pilot_host_identity_bytes_total"), "no per-identity series unless asked for")
    }
}
