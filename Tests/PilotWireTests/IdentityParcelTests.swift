import PilotWire
import XCTest

/// `IdentityParcel`: what a moving identity carries, as bytes; total and strict.
final class IdentityParcelTests: XCTestCase {
    static let sample = IdentityParcel(
        recipient: Array(repeating: 0xAA, count: 32), exportedAt: 1_765_000_000_000_000, lastSequence: 1_765_000_000_000_001,
        seed: Array(repeating: 0x33, count: 32), publicKey: Array(repeating: 0x17, count: 32), node: 7, network: 0, name: "alice",
        hostname: "alice", tags: ["worker", "gpu"], isPublic: true, autoApprove: false,
        trust: [
            .init(peer: 9, peerKey: Array(repeating: 0x09, count: 32), state: "trusted", reason: "hello", updatedAt: 1_765_000_000, mutual: true),
            .init(peer: 12, peerKey: nil, state: "pending-in", reason: "", updatedAt: 1_765_000_001, mutual: false),
        ],
        messages: [
            .init(sender: "0:0000.0000.0009", type: "TEXT", data: Array("hi".utf8), messageID: "abc", replyTo: nil, receivedAt: 1_765_000_000_123),
            .init(sender: "0:0000.0000.000C", type: "BINARY", data: [0, 1, 2, 255], messageID: nil, replyTo: "TEXT-1", receivedAt: 5),
        ])

    func testAParcelDecodesToWhatWasEncoded() throws {
        let bytes = Self.sample.encoded()
        XCTAssertEqual(try IdentityParcel(decoding: bytes), Self.sample)
        var bare = Self.sample
        (bare.hostname, bare.tags, bare.trust, bare.messages, bare.isPublic) = (nil, [], [], [], false)
        XCTAssertEqual(try IdentityParcel(decoding: bare.encoded()), bare)
        // Version (1), recipient (32), two times (16), seed and key (64): the node at 113, the network, the name.
        XCTAssertEqual(bytes[0], 1)
        XCTAssertEqual(Array(bytes[113..<119]), [0, 0, 0, 7, 0, 0])
        XCTAssertEqual(Array(bytes[119..<125]), [5] + Array("alice".utf8))
    }

    func testEveryCutOrExtendedParcelIsRefusedNotTrapped() {
        let bytes = Self.sample.encoded()
        for length in 0..<bytes.count { XCTAssertThrowsError(try IdentityParcel(decoding: Array(bytes.prefix(length))), "\(length)") }
        XCTAssertEqual(try? IdentityParcel(decoding: bytes + [0]), nil)
    }

    func testAnotherVersionOrUnknownFlagsAreRefused() {
        var bytes = Self.sample.encoded()
        bytes[0] = 2
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes)) { XCTAssertEqual($0 as? WireError, .unsupportedVersion(2)) }
        bytes = Self.sample.encoded()
        bytes[125] |= 0x80
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes)) {
            XCTAssertEqual($0 as? WireError, .invalidValue(field: "identity parcel flags", reason: "unknown flags 133"))
        }
    }

    func testACountBeyondTheLimitIsRefusedBeforeAnythingIsAllocated() throws {
        var bare = Self.sample
        (bare.trust, bare.messages) = ([], [])
        var bytes = bare.encoded()
        // The trust count sits 8 bytes before the end (two u32 counts, both 0).
        bytes.replaceSubrange((bytes.count - 8)..<(bytes.count - 4), with: [0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes)) {
            XCTAssertEqual($0 as? WireError, .oversized(field: "identity parcel trust count", limit: 100_000, actual: Int(UInt32.max)))
        }
    }
}
