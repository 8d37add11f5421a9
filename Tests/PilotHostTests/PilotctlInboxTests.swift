import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// `pilotctl inbox` with the reference's filters and `inbox read`: bob (a service identity)
/// gets messages from alice and carol, and lists them by sender, by time and by number, reads
/// one by id and the newest, and is told when a filter is misused.
final class PilotctlInboxTests: HostProcessTestCase {
    func testTheInboxIsFilteredAndReadAsTheReferencesIs() throws {
        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        func run(_ arguments: [String]) -> JSON? { ctl(runtime, arguments) }
        XCTAssertEqual(run(["identity", "create", "bob", "--hostname", "bob-inbox", "--auto-approve"])?["status"], "ok")
        var nodes: [String: Int64] = [:]
        for name in ["alice", "carol"] {
            nodes[name] = try XCTUnwrap(run(["identity", "create", name])?["data"]?["node_id"]?.integerValue)
            XCTAssertEqual(run(["handshake", "bob-inbox", "inbox", "--identity", name])?["data"]?["status"], "sent")
            XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { run(["trust", "--identity", name])?["data"]?["total"] == 1 }, name)
        }
        for (from, text) in [("alice", "one"), ("carol", "two"), ("alice", "three")] {
            XCTAssertEqual(run(["send-message", "bob-inbox", "--data", text, "--identity", from])?["data"]?["ack"]?.stringValue?.hasPrefix("ACK TEXT"), true)
        }
        func texts(_ arguments: [String]) -> [String] {
            (run(["inbox", "--identity", "bob"] + arguments)?["data"]?["messages"]?.arrayValue ?? []).compactMap { $0["data"]?.stringValue }
        }
        XCTAssertEqual(texts([]), ["one", "two", "three"])
        XCTAssertEqual(texts(["--from", "\(nodes["alice"]!)"]), ["one", "three"])
        XCTAssertEqual(texts(["--from", Address(node: UInt32(nodes["carol"]!)).description]), ["two"])
        XCTAssertEqual(texts(["--limit", "2"]), ["two", "three"], "the newest two")
        XCTAssertEqual(texts(["--since", "1h"]), ["one", "two", "three"])
        XCTAssertEqual(texts(["--since", "2999-01-01T00:00:00Z"]), [])
        let listed = run(["inbox", "--identity", "bob", "--from", "\(nodes["alice"]!)"])?["data"]
        XCTAssertEqual(listed?["total"], 3)
        XCTAssertEqual(listed?["shown"], 2)

        XCTAssertEqual(run(["inbox", "read", "--latest", "--identity", "bob"])?["data"]?["data"], "three")
        let first = try XCTUnwrap(run(["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue?.first?["id"]?.stringValue)
        XCTAssertEqual(run(["inbox", "read", first, "--identity", "bob"])?["data"]?["data"], "one")
        XCTAssertEqual(run(["inbox", "read", "TEXT-999999", "--identity", "bob"])?["code"], "not_found")
        XCTAssertNotEqual(run(["inbox", "--clear", "--from", "1", "--identity", "bob"])?["status"], "ok", "--clear with a filter is refused")
        XCTAssertEqual(texts([]).count, 3, "and nothing was cleared")
    }
}
