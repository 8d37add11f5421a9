import PilotRendezvous
import PilotWire
import XCTest

/// A registry stand-in: hostnames and the backbone.
private struct Authority: NameAuthority {
    var hostnames: [String: UInt32] = [:]
    func node(withHostname name: String) -> UInt32? { hostnames[name] }
    func network(named name: String) -> UInt16? { name == "backbone" ? 0 : nil }
    func networkExists(_ id: UInt16) -> Bool { id == 0 }
}

final class NameRecordsTests: XCTestCase {
    private let authority = Authority(hostnames: ["alpha": 2])
    private var records = NameRecords()
    private var now = 100.0

    private func ask(_ text: String, from node: UInt32) throws -> String {
        let reply = records.answer(try NameserverRequest(decoding: Array(text.utf8)), from: node, now: now, authority: authority)
        return String(decoding: reply.encoded, as: UTF8.self)
    }

    func testAddressRecordsBelongToTheNodeThatRegisteredThem() throws {
        XCTAssertEqual(try ask("QUERY A web", from: 3), "ERR no A record for web")
        XCTAssertEqual(try ask("REGISTER A web 0:0000.0000.0003", from: 3), "OK")
        XCTAssertEqual(try ask("QUERY A web", from: 4), "A web 0:0000.0000.0003")
        // Nobody registers a name for another node, or takes a live one.
        XCTAssertEqual(try ask("REGISTER A web 0:0000.0000.0004", from: 3), "ERR REGISTER A: 0:0000.0000.0004 is not the registering node 0:0000.0000.0003")
        XCTAssertEqual(try ask("REGISTER A web 0:0000.0000.0004", from: 4), "ERR REGISTER A: web is held by 0:0000.0000.0003 until it expires")
        // Registry hostnames come first and cannot be shadowed.
        XCTAssertEqual(try ask("QUERY A alpha", from: 4), "A alpha 0:0000.0000.0002")
        XCTAssertEqual(try ask("REGISTER A alpha 0:0000.0000.0004", from: 4), "ERR REGISTER A: alpha is the hostname of 0:0000.0000.0002")
        XCTAssertEqual(try ask("REGISTER A alpha 0:0000.0000.0002", from: 2), "OK")
    }

    func testRecordsExpireFiveMinutesAfterTheirLastRegistration() throws {
        XCTAssertEqual(try ask("REGISTER A web 0:0000.0000.0003", from: 3), "OK")
        XCTAssertEqual(try ask("REGISTER S api 0:0000.0000.0003 0 80", from: 3), "OK")
        now += 200
        XCTAssertEqual(try ask("REGISTER A web 0:0000.0000.0003", from: 3), "OK", "a refresh")
        now += 200
        XCTAssertEqual(try ask("QUERY A web", from: 4), "A web 0:0000.0000.0003")
        XCTAssertEqual(try ask("QUERY S 0 80", from: 4), "S", "the service was not refreshed")
        now += 101
        XCTAssertEqual(try ask("QUERY A web", from: 4), "ERR no A record for web")
        XCTAssertEqual(try ask("REGISTER A web 0:0000.0000.0004", from: 4), "OK", "an expired name is free")
        XCTAssertEqual(records.count, 1)
    }

    func testServicesAreListedPerNetworkAndPortInNameOrder() throws {
        XCTAssertEqual(try ask("REGISTER S web 0:0000.0000.0004 0 80", from: 4), "OK")
        XCTAssertEqual(try ask("REGISTER S api 0:0000.0000.0003 0 80", from: 3), "OK")
        XCTAssertEqual(try ask("REGISTER S api 0:0000.0000.0003 0 81", from: 3), "OK")
        XCTAssertEqual(try ask("REGISTER S api 0:0000.0000.0003 0 80", from: 3), "OK", "again: no duplicate")
        XCTAssertEqual(try ask("QUERY S 0 80", from: 9), "S api 0:0000.0000.0003 80\nS web 0:0000.0000.0004 80")
        XCTAssertEqual(try ask("QUERY S 0 82", from: 9), "S")
        XCTAssertEqual(try ask("REGISTER S api 0:0000.0000.0004 0 80", from: 3), "ERR REGISTER S: 0:0000.0000.0004 is not the registering node 0:0000.0000.0003")
        XCTAssertEqual(try ask("REGISTER S api 0:0000.0000.0003 5 80", from: 3), "ERR REGISTER S: network 5 does not exist")
    }

    func testNetworksAreTheRegistrysAndRecordsAreCappedPerNode() throws {
        XCTAssertEqual(try ask("QUERY N backbone", from: 3), "N backbone 0")
        XCTAssertEqual(try ask("QUERY N lab", from: 3), "ERR no network named lab")
        XCTAssertEqual(try ask("REGISTER N lab 0", from: 3), "ERR REGISTER N: networks are named by the registry")
        var limits = NameRecords.Limits()
        limits.perNode = 3
        limits.total = 5
        records = NameRecords(limits: limits)
        for port in 1...3 { XCTAssertEqual(try ask("REGISTER S s 0:0000.0000.0003 0 \(port)", from: 3), "OK") }
        XCTAssertEqual(try ask("REGISTER S s 0:0000.0000.0003 0 4", from: 3), "ERR 0:0000.0000.0003 holds 3 records already")
        XCTAssertEqual(try ask("REGISTER S s 0:0000.0000.0003 0 1", from: 3), "OK", "refreshing an existing record is always allowed")
        for port in 1...2 { XCTAssertEqual(try ask("REGISTER S s 0:0000.0000.0004 0 \(port)", from: 4), "OK") }
        XCTAssertEqual(try ask("REGISTER A n 0:0000.0000.0005", from: 5), "ERR nameserver full (5 records)")
    }
}
