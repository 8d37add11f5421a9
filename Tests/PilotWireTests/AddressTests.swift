import PilotTestSupport
import PilotWire
import XCTest

final class AddressTests: XCTestCase {
    func testTextFormMatchesTheReference() {
        XCTAssertEqual(Address(network: 0, node: 11).description, "0:0000.0000.000B")
        XCTAssertEqual(Address(network: 1, node: 0x00A3_F291).description, "1:0001.00A3.F291")
        XCTAssertEqual(Address(network: 65535, node: .max).description, "65535:FFFF.FFFF.FFFF")
    }

    func testParsingIsCaseInsensitiveAndExact() {
        XCTAssertEqual(Address("1:0001.00a3.f291"), Address(network: 1, node: 0x00A3_F291))
        XCTAssertEqual(Address("0:0000.0000.0000"), .zero)
        for bad in [
            "", "0", "0:", "1:0000.0000.0001", "0:0000.0000.001", "0:0000.0000.00001", "0:0000.0000",
            "0:0000.0000.0000.0000", "70000:1170.0000.0001", "-1:FFFF.0000.0001", "0:0000.00G0.0001",
            "0 :0000.0000.0001", "0:0000.0000.000١",
        ] {
            XCTAssertNil(Address(bad), "accepted \(bad)")
        }
    }

    func testBroadcastAndZero() {
        XCTAssertTrue(Address.broadcast(network: 3).isBroadcast)
        XCTAssertEqual(Address.broadcast(network: 3).description, "3:0003.FFFF.FFFF")
        XCTAssertTrue(Address.zero.isZero)
    }

    func testRandomAddressesRoundTripThroughTextAndBytes() throws {
        var random = SplitMix64(seed: 42)
        for _ in 0..<5000 {
            let address = random.address()
            XCTAssertEqual(Address(address.description), address)
            var writer = ByteWriter()
            address.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            XCTAssertEqual(try Address(decoding: &reader), address)
            XCTAssertTrue(reader.isAtEnd)
        }
    }

    func testTruncatedBytesFailWithTheFieldNamed() {
        var reader = ByteReader([0, 1, 0, 0])
        XCTAssertThrowsError(try Address(decoding: &reader)) { error in
            XCTAssertEqual(error as? WireError, .truncated(field: "address node", needed: 4, available: 2))
        }
    }
}
