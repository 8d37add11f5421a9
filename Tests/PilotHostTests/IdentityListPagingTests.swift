import Foundation
import PilotControl
import PilotHost
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// `identity.list` answers in pages at 100,000 identities: the pool without sockets (their
/// descriptors are what stops a whole host there), 100,000 rows put into `host.db` beside one
/// identity made properly, loaded as pilot-host loads them, and listed page by page as pilotctl
/// and `PilotClient` do. Timings are printed, not asserted (`pilot-bench` measures them).
extension IdentityPoolTests {
    func testAHundredThousandIdentitiesAreListedPageByPageInOrderAndWhole() async throws {
        let count = 100_000
        try await withRendezvous { client, _, directory in
            let first = try await self.makePool(directory, client).create(name: "a-first", IdentityPool.Request(owner: 0))
            // The others share its sealed key: listing opens none (the load opens the first).
            let database = try Database(path: directory.path("host.db"))
            let started = Date()
            try database.transaction {
                for index in 0..<count {
                    try database.run(
                        "INSERT INTO identity (name, node_id, network, sealed_key, tags, public, owner_uid, created_at) VALUES (?, ?, 0, ?, '', 0, ?, 0)",
                        [.text(String(format: "agent%06d", index)), .integer(Int64(1000 + index)), .blob(first.sealedKey), .integer(Int64(index % 3))])
                }
            }
            print("identity list paging: \(count) rows stored in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
            let pool = try self.makePool(directory, client)
            try await pool.load()
            let admin = AdminCommands(pool: pool, socketPath: { "/run/pilot-host/id/\($0).sock" }) { _ in }
            let peer = PeerCredentials(pid: getpid(), uid: 0, gid: 0)

            // The host's part of each page (answering) is timed; checking and decoding is not.
            let clock = ContinuousClock()
            var answering = Duration.zero
            func page(_ command: AdminControl.ListIdentities) async throws -> IdentityList {
                let started = clock.now
                let reply = await admin.handle(peer, command.request)
                let encoded = try reply.encoded()
                answering += started.duration(to: clock.now)
                XCTAssertLessThan(encoded.count, 1 << 20, "a page passed the frame limit")
                return try AdminControl.ListIdentities.data(of: reply)
            }

            let firstPage = try await page(AdminControl.ListIdentities())
            let firstPageTime = answering
            XCTAssertEqual(firstPage.total, count + 1)
            XCTAssertEqual(firstPage.identities.first?.name, "a-first")
            XCTAssertNotNil(firstPage.next, "one page cannot hold them all")

            answering = .zero
            var names: [String] = []
            var after: String?
            var pages = 0
            repeat {
                let list = try await page(AdminControl.ListIdentities(after: after))
                names += list.identities.map(\.name)
                after = list.next
                pages += 1
                XCTAssertLessThan(pages, 1000, "the pages do not end")
            } while after != nil && pages < 1000
            let wholeTime = answering
            XCTAssertEqual(names.count, count + 1)
            XCTAssertEqual(names, names.sorted(), "not in name order")
            XCTAssertEqual(Set(names).count, names.count, "a name was listed twice")
            print("identity list paging: \(count + 1) identities: first page (\(firstPage.identities.count) rows) in \(firstPageTime), all \(pages) pages in \(wholeTime)")

            // A limit is a limit; after the last name there is nothing, and no next.
            let ten = try await page(AdminControl.ListIdentities(limit: 10, after: "agent000041"))
            XCTAssertEqual(ten.identities.map(\.name), (42..<52).map { String(format: "agent%06d", $0) })
            XCTAssertEqual(ten.next, "agent000051")
            let end = try await page(AdminControl.ListIdentities(after: "zzz"))
            XCTAssertEqual(end.identities, [])
            XCTAssertNil(end.next)
        }
    }
}
