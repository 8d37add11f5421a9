import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotMetrics
import PilotTestSupport
import XCTest

final class MetricsServerTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: MetricsServer!
    private var port: UInt16 = 0
    private let registry = MetricsRegistry()

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        server = MetricsServer(
            listener: try MetricsListener(parsing: "127.0.0.1:0", allowRemote: false), registry: registry, logger: Logger(label: "test"))
        port = UInt16(try await server.start(on: group).port ?? 0)
    }

    override func tearDown() async throws {
        await server.shutdown()
        try await group.shutdownGracefully()
    }

    func testMetricsAreServedAsTextExpositionWithCollectorsRunFirst() throws {
        let total = ScrapedCounter(label: "pilot_test_frames_total", dimensions: [("reason", "replayed")], factory: registry.factory)
        let kept = TotalKeeper()
        registry.onScrape { total.publish(total: kept.next()) }
        CoreMetrics.Gauge(label: "pilot_test_identities", factory: registry.factory).record(3)

        let first = try MetricsScrape.get(port: port)
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(first.headers["connection"], "close")
        let exposition = first.exposition
        XCTAssertEqual(exposition.malformed, [])
        XCTAssertEqual(exposition.types["pilot_test_frames_total"], "counter")
        XCTAssertEqual(exposition.value("pilot_test_frames_total", ["reason": "replayed"]), 10)
        XCTAssertEqual(exposition.value("pilot_test_identities"), 3)
        // The keeper's total went 10 → 25: the series followed.
        XCTAssertEqual(try MetricsScrape.get(port: port).exposition.value("pilot_test_frames_total"), 25)
    }

    func testACounterWhoseKeeperRestartedNeverGoesDown() throws {
        let total = ScrapedCounter(label: "pilot_test_restarts_total", factory: registry.factory)
        total.publish(total: 100)
        total.publish(total: 5)
        total.publish(total: 7)
        XCTAssertEqual(try MetricsScrape.get(port: port).exposition.value("pilot_test_restarts_total"), 102)
    }

    func testOtherPathsAre404AndOtherMethods405() throws {
        XCTAssertEqual(try MetricsScrape.get(port: port, path: "/").status, 404)
        XCTAssertEqual(try MetricsScrape.get(port: port, path: "/metrics/x").status, 404)
        XCTAssertEqual(try MetricsScrape.get(port: port, path: "/metrics?name=x").status, 200)
        let post = try MetricsScrape.raw(port: port, Array("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".utf8))
        XCTAssertEqual(post.status, 405)
    }

    func testAnOversizedRequestIsClosedWithoutAnAnswer() throws {
        let padding = String(repeating: "a", count: MetricsServer.maxRequestBytes)
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: \(padding)\r\n\r\n".utf8)
        XCTAssertThrowsError(try MetricsScrape.raw(port: port, request, timeout: 5))
    }
}

/// A total that grows by 10, then 15, as an event loop's counter would between scrapes.
private final class TotalKeeper: Sendable {
    private let scrapes = NIOLockedValueBox(0)

    func next() -> Int {
        let scrape = scrapes.withLockedValue { count in
            count += 1
            return count
        }
        return [10, 25, 25][min(scrape - 1, 2)]
    }
}
