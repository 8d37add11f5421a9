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
        ],
        apps: [
            .init(
                appID: "dev.pilot-host.notes", version: "1.2.0", manifestVersion: 1, bundleSHA256: String(repeating: "ab", count: 32),
                publisher: "ed25519:AAAA", source: "catalogue", exposes: ["notes.add", "notes.list"], installedAt: 1_765_000_002,
                approvedBy: 1000, approvedAt: 1_765_000_003,
                grants: [
                    .init(cap: "fs.write", target: "$APP/notes.jsonl", condition: nil),
                    .init(cap: "net.dial", target: "*", condition: #"{"tag":"worker"}"#),
                ]),
            .init(
                appID: "dev.example.bare", version: "0.1.0", manifestVersion: 2, bundleSHA256: String(repeating: "cd", count: 32),
                publisher: "ed25519:BBBB", source: "sideload", exposes: [], installedAt: 1, approvedBy: 0, approvedAt: 2, grants: []),
        ])

    func testAParcelDecodesToWhatWasEncoded() throws {
        let bytes = Self.sample.encoded()
        XCTAssertEqual(try IdentityParcel(decoding: bytes), Self.sample)
        var bare = Self.sample
        (bare.hostname, bare.tags, bare.trust, bare.messages, bare.apps, bare.isPublic) = (nil, [], [], [], [], false)
        XCTAssertEqual(try IdentityParcel(decoding: bare.encoded()), bare)
        // Version (2), recipient (32), two times (16), seed and key (64): the node at 113, the network, the name.
        XCTAssertEqual(bytes[0], 2)
        XCTAssertEqual(Array(bytes[113..<119]), [0, 0, 0, 7, 0, 0])
        XCTAssertEqual(Array(bytes[119..<125]), [5] + Array("alice".utf8))
    }

    func testAVersion1ParcelHasNoAppsAndStillOpens() throws {
        var withoutApps = Self.sample
        withoutApps.apps = []
        // Version 1 is version 2 without the app count at the end.
        var bytes = Array(withoutApps.encoded().dropLast(2))
        bytes[0] = 1
        XCTAssertEqual(try IdentityParcel(decoding: bytes), withoutApps)
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes + [0, 0]), "a version 1 parcel has no app count")
    }

    func testEveryCutOrExtendedParcelIsRefusedNotTrapped() {
        let bytes = Self.sample.encoded()
        for length in 0..<bytes.count { XCTAssertThrowsError(try IdentityParcel(decoding: Array(bytes.prefix(length))), "\(length)") }
        XCTAssertEqual(try? IdentityParcel(decoding: bytes + [0]), nil)
    }

    func testAnotherVersionOrUnknownFlagsAreRefused() {
        var bytes = Self.sample.encoded()
        bytes[0] = 3
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes)) { XCTAssertEqual($0 as? WireError, .unsupportedVersion(3)) }
        bytes = Self.sample.encoded()
        bytes[125] |= 0x80
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes)) {
            XCTAssertEqual($0 as? WireError, .invalidValue(field: "identity parcel flags", reason: "unknown flags 133"))
        }
    }

    func testACountBeyondTheLimitIsRefusedBeforeAnythingIsAllocated() throws {
        var bare = Self.sample
        (bare.trust, bare.messages, bare.apps) = ([], [], [])
        var bytes = bare.encoded()
        // The trust count sits 10 bytes before the end (two u32 counts and the u16 app count, all 0).
        bytes.replaceSubrange((bytes.count - 10)..<(bytes.count - 6), with: [0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try IdentityParcel(decoding: bytes)) {
            XCTAssertEqual($0 as? WireError, .oversized(field: "identity parcel trust count", limit: 100_000, actual: Int(UInt32.max)))
        }
    }
}
