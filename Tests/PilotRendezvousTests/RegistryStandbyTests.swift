import Foundation
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// High availability is PostgreSQL's own: a primary streaming to a hot standby, and a failover
/// that promotes the standby. Two registries given both servers (`--database
/// postgres://u@standby,primary/db`, the standby first) write to whichever takes writes, refuse
/// writes while none does, and follow the promotion by themselves, notifications included.
final class RegistryStandbyTests: XCTestCase {
    func testRegistriesFollowAFailoverFromThePrimaryToItsPromotedStandby() throws {
        if let reason = PostgresServer.unavailableReason { throw XCTSkip(reason) }
        let primary = try PostgresServer()
        defer { primary.remove() }
        try primary.psql("CREATE DATABASE ha")
        let standby = try PostgresServer(standbyOf: primary)
        defer { standby.remove() }
        XCTAssertEqual(try standby.psql("SELECT pg_is_in_recovery()").trimmingCharacters(in: .whitespacesAndNewlines), "t")

        let location = try PostgresLocation(parsing: "postgres://postgres@127.0.0.1:\(standby.port),127.0.0.1:\(primary.port)/ha")
        let stores = try (0..<2).map { _ in try PostgresRegistryStore(location: location) }
        defer { stores.forEach { $0.stopListening() } }
        let registries = try stores.map { try Registry(postgres: $0) }
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5, every: 0.01) { stores.allSatisfy { $0.readsOfEverything >= 1 } }, "listening")

        // Written to the primary, passing the standby over; seen by the other instance; streamed
        // to the standby.
        var first = try TestNode()
        let registered = registries[0].handle(first.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(registered.type, "register_ok", registered.json.encodedString())
        first.id = try registered.nodeID("node_id")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 2, every: 0.01) { self.lookup(registries[1], first).type == "lookup_ok" })
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10, every: 0.05) {
            (try? standby.psql("SELECT count(*) FROM node", database: "ha").trimmingCharacters(in: .whitespacesAndNewlines)) == "1"
        }, "the standby has the row")

        // The primary goes (a clean stop sends the standby everything first): no server takes
        // writes, and a write says so within 2 s, naming each.
        try primary.stop()
        var second = try TestNode()
        let asked = Date()
        let refused = registries[0].handle(second.register(), peerIP: "127.0.0.1")
        let took = Date().timeIntervalSince(asked)
        XCTAssertEqual(refused.type, "error")
        let reason = refused["error"]?.stringValue ?? ""
        XCTAssertTrue(reason.contains("unavailable") && reason.contains("a standby, read-only"), reason)
        XCTAssertLessThan(took, 2.5)
        print("RegistryStandbyTests: with the primary stopped, a write refused in \(String(format: "%.2f", took)) s: \(reason)")
        XCTAssertEqual(lookup(registries[0], first).type, "lookup_ok", "reads go on from memory")

        // The failover manager's step: the standby is promoted. Both instances write there by
        // themselves, and hear each other again.
        try standby.promote()
        let promoted = Date()
        var accepted: RegistryMessage?
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10, every: 0.1) {
            accepted = registries[0].handle(second.register(), peerIP: "127.0.0.1")
            return accepted?.type == "register_ok"
        }, "\(accepted?.json.encodedString() ?? "")")
        second.id = try XCTUnwrap(accepted).nodeID("node_id")
        print("RegistryStandbyTests: writes taken \(String(format: "%.2f", Date().timeIntervalSince(promoted))) s after the promotion")
        XCTAssertNotEqual(second.id, first.id)
        let heard = ChildProcess.waitUntil(timeout: 10, every: 0.05) { self.lookup(registries[1], second).type == "lookup_ok" }
        XCTAssertTrue(heard, "the other instance hears the new primary's notifications")
        print("RegistryStandbyTests: the other instance heard it \(String(format: "%.2f", Date().timeIntervalSince(promoted))) s after the promotion")
        let again = registries[1].handle(first.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(try again.nodeID("node_id"), first.id, "what was acknowledged before the failover is there")
        XCTAssertEqual(try standby.psql("SELECT count(*) FROM node", database: "ha").trimmingCharacters(in: .whitespacesAndNewlines), "2")
    }

    private func lookup(_ registry: Registry, _ node: TestNode) -> RegistryMessage {
        registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node.id))]), peerIP: "x")
    }
}
