import PilotAppStore
import PilotCrypto
import PilotWire
import XCTest

final class CatalogueTests: XCTestCase {
    private let text = #"""
        {"version": 2, "updated_at": "2026-12-01T00:00:00Z", "apps": [
          {"id": "io.example.tides", "version": "1.2.0", "description": "Tide tables", "display_name": "Tides",
           "categories": ["weather", "data"], "publisher": "ed25519:DCTaLguTfK6hGACnyPRXRp2WgXry2mgdwwXPYFO6djY=",
           "bundle_url": "https://example.com/tides.tar.gz", "bundle_sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
           "bundles": {"linux/arm64": {"bundle_url": "https://example.com/tides-arm64.tar.gz",
                                       "bundle_sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}}},
          {"id": "io.example.old", "renamed_to": "io.example.tides", "hidden": true},
          {"id": "io.example.gone", "version": "0.1.0", "hidden": true,
           "bundle_url": "https://example.com/g.tar.gz", "bundle_sha256": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"}
        ]}
        """#

    func testASignedCatalogueVerifiesAndDecodes() throws {
        let key = try Ed25519PrivateKey()
        let bytes = Array(text.utf8)
        let signature = Array((Base64.encode(key.sign(bytes)) + "\n").utf8)
        let catalogue = try Catalogue(verifying: bytes, signature: signature, trustedKeys: [try Ed25519PrivateKey().publicKey, key.publicKey])
        XCTAssertEqual(catalogue.version, 2)
        let entry = try catalogue.entry(id: "io.example.tides")
        XCTAssertEqual(entry.bundle(for: "linux/amd64")?.sha256, String(repeating: "a", count: 64))
        XCTAssertEqual(entry.bundle(for: "linux/arm64")?.url, "https://example.com/tides-arm64.tar.gz")
        XCTAssertEqual(catalogue.search("WEATHER").map(\.id), ["io.example.tides"])
        XCTAssertEqual(catalogue.search(nil).map(\.id), ["io.example.tides"])
        XCTAssertThrowsError(try catalogue.entry(id: "io.example.gone")) { XCTAssertEqual($0 as? AppStoreError, .unknownApp(id: "io.example.gone")) }
        XCTAssertThrowsError(try catalogue.entry(id: "io.example.old")) { XCTAssertTrue("\($0)".contains("renamed to io.example.tides")) }
        XCTAssertThrowsError(try catalogue.entry(id: "io.example.none"))
    }

    func testAnUntrustedCatalogueIsNeverDecoded() throws {
        let key = try Ed25519PrivateKey()
        let bytes = Array(text.utf8)
        let signature = Array(Base64.encode(key.sign(bytes)).utf8)
        var tampered = bytes
        tampered[tampered.count - 3] = UInt8(ascii: " ")
        let refusals: [() throws -> Catalogue] = [
            { try Catalogue(verifying: tampered, signature: signature, trustedKeys: [key.publicKey]) },
            { try Catalogue(verifying: bytes, signature: signature, trustedKeys: [try Ed25519PrivateKey().publicKey]) },
            { try Catalogue(verifying: bytes, signature: signature, trustedKeys: []) },
            { try Catalogue(verifying: bytes, signature: Array("not base64!".utf8), trustedKeys: [key.publicKey]) },
            { try Catalogue(verifying: bytes, signature: [], trustedKeys: [key.publicKey]) },
        ]
        for refusal in refusals {
            XCTAssertThrowsError(try refusal()) {
                guard case .untrustedCatalogue = $0 as? AppStoreError else { return XCTFail("\($0)") }
            }
        }
    }

    func testUnsupportedOrBrokenCataloguesAreRefused() {
        for text in [
            #"{"version": 3, "apps": []}"#,
            #"{"version": 1, "apps": [{"id": "io.a.b", "version": "1.0.0"}]}"#,
            #"{"version": 1, "apps": [{"id": "io.a.b", "bundle_url": "https://x", "bundle_sha256": "12"}]}"#,
            #"{"version": 1, "apps": [{"id": "nodots", "bundle_url": "https://x", "bundle_sha256": "\#(String(repeating: "a", count: 64))"}]}"#,
            #"{"version": 1, "apps": [{"id": "io.a.b", "bundle_url": "https://x", "bundle_sha256": "\#(String(repeating: "a", count: 64))"},"#
                + #"{"id": "io.a.b", "bundle_url": "https://y", "bundle_sha256": "\#(String(repeating: "a", count: 64))"}]}"#,
            "[]",
        ] {
            XCTAssertThrowsError(try Catalogue(parsing: Array(text.utf8)), text)
        }
    }
}
