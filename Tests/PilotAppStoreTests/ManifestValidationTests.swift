import PilotAppStore
import XCTest

final class ManifestValidationTests: XCTestCase {
    private func good() -> Manifest {
        Manifest(
            id: "io.example.tides", appVersion: "1.2.0-rc.1", manifestVersion: 1,
            binary: .init(runtime: "go", path: "bin/tides", sha256: String(repeating: "ab", count: 32)),
            exposes: ["tides.next", "tides.help"],
            grants: [.init(cap: "fs.read", target: "$APP/config.json"), .init(cap: "audit.log", target: "*")],
            protection: "shareable",
            store: .init(publisher: "ed25519:DCTaLguTfK6hGACnyPRXRp2WgXry2mgdwwXPYFO6djY=", signature: "x"))
    }

    private func problems(_ change: (inout Manifest) -> Void, requireHelp: Bool = true) -> [String] {
        var manifest = good()
        change(&manifest)
        return manifest.problems(requireHelp: requireHelp)
    }

    func testAGoodManifestHasNoProblems() {
        XCTAssertEqual(good().problems(requireHelp: true), [])
    }

    func testEachBrokenRuleIsNamed() {
        let cases: [(String, (inout Manifest) -> Void)] = [
            ("id", { $0.id = "tides" }),
            ("id", { $0.id = "io.Example.tides" }),
            ("id", { $0.id = "io..tides" }),
            ("app_version", { $0.appVersion = "1.2" }),
            ("app_version", { $0.appVersion = "1.2.0-" }),
            ("manifest_version", { $0.manifestVersion = 0 }),
            ("binary.runtime", { $0.binary.runtime = "ruby" }),
            ("binary.path", { $0.binary.path = "/usr/bin/tides" }),
            ("binary.path", { $0.binary.path = "bin/../../etc/passwd" }),
            ("binary.path", { $0.binary.path = "bin//tides" }),
            ("binary.path", { $0.binary.path = "" }),
            ("binary.sha256", { $0.binary.sha256 = String(repeating: "AB", count: 32) }),
            ("binary.sha256", { $0.binary.sha256 = "abc" }),
            ("exposes", { $0.exposes = ["tides.next"] }),
            ("exposes", { $0.exposes = ["tides.help", "other.help"] }),
            ("exposes", { $0.exposes = ["tides.help", "has space"] }),
            ("exposes", { $0.exposes = ["tides.help", "tides.help"] }),
            ("at least one grant", { $0.grants = [] }),
            ("grants[0].cap", { $0.grants[0].cap = "root.everything" }),
            ("grants[0].target", { $0.grants[0].target = "  " }),
            ("proc.exec", { $0.grants[0] = .init(cap: "proc.exec", target: "/bin/../bin/sh") }),
            ("proc.exec", { $0.grants[0] = .init(cap: "proc.exec", target: "sh -c") }),
            ("proc.exec", { $0.grants[0] = .init(cap: "proc.exec", target: "/usr/bin/*") }),
            ("grants[0].if.kind", { $0.grants[0].condition = .leaf(kind: "whenever", params: [:]) }),
            ("grants[0].if", { $0.grants[0].condition = .mixed(kind: "rate", params: [:], op: "and", compose: []) }),
            ("grants[0].if", { $0.grants[0].condition = .mixed(kind: "", params: [:], op: "", compose: []) }),
            ("needs at least 2", { $0.grants[0].condition = .composite(op: "and", compose: [.leaf(kind: "rate", params: [:])]) }),
            ("not needs exactly 1", { $0.grants[0].condition = .composite(op: "not", compose: []) }),
            ("op", { $0.grants[0].condition = .composite(op: "xor", compose: [.leaf(kind: "rate", params: [:])]) }),
            ("protection", { $0.protection = "secret" }),
            ("store.publisher", { $0.store.publisher = "rsa:abc" }),
            ("store.signature", { $0.store.signature = " " }),
        ]
        for (expected, change) in cases {
            let found = problems(change)
            XCTAssertTrue(found.contains { $0.contains(expected) }, "expected a problem naming \(expected), got \(found)")
        }
    }

    func testHelpIsRequiredOnlyForCatalogueInstalls() {
        XCTAssertEqual(problems({ $0.exposes = ["hello.echo"] }, requireHelp: false), [])
    }

    func testParsingRefusesWrongTypesAndKeepsUnknownMembersOut() throws {
        XCTAssertThrowsError(try Manifest(parsing: Array(#"{"id": 5}"#.utf8)))
        XCTAssertThrowsError(try Manifest(parsing: Array(#"{"grants": [{"cap": "fs.read", "target": "x", "if": 3}]}"#.utf8)))
        XCTAssertThrowsError(try Manifest(parsing: Array("[]".utf8)))
        XCTAssertThrowsError(try Manifest(parsing: Array("{".utf8)))
        let parsed = try Manifest(parsing: Array(#"{"id": "io.a.b", "whatever": [1, 2], "manifest_version": 2}"#.utf8))
        XCTAssertEqual(parsed.id, "io.a.b")
        XCTAssertEqual(parsed.manifestVersion, 2)
    }

    func testTheSideloadPolicyAllowsLittle() throws {
        var sideload = good()
        sideload.grants = [.init(cap: "fs.write", target: "$APP/data.db"), .init(cap: "audit.log", target: "*")]
        XCTAssertNoThrow(try sideload.checkSideloadPolicy())
        let refused: [(inout Manifest) -> Void] = [
            { $0.grants.append(.init(cap: "net.dial", target: "example.com")) },
            { $0.grants.append(.init(cap: "fs.read", target: "/etc/passwd")) },
            { $0.grants.append(.init(cap: "fs.read", target: "$APP/../host.db")) },
            { $0.grants.append(.init(cap: "fs.read", target: "$APP/")) },
            { $0.grants[0].condition = .leaf(kind: "rate", params: [:]) },
            { $0.protection = "guarded" },
            { $0.depends = [] ; $0.grants.append(.init(cap: "ipc.call", target: "*")) },
        ]
        for change in refused {
            var manifest = sideload
            change(&manifest)
            XCTAssertThrowsError(try manifest.checkSideloadPolicy()) {
                guard case .sideloadRefused = $0 as? AppStoreError else { return XCTFail("\($0)") }
            }
        }
    }

    func testGrantPatternsMatchAsTheOfficialBrokerDoes() {
        var manifest = good()
        manifest.grants = [.init(cap: "ipc.call", target: "io.example.maps.*"), .init(cap: "ipc.call", target: "io.other.app.ping")]
        XCTAssertTrue(manifest.grants("ipc.call", covering: "io.example.maps.route"))
        XCTAssertTrue(manifest.grants("ipc.call", covering: "io.other.app.ping"))
        XCTAssertFalse(manifest.grants("ipc.call", covering: "io.other.app.pong"))
        XCTAssertFalse(manifest.grants("ipc.call", covering: "io.example.mapsx.route"))
        XCTAssertFalse(manifest.grants("fs.read", covering: "io.example.maps.route"))
        manifest.grants = [.init(cap: "ipc.call", target: "*")]
        XCTAssertTrue(manifest.grants("ipc.call", covering: "anything.at.all"))
    }
}
