import Foundation
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// pilot-host with two registries (`--registry A,B`): it uses A; when A is killed, it moves to
/// B within seconds and all its identities register there at once (not at the next heartbeat,
/// 30 s on), and `info` names the registry in use. A's beacon goes with it: silent for 6 s, it
/// is left for B's, which the host then keeps. The two pilot-rendezvous here keep separate
/// state, so B gives alice a node of its own; instances on one database give the same.
final class RegistryFailoverTests: HostProcessTestCase {
    func testTheHostMovesToTheNextRegistryAndBeaconWhenTheirRendezvousDies() throws {
        func rendezvous(_ name: String) throws -> (ChildProcess, UInt16, UInt16) { try startRendezvous(name) }
        let (a, portA, beaconA) = try rendezvous("rendezvous-a")
        let (_, portB, beaconB) = try rendezvous("rendezvous-b")
        let host = try start(
            "pilot-host", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(portA), 127.0.0.1:\(portB)",
             "--beacon", "127.0.0.1:\(beaconA),127.0.0.1:\(beaconB)", "--listen", "127.0.0.1:0"],
            ready: "pilot-host serving")
        XCTAssertEqual(pilotctl(["identity", "create", "alice", "--hostname", "alice"]).json?["status"], "ok")
        XCTAssertEqual(pilotctl(["identity", "create", "carol", "--hostname", "carol"]).json?["status"], "ok")
        func info() -> JSON? { pilotctl(["--identity", "alice", "info"]).json?["data"] }
        XCTAssertEqual(info()?["registry"], .string("127.0.0.1:\(portA)"))
        XCTAssertEqual(info()?["beacon_addr"], .string("127.0.0.1:\(beaconA)"))
        // The registration at start is over (it waits up to 5 s for the beacon, which is not
        // there): what registers carol at B below is the move.
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { host.output.contains("identities registered") }, host.output)

        a.kill9()
        let killed = Date()
        // The next request (or the next heartbeat) finds A gone: a lookup is one.
        _ = pilotctl(["--identity", "alice", "find", "alice"])
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 10) { info()?["registry"] == .string("127.0.0.1:\(portB)") },
            "info names B: \(String(describing: info()))")
        // carol, who asked nothing, is at B too, registered by the move itself, with her
        // hostname: in B's own records.
        let atB = directory.path("rendezvous-b") + "/registry.db"
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 10) {
                ((try? Database(path: atB).rows("SELECT count(*) FROM node WHERE hostname IN ('alice', 'carol') AND online = 1"))?.first?.first?.integer ?? 0) == 2
            }, "alice and carol registered at B")
        XCTAssertLessThan(Date().timeIntervalSince(killed), 15, "well before the next heartbeat would have registered her")
        // A's beacon went with it: silent for 6 s, it is left for B's, which answers, and stays.
        XCTAssertTrue(
            ChildProcess.waitUntil(timeout: 15) { info()?["beacon_addr"] == .string("127.0.0.1:\(beaconB)") },
            "info names B's beacon: \(String(describing: info()))")
        XCTAssertTrue(host.output.contains("beacon silent: moving to the next"), host.output)
        Thread.sleep(forTimeInterval: 8)
        XCTAssertEqual(info()?["beacon_addr"], .string("127.0.0.1:\(beaconB)"), "B's beacon answers the probes: no move back")
    }
}
