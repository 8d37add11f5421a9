import PilotWire
import XCTest

final class NameserverMessageTests: XCTestCase {
    private func request(_ text: String) throws -> NameserverRequest { try NameserverRequest(decoding: Array(text.utf8)) }
    private func reply(_ text: String) throws -> NameserverReply { try NameserverReply(decoding: Array(text.utf8)) }
    private let alpha = Address(node: 2)

    /// Every request of docs/PROTOCOL.md §11.6, read and written back byte for byte.
    func testEveryRequestReadsAndWritesTheReferenceText() throws {
        let cases: [(String, NameserverRequest)] = [
            ("QUERY A alpha", .queryAddress(name: "alpha")),
            ("QUERY N backbone", .queryNetwork(name: "backbone")),
            ("QUERY S 0 8080", .queryService(network: 0, port: 8080)),
            ("REGISTER A web 0:0000.0000.0002", .registerAddress(name: "web", address: alpha)),
            ("REGISTER N lab 7", .registerNetwork(name: "lab", network: 7)),
            ("REGISTER S api 0:0000.0000.0002 0 65535", .registerService(name: "api", address: alpha, network: 0, port: 65535)),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try request(text), expected, text)
            XCTAssertEqual(String(decoding: expected.encoded, as: UTF8.self), text)
        }
        XCTAssertEqual(try request("QUERY A alpha\n"), .queryAddress(name: "alpha"), "one trailing newline is tolerated")
    }

    func testEveryReplyReadsAndWritesTheReferenceText() throws {
        let api = NameserverReply.Service(name: "api", address: alpha, port: 8080)
        let web = NameserverReply.Service(name: "web", address: Address(node: 3), port: 8080)
        let cases: [(String, NameserverReply)] = [
            ("A web 0:0000.0000.0002", .address(name: "web", address: alpha)),
            ("N backbone 0", .network(name: "backbone", network: 0)),
            ("S", .services([])),
            ("S api 0:0000.0000.0002 8080", .services([api])),
            ("S api 0:0000.0000.0002 8080\nS web 0:0000.0000.0003 8080", .services([api, web])),
            ("OK", .ok),
            ("ERR no A record for x", .error("no A record for x")),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try reply(text), expected, text)
            XCTAssertEqual(String(decoding: expected.encoded, as: UTF8.self), text)
        }
    }

    func testMalformedRequestsAreTypedErrorsThatSayWhy() {
        let cases: [(String, String)] = [
            ("", "is empty"),
            ("QUERY", "must be QUERY or REGISTER"),
            ("QUERY A", "takes 1 arguments, got 0"),
            ("QUERY A a b", "takes 1 arguments, got 2"),
            ("DELETE A x", "unknown request DELETE A"),
            ("QUERY X x", "unknown request QUERY X"),
            ("REGISTER A web 0:0000.0000", "must be N:XXXX.YYYY.YYYY"),
            ("REGISTER A web 1:0000.0000.0002", "must be N:XXXX.YYYY.YYYY"),
            ("QUERY S 0 65536", "must be a number 0...65535"),
            ("QUERY S -1 80", "must be a number 0...65535"),
            ("QUERY A caf\u{e9}", "printable ASCII"),
            ("QUERY A a\nQUERY A b", "one line"),
            ("QUERY A " + String(repeating: "x", count: 254), "limit 253"),
        ]
        for (text, reason) in cases {
            XCTAssertThrowsError(try request(text), text) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(text): \(error)")
            }
        }
        XCTAssertThrowsError(try NameserverRequest(decoding: [UInt8](repeating: 0x41, count: 65536)))
    }
}
