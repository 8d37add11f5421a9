import PilotAppStore
import PilotCrypto
import PilotWire
import XCTest

/// Vectors made with the official 1.18 `pilotctl appstore gen-key` and `appstore sign`: the key
/// file, and two manifests as the official tool signed (and rewrote) them. Their grants exercise
/// Go's JSON quirks: HTML escapes, `\b`/`\f`, sorted map keys, float64 formatting, omitted empty
/// members.
final class ManifestSignatureTests: XCTestCase {
    static let officialKeyFile = "7d2e31638b0e8febbc82357ba918aca91fed1110c34b64090612735ab48d64760c24da2e0b937caea11800a7c8f457469d96817af2da681dc305cf6053ba7636"
    static let officialPublisher = "ed25519:DCTaLguTfK6hGACnyPRXRp2WgXry2mgdwwXPYFO6djY="

    static let signedByOfficial = #"""
        {"id": "io.example.hello", "app_version": "0.1.0", "manifest_version": 1,
         "binary": {"runtime": "go", "path": "bin/hello", "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
         "exposes": ["hello.help"],
         "grants": [
           {"cap": "net.dial", "target": "a\u003cb\u003e\u0026c",
            "if": {"kind": "rate", "params": {"a": 60, "big": 1e+21, "s": "x\u003cy", "z": 1.5}}},
           {"cap": "audit.log", "target": "*"}],
         "store": {"publisher": "ed25519:DCTaLguTfK6hGACnyPRXRp2WgXry2mgdwwXPYFO6djY=",
                   "signature": "Yj4JW5f7EByJLru8Jg4QFRKjy9adpCfHJyY7jh8LQJ0cxOAgQs4+wKt8Zh1pIS8Sy5susjYEaFoE9WoUs3hCBA=="}}
        """#

    static let nestedSignedByOfficial = #"""
        {"id": "io.example.hello", "app_version": "0.1.0", "manifest_version": 3,
         "binary": {"runtime": "go", "path": "bin/hello", "sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"},
         "grants": [{"cap": "fs.read", "target": "\b\f\u0001\u007f\u2028\u00e9",
           "if": {"op": "and", "compose": [
             {"kind": "rate", "params": {"arr": [1, "a", {"y": 2, "x": 1}], "m": 123456789012345678901234,
                                         "n": 1e-7, "neg": -0.0000012, "nil": null, "t": true}},
             {"kind": "cap", "params": {}}]}}],
         "store": {"publisher": "ed25519:DCTaLguTfK6hGACnyPRXRp2WgXry2mgdwwXPYFO6djY=",
                   "signature": "IMeM0B75hJRRx7W06VgW0G4Bz625wbm02iXSrwwCSmdReWcY8v1zDP5QxH0C5QDdza/3Wxc9beUDaqiTFEwiDA=="}}
        """#

    private func manifest(_ text: String) throws -> Manifest { try Manifest(parsing: Array(text.utf8)) }

    func testSignaturesMadeByTheOfficialToolVerify() throws {
        XCTAssertNoThrow(try ManifestSignature.verify(manifest(Self.signedByOfficial)))
        XCTAssertNoThrow(try ManifestSignature.verify(manifest(Self.nestedSignedByOfficial)))
    }

    func testSigningWithTheOfficialKeyGivesTheOfficialSignature() throws {
        let key = try PublisherKey.parse(Self.officialKeyFile, path: "off.key")
        XCTAssertEqual(PublisherKey.publisher(key.publicKey), Self.officialPublisher)
        for text in [Self.signedByOfficial, Self.nestedSignedByOfficial] {
            let official = try manifest(text)
            var ours = official
            ours.store = Manifest.Store(publisher: "", signature: "")
            ManifestSignature.sign(&ours, with: key)
            XCTAssertEqual(ours.store, official.store)
        }
    }

    func testTheGrantsAreHashedAsGoWritesThem() throws {
        let grants = try manifest(Self.nestedSignedByOfficial).grants
        XCTAssertEqual(
            String(decoding: GoJSON.encode(grants: grants), as: UTF8.self),
            #"[{"cap":"fs.read","target":"\b\f\u0001\#u{7F}\u2028é","if":{"op":"and","compose":[{"kind":"rate","params":"#
                + #"{"arr":[1,"a",{"x":1,"y":2}],"m":1.2345678901234569e+23,"n":1e-7,"neg":-0.0000012,"nil":null,"t":true}},"#
                + #"{"kind":"cap"}]}}]"#)
    }

    func testFloatsPrintAsGoPrintsThem() {
        let cases: [(Double, String)] = [
            (0, "0"), (-0.0, "-0"), (60, "60"), (1.5, "1.5"), (-2.25, "-2.25"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
            (Double("123456789012345678901234") ?? 0, "1.2345678901234569e+23"), (1e-7, "1e-7"), (1e-6, "0.000001"), (0.0000012, "0.0000012"),
            (1.5e-10, "1.5e-10"), (0.1, "0.1"), (1.0 / 3, "0.3333333333333333"), (Double("9007199254740993") ?? 0, "9007199254740992"),
            (Double.leastNonzeroMagnitude, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"), (100, "100"), (0.5, "0.5"),
        ]
        for (value, expected) in cases { XCTAssertEqual(GoJSON.float(value), expected, "\(value)") }
    }

    func testAChangedGrantBreaksTheSignature() throws {
        var changed = try manifest(Self.signedByOfficial)
        changed.grants[1].target = "io.other.*"
        XCTAssertThrowsError(try ManifestSignature.verify(changed)) { XCTAssertEqual($0 as? AppStoreError, .badSignature(id: changed.id)) }
        var added = try manifest(Self.signedByOfficial)
        added.grants.append(Manifest.Grant(cap: "proc.exec", target: "/bin/sh"))
        XCTAssertThrowsError(try ManifestSignature.verify(added))
        var rehashed = try manifest(Self.signedByOfficial)
        rehashed.binary.sha256 = String(repeating: "c", count: 64)
        XCTAssertThrowsError(try ManifestSignature.verify(rehashed))
        var bumped = try manifest(Self.signedByOfficial)
        bumped.manifestVersion = 2
        XCTAssertThrowsError(try ManifestSignature.verify(bumped))
    }

    func testTheSignatureMayCarryAnEd25519Prefix() throws {
        var prefixed = try manifest(Self.signedByOfficial)
        prefixed.store.signature = "ed25519:" + prefixed.store.signature
        XCTAssertNoThrow(try ManifestSignature.verify(prefixed))
    }

    func testTheCataloguePinDecidesThePublisher() throws {
        let signed = try manifest(Self.signedByOfficial)
        XCTAssertNoThrow(try ManifestSignature.verifyPin(signed, pinnedPublisher: Self.officialPublisher))
        XCTAssertNoThrow(try ManifestSignature.verifyPin(signed, pinnedPublisher: String(Self.officialPublisher.dropFirst(8))))
        XCTAssertThrowsError(try ManifestSignature.verifyPin(signed, pinnedPublisher: nil))
        let other = try Ed25519PrivateKey()
        XCTAssertThrowsError(try ManifestSignature.verifyPin(signed, pinnedPublisher: PublisherKey.publisher(other.publicKey))) {
            guard case .publisherNotPinned = $0 as? AppStoreError else { return XCTFail("\($0)") }
        }
    }

    func testAKeyFileThatIsNotAKeyIsRefused() {
        XCTAssertThrowsError(try PublisherKey.parse("abc", path: "k"))
        // The right length, but the public half is not the seed's.
        let broken = String(Self.officialKeyFile.dropLast(2)) + "00"
        XCTAssertThrowsError(try PublisherKey.parse(broken, path: "k"))
        XCTAssertNoThrow(try PublisherKey.parse(Self.officialKeyFile + "\n", path: "k"))
    }
}
