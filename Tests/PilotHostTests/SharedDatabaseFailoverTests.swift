import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Two pilot-rendezvous on one PostgreSQL database (`--database`), as an operator runs them
/// behind one name: a host on A and a host on B find each other's identities by hostname, and
/// when A is killed its host moves to B and its identities keep their addresses.
final class SharedDatabaseFailoverTests: HostProcessTestCase {
    private var postgres: PostgresServer?

    override func tearDown() {
        super.tearDown()
        postgres?.remove()
    }

    func testHostsOnTwoInstancesOfOneDatabaseFindEachOtherAndKeepTheirAddressesOnFailover() throws {
        if let reason = PostgresServer.unavailableReason { throw XCTSkip(reason) }
        let server = try PostgresServer()
        postgres = server
        try server.psql("CREATE DATABASE shared")
        func rendezvous(_ name: String) throws -> (ChildProcess, UInt16, UInt16) {
            try startRendezvous(name, extra: ["--database", server.url(database: "shared")])
        }
        let (a, portA, beaconA) = try rendezvous("rendezvous-a")
        let (_, portB, beaconB) = try rendezvous("rendezvous-b")
        func host(_ name: String, registries: String, beacons: String) throws -> String {
            let runtime = directory.path("run-\(name)")
            _ = try start(
                name, "pilot-host",
                ["--state-dir", directory.path("state-\(name)"), "--runtime-dir", runtime, "--registry", registries,
                 "--beacon", beacons, "--listen", "127.0.0.1:\(try LoopbackSocket.freePort())"],
                ready: "pilot-host serving")
            return runtime
        }
        let onA = try host("host-a", registries: "127.0.0.1:\(portA),127.0.0.1:\(portB)", beacons: "127.0.0.1:\(beaconA),127.0.0.1:\(beaconB)")
        let onB = try host("host-b", registries: "127.0.0.1:\(portB)", beacons: "127.0.0.1:\(beaconB)")
        XCTAssertEqual(ctl(onA, ["identity", "create", "alice", "--hostname", "alice"])?["status"], "ok")
        XCTAssertEqual(ctl(onB, ["identity", "create", "bob", "--hostname", "bob"])?["status"], "ok")
        func info() -> JSON? { ctl(onA, ["--identity", "alice", "info"])?["data"] }
        let address = try XCTUnwrap(info()?["address"]?.stringValue)
        XCTAssertEqual(info()?["registry"], .string("127.0.0.1:\(portA)"))

        // B answers for alice, whom A registered; A for bob, whom B did.
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 5) { ctl(onB, ["find", "alice", "--identity", "bob"])?["data"]?["address"] == .string(address) },
            "B resolves alice")
        let bob = try XCTUnwrap(ctl(onB, ["--identity", "bob", "info"])?["data"]?["address"])
        XCTAssertEqual(ctl(onA, ["find", "bob", "--identity", "alice"])?["data"]?["address"], bob, "A resolves bob")

        a.kill9()
        _ = ctl(onA, ["find", "bob", "--identity", "alice"])
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 10) { info()?["registry"] == .string("127.0.0.1:\(portB)") },
            "alice's host moved to B: \(String(describing: info()))")
        XCTAssertEqual(info()?["address"], .string(address), "the same node at B, not a new one")
        XCTAssertEqual(ctl(onB, ["find", "alice", "--identity", "bob"])?["data"]?["address"], .string(address))
        XCTAssertEqual(
            try server.psql("SELECT COUNT(*) FROM node", database: "shared").trimmingCharacters(in: .whitespacesAndNewlines), "2")
    }
}
