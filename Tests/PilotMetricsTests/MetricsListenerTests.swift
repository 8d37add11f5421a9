import PilotMetrics
import XCTest

final class MetricsListenerTests: XCTestCase {
    func testLoopbackAddressesAreAccepted() throws {
        for text in ["127.0.0.1:9464", "127.1.2.3:0", "[::1]:9464", "[0:0:0:0:0:0:0:1]:9464"] {
            XCTAssertEqual(try MetricsListener(parsing: text, allowRemote: false).description, text)
        }
    }

    func testNonLoopbackAddressIsRefusedUnlessRemoteIsAllowed() throws {
        for text in ["0.0.0.0:9464", "192.0.2.7:9464", "[::]:9464", "[2001:db8::1]:9464", "126.0.0.1:9464"] {
            XCTAssertThrowsError(try MetricsListener(parsing: text, allowRemote: false)) { error in
                XCTAssertEqual(error as? MetricsError, .remoteRefused(text))
                XCTAssertTrue("\(error)".contains("metrics-allow-remote"), "\(error)")
            }
            XCTAssertEqual(try MetricsListener(parsing: text, allowRemote: true).description, text)
        }
    }

    func testNamesAndMalformedAddressesAreRefused() {
        for text in ["localhost:9464", "metrics.example:9464", "127.0.0.1", "127.0.0.1:99999", ""] {
            XCTAssertThrowsError(try MetricsListener(parsing: text, allowRemote: true)) { error in
                guard case .invalidAddress = error as? MetricsError else { return XCTFail("\(text): \(error)") }
            }
        }
    }
}
