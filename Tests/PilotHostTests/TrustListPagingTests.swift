import Foundation
import PilotClient
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// `trust` and `pending` answer in pages (`ListPage`): an identity that trusts 10,000 nodes (a
/// service, say) is listed whole by pilotctl, where one reply would pass the 1 MiB frame, and a
/// page asked for directly is a page. The trust rows are put into `host.db` while the host is
/// stopped, as the host itself keeps them.
final class TrustListPagingTests: HostProcessTestCase {
    func testTenThousandTrustedNodesAreListedWholeInPages() throws {
        let registryPort = try startRendezvous()
        let first = try startHost(registryPort: registryPort, generation: 1)
        XCTAssertEqual(pilotctl(["identity", "create", "svc"]).json?["status"], "ok")
        first.stop()
        let database = try Database(path: directory.path("state/host.db"))
        let key = [UInt8](repeating: 7, count: 32)
        let count = 10_000
        try database.transaction {
            for node in 0..<count {
                try database.run(
                    """
                    INSERT INTO trust (identity_id, peer_node, peer_key, state, reason, updated_at)
                    SELECT id, ?, ?, ?, ?, 1700000000 FROM identity WHERE name = 'svc'
                    """,
                    [.integer(Int64(10_000 + node)), .blob(key), .text(node % 10 == 0 ? "pending-in" : "trusted"), .text(String(repeating: "why ", count: 40))])
            }
        }
        _ = try startHost(registryPort: registryPort, generation: 2)

        let trusted = ctl(runtime, ["trust", "--identity", "svc"])
        let rows = trusted?["data"]?["trusted"]?.arrayValue ?? []
        XCTAssertEqual(rows.count, count - count / 10, "\(String(describing: trusted?["status"]))")
        XCTAssertEqual(trusted?["data"]?["total"]?.integerValue, Int64(count - count / 10))
        let nodes = rows.compactMap { $0["node_id"]?.integerValue }
        XCTAssertEqual(nodes, nodes.sorted())
        XCTAssertEqual(Set(nodes).count, nodes.count, "a node was listed twice")
        let pending = ctl(runtime, ["pending", "--identity", "svc"])?["data"]?["pending"]?.arrayValue ?? []
        XCTAssertEqual(pending.count, count / 10)

        // One page, asked for on the socket: a page, with the next to ask for.
        let connection = try ControlConnection(path: runtime + "/id/svc.sock")
        func send(_ command: TrustControl.Trusted) throws -> TrustedPeers { try TrustControl.Trusted.data(of: try connection.request(command.request)) }
        let page = try send(TrustControl.Trusted(page: ListPage(after: 10_100, limit: 10)))
        XCTAssertEqual(page.trusted.map(\.nodeID), [10_101, 10_102, 10_103, 10_104, 10_105, 10_106, 10_107, 10_108, 10_109, 10_111])
        XCTAssertEqual(page.next, 10_111)
        let whole = try send(TrustControl.Trusted())
        XCTAssertNotNil(whole.next, "9,000 rows fit in one page")
        XCTAssertLessThan(whole.json.encoded().count, 1 << 20)
    }
}
