@testable import PilotHost
import XCTest

/// What a host registers for a socket the beacon reported a mapping for: the observed port
/// always, the observed IP only when it is public.
final class ObservedEndpointTests: XCTestCase {
    func testAPublicMappingIsRegisteredAsItIs() throws {
        let mapping = try XCTUnwrap(ObservedEndpoint(ip: [203, 0, 113, 7], port: 41000))
        XCTAssertTrue(mapping.isPublic)
        XCTAssertEqual(mapping.listenAddress(localHost: "0.0.0.0"), "203.0.113.7:41000")
    }

    func testAPrivateMappingKeepsItsPortAndTheSocketsOwnHost() throws {
        for ip: [UInt8] in [[10, 1, 2, 3], [172, 16, 0, 1], [172, 31, 255, 1], [192, 168, 7, 7], [127, 0, 0, 1], [169, 254, 1, 1], [0, 0, 0, 0]] {
            let mapping = try XCTUnwrap(ObservedEndpoint(ip: ip, port: 41000))
            XCTAssertFalse(mapping.isPublic, "\(ip)")
            XCTAssertEqual(mapping.listenAddress(localHost: "0.0.0.0"), "0.0.0.0:41000", "\(ip)")
        }
        for ip: [UInt8] in [[172, 32, 0, 1], [172, 15, 0, 1], [100, 64, 0, 1], [192, 169, 0, 1]] {
            XCTAssertTrue(try XCTUnwrap(ObservedEndpoint(ip: ip, port: 1)).isPublic, "\(ip)")
        }
    }

    func testIPv6MappingsAndIPv4OnesADualStackBeaconReportsAsIPv6() throws {
        var documentation = [UInt8](repeating: 0, count: 16)
        documentation[0] = 0x20
        documentation[1] = 0x01
        documentation[2] = 0x0D
        documentation[3] = 0xB8
        documentation[15] = 1
        let global = try XCTUnwrap(ObservedEndpoint(ip: documentation, port: 9000))
        XCTAssertTrue(global.isPublic)
        XCTAssertEqual(global.listenAddress(localHost: "::"), "[2001:db8:0:0:0:0:0:1]:9000")
        var uniqueLocal = documentation
        uniqueLocal[0] = 0xFD
        XCTAssertEqual(try XCTUnwrap(ObservedEndpoint(ip: uniqueLocal, port: 9000)).listenAddress(localHost: "::"), "[::]:9000")
        var linkLocal = [UInt8](repeating: 0, count: 16)
        linkLocal[0] = 0xFE
        linkLocal[1] = 0x80
        XCTAssertFalse(try XCTUnwrap(ObservedEndpoint(ip: linkLocal, port: 9000)).isPublic)
        var loopback = [UInt8](repeating: 0, count: 16)
        loopback[15] = 1
        XCTAssertFalse(try XCTUnwrap(ObservedEndpoint(ip: loopback, port: 9000)).isPublic)

        let mapped = try XCTUnwrap(ObservedEndpoint(ip: ObservedEndpoint.mappedPrefix + [198, 51, 100, 4], port: 7))
        XCTAssertEqual(mapped.ip, [198, 51, 100, 4])
        XCTAssertEqual(mapped.listenAddress(localHost: "0.0.0.0"), "198.51.100.4:7")
        XCTAssertNil(ObservedEndpoint(ip: [1, 2, 3], port: 7))
        XCTAssertNil(ObservedEndpoint(ip: [], port: 7))
    }
}
