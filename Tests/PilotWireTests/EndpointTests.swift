import PilotWire
import XCTest

final class EndpointTests: XCTestCase {
    func testAcceptedForms() throws {
        let accepted: [(String, String, UInt16)] = [
            ("127.0.0.1:9000", "127.0.0.1", 9000),
            ("0.0.0.0:0", "0.0.0.0", 0),
            ("255.255.255.255:65535", "255.255.255.255", 65535),
            ("192.0.2.7:080", "192.0.2.7", 80),
            ("[::1]:9000", "::1", 9000),
            ("[::]:0", "::", 0),
            ("[2001:db8::7]:443", "2001:db8::7", 443),
            ("[fe80::]:1", "fe80::", 1),
            ("[1:2:3:4:5:6:7:8]:1", "1:2:3:4:5:6:7:8", 1),
            ("[::ffff:192.0.2.1]:53", "::ffff:192.0.2.1", 53),
            ("[1:2:3:4:5:6:192.0.2.1]:53", "1:2:3:4:5:6:192.0.2.1", 53),
            ("[::1:2:3:4:5:6:7]:5", "::1:2:3:4:5:6:7", 5),
            ("[ABCD::ef01]:5", "ABCD::ef01", 5),
            ("localhost:9000", "localhost", 9000),
            ("registry.pilot-protocol.example:9000", "registry.pilot-protocol.example", 9000),
            ("x1.example:1", "x1.example", 1),
            ("1host:1", "1host", 1),
            ("pilot_registry:9000", "pilot_registry", 9000),
            (String(repeating: "a", count: 63) + ".com:1", String(repeating: "a", count: 63) + ".com", 1),
        ]
        for (text, host, port) in accepted {
            let endpoint = try Endpoint(parsing: text)
            XCTAssertEqual(endpoint, Endpoint(host: host, port: port), text)
        }
    }

    func testTheHostMayBeLeftOutOnlyWhereThereIsADefault() throws {
        XCTAssertEqual(try Endpoint(parsing: ":9000", defaultHost: "0.0.0.0"), Endpoint(host: "0.0.0.0", port: 9000))
        XCTAssertEqual(try Endpoint(parsing: "10.0.0.1:9000", defaultHost: "0.0.0.0"), Endpoint(host: "10.0.0.1", port: 9000))
        XCTAssertThrowsError(try Endpoint(parsing: ":9000")) { XCTAssertEqual($0 as? EndpointError, .missingHost(":9000")) }
    }

    func testRejectedFormsSayWhy() {
        let rejected: [(String, EndpointError)] = [
            ("", .missingPort("")),
            ("127.0.0.1", .missingPort("127.0.0.1")),
            ("localhost", .missingPort("localhost")),
            ("[::1]", .missingPort("[::1]")),
            ("127.0.0.1:", .invalidPort("127.0.0.1:")),
            ("127.0.0.1:http", .invalidPort("127.0.0.1:http")),
            ("127.0.0.1:+80", .invalidPort("127.0.0.1:+80")),
            ("127.0.0.1:-1", .invalidPort("127.0.0.1:-1")),
            ("127.0.0.1: 80", .invalidPort("127.0.0.1: 80")),
            ("127.0.0.1:123456", .invalidPort("127.0.0.1:123456")),
            ("127.0.0.1:65536", .portOutOfRange("127.0.0.1:65536")),
            ("127.0.0.1:99999", .portOutOfRange("127.0.0.1:99999")),
            (":80", .missingHost(":80")),
            ("::1:80", .unbracketedIPv6("::1:80")),
            ("2001:db8::1:80", .unbracketedIPv6("2001:db8::1:80")),
            ("[]:80", .invalidIPv6("[]:80")),
            ("[::1:80", .invalidIPv6("[::1:80")),
            ("[127.0.0.1]:80", .invalidIPv6("[127.0.0.1]:80")),
            ("[localhost]:80", .invalidIPv6("[localhost]:80")),
            ("[1::2::3]:80", .invalidIPv6("[1::2::3]:80")),
            ("[:::]:80", .invalidIPv6("[:::]:80")),
            ("[1:]:80", .invalidIPv6("[1:]:80")),
            ("[:1]:80", .invalidIPv6("[:1]:80")),
            ("[12345::]:80", .invalidIPv6("[12345::]:80")),
            ("[g::1]:80", .invalidIPv6("[g::1]:80")),
            ("[1:2:3:4:5:6:7:8:9]:80", .invalidIPv6("[1:2:3:4:5:6:7:8:9]:80")),
            ("[1:2:3:4:5:6:7]:80", .invalidIPv6("[1:2:3:4:5:6:7]:80")),
            ("[::1:2:3:4:5:6:7:8]:80", .invalidIPv6("[::1:2:3:4:5:6:7:8]:80")),
            ("[::ffff:192.0.2.256]:80", .invalidIPv6("[::ffff:192.0.2.256]:80")),
            ("[fe80::1%eth0]:80", .invalidIPv6("[fe80::1%eth0]:80")),
            ("256.0.0.1:80", .invalidIPv4("256.0.0.1:80")),
            ("1.2.3:80", .invalidIPv4("1.2.3:80")),
            ("1.2.3.4.5:80", .invalidIPv4("1.2.3.4.5:80")),
            ("01.2.3.4:80", .invalidIPv4("01.2.3.4:80")),
            ("1..3.4:80", .invalidIPv4("1..3.4:80")),
            ("example.123:80", .invalidIPv4("example.123:80")),
            ("-host:80", .invalidHostname("-host:80")),
            ("host-:80", .invalidHostname("host-:80")),
            ("a..b:80", .invalidHostname("a..b:80")),
            ("example.com.:80", .invalidHostname("example.com.:80")),
            (".example:80", .invalidHostname(".example:80")),
            ("host name:80", .invalidHostname("host name:80")),
            ("hóst:80", .invalidHostname("hóst:80")),
            (String(repeating: "a", count: 64) + ".com:1", .invalidHostname(String(repeating: "a", count: 64) + ".com:1")),
            (String(repeating: "a.", count: 127) + "ab:1", .invalidHostname(String(repeating: "a.", count: 127) + "ab:1")),
        ]
        for (text, expected) in rejected {
            XCTAssertThrowsError(try Endpoint(parsing: text), text) { error in
                XCTAssertEqual(error as? EndpointError, expected, text)
            }
        }
    }

    func testDescriptionBracketsIPv6AndParsesBack() throws {
        for endpoint in [Endpoint(host: "::1", port: 7), Endpoint(host: "192.0.2.1", port: 0), Endpoint(host: "relay.example", port: 65535)] {
            XCTAssertEqual(try Endpoint(parsing: endpoint.description), endpoint)
        }
        XCTAssertEqual(Endpoint(host: "2001:db8::1", port: 9000).description, "[2001:db8::1]:9000")
    }

    func testErrorsNameTheTextAndTheRule() {
        XCTAssertEqual(EndpointError.unbracketedIPv6("::1:80").description, "::1:80: an IPv6 address must be in brackets, as [::1]:9000")
        XCTAssertEqual(EndpointError.portOutOfRange("h:70000").description, "h:70000: the port is above 65535")
    }
}
