import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// pilot-rendezvous's Prometheus endpoint, on the real executable.
final class RendezvousMetricsTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var processes: [ChildProcess] = []

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-rendezvous-metrics")
    }

    override func tearDown() {
        if (testRun?.totalFailureCount ?? 0) > 0 { for process in processes { print("--- \(process.name)\n\(process.output)") } }
        for process in processes { process.stop() }
        directory.remove()
    }

    private var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pilot-rendezvous")
    }

    private func arguments(registryPort: UInt16) -> [String] {
        ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("state")]
    }

    /// Starts pilot-rendezvous; returns it and the port its stdout names for `what`
    /// (`registry`, `beacon`, `metrics`), once it serves.
    private func start(_ extra: [String], registryPort: UInt16) throws -> ChildProcess {
        let process = try ChildProcess(
            name: "rendezvous", executable: executable, arguments: arguments(registryPort: registryPort) + extra, logDirectory: directory.url)
        processes.append(process)
        guard ChildProcess.waitUntil(timeout: 20, { process.output.contains("beacon 127.0.0.1:") }) else {
            throw SocketError(description: "pilot-rendezvous did not start: \(process.output)")
        }
        return process
    }

    private func port(_ what: String, in process: ChildProcess) throws -> UInt16 {
        let line = process.output.split(separator: "\n").first { $0.hasPrefix("\(what) 127.0.0.1:") }
        return try XCTUnwrap(line.flatMap { try? Endpoint(parsing: String($0.dropFirst(what.count + 1))).port }, process.output)
    }

    func testNoMetricsListenerWithoutTheOption() throws {
        let registryPort = try LoopbackSocket.freePort()
        let process = try start([], registryPort: registryPort)
        XCTAssertEqual(process.listeningTCPPorts, [registryPort])
    }

    func testANonLoopbackMetricsAddressIsRefusedUnlessAllowed() throws {
        let registryPort = try LoopbackSocket.freePort()
        let refused = ChildProcess.run(executable.path, arguments(registryPort: registryPort) + ["--metrics-listen", "0.0.0.0:0"], timeout: 20)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("is not loopback"), refused.output)
        XCTAssertTrue(refused.output.contains("--metrics-allow-remote"), refused.output)

        let allowed = try start(["--metrics-listen", "0.0.0.0:0", "--metrics-allow-remote"], registryPort: registryPort)
        XCTAssertEqual(allowed.listeningTCPPorts.count, 2)
    }

    func testRegistrationsLookupsAndRelaysAreCounted() throws {
        let registryPort = try LoopbackSocket.freePort()
        // One peer beacon (nobody there: its syncs go unanswered), for the peers gauge.
        let process = try start(["--metrics-listen", "127.0.0.1:0", "--beacon-peers", "127.0.0.1:\(try LoopbackSocket.freePort())"], registryPort: registryPort)
        let metricsPort = try port("metrics", in: process)
        let beaconPort = try port("beacon", in: process)

        let connection = try LoopbackSocket.connect(to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: registryPort))
        func exchange(_ message: RegistryMessage) throws -> RegistryMessage {
            try connection.write(RegistryFrame.encode(message))
            let frame = try XCTUnwrap(try connection.readFrame(timeout: 5))
            return try RegistryMessage(decoding: frame.dropFirst(4))
        }
        for _ in 0..<5 {
            XCTAssertEqual(try exchange(try TestNode().register()).type, "register_ok")
        }
        XCTAssertEqual(try exchange(RegistryMessage(type: "lookup", ["node_id": .integer(999_999)])).type, "error")
        XCTAssertEqual(try exchange(RegistryMessage(type: "no such type")).type, "error")
        // A batch: two registrations and a lookup of nobody, each counted by its own type.
        let batch = RegistryMessage(type: "batch", ["requests": .array([
            try TestNode().register().json, try TestNode().register().json, RegistryMessage(type: "lookup", ["node_id": .integer(999_998)]).json,
        ])])
        XCTAssertEqual(try exchange(batch).type, "batch_ok")
        // A relay to a node the beacon does not know is dropped, and counted.
        let beacon = try LoopbackSocket.udp()
        try beacon.send(
            try BeaconMessage.relay(source: 1, destination: 999_999, frame: [1, 2, 3]).encoded(),
            to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: beaconPort))

        var exposition = try MetricsScrape.get(port: metricsPort).exposition
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5) {
            exposition = (try? MetricsScrape.get(port: metricsPort).exposition) ?? exposition
            return exposition.value("pilot_rendezvous_beacon_drops_total", ["reason": "unknown_destination"]) == 1
        }, "\(exposition.samples.filter { $0.name.contains("beacon") })")
        XCTAssertEqual(exposition.malformed, [])
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_requests_total", ["type": "register", "outcome": "ok"]), 5)
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_requests_total", ["type": "lookup", "outcome": "error"]), 1)
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_requests_total", ["type": "other", "outcome": "error"]), 1)
        XCTAssertNil(exposition.value("pilot_rendezvous_registry_requests_total", ["type": "no such type"]))
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_requests_total", ["type": "batch", "outcome": "ok"]), 1)
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_batch_items_total", ["type": "register", "outcome": "ok"]), 2)
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_batch_items_total", ["type": "lookup", "outcome": "error"]), 1)
        XCTAssertEqual(exposition.value("pilot_rendezvous_registry_request_duration_seconds_count"), 8)
        XCTAssertEqual(exposition.value("pilot_rendezvous_registered_nodes"), 7)
        let queried = try Exposition.dashboardSeries(prefix: "pilot_rendezvous_")
        XCTAssertFalse(queried.isEmpty)
        XCTAssertEqual(queried.subtracting(exposition.types.keys), [], "the Grafana dashboard queries series pilot-rendezvous does not write")
        XCTAssertEqual(Set(exposition.types.keys).subtracting(exposition.help.keys), [], "every series says what it counts")
        XCTAssertEqual(exposition.help["pilot_rendezvous_registered_nodes"], "Nodes the registry knows, online or not.")
        XCTAssertEqual(exposition.value("pilot_rendezvous_database_errors_total"), 0)
        XCTAssertEqual(exposition.value("pilot_rendezvous_beacon_relayed_packets_total"), 0)
        XCTAssertEqual(exposition.value("pilot_rendezvous_beacon_peers"), 1)
    }
}
