import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Our pilotctl's `--json` prints every key the official 1.18 pilotctl prints, for the commands
/// both have: the same states set up on both sides of one overlay (a mutually trusted peer, a
/// request waiting, a message in the inbox, a file received, a tunnel, a bench), each command
/// run by the official pilotctl on an official daemon and by ours on a pilot-host identity,
/// and their keys compared to the bottom (the keys of objects in arrays too). Ours may have
/// more. Skipped, saying why, without the official binaries.
final class PilotctlKeysTests: OfficialOverlayTestCase {
    /// Every key path of `json`: an object's keys as `parent.key`, and the keys of the objects
    /// in an array under `parent[]`.
    static func keyPaths(_ json: JSON, under parent: String = "") -> Set<String> {
        switch json {
        case .object(let fields):
            return fields.reduce(into: Set<String>()) { paths, field in
                let path = parent.isEmpty ? field.key : "\(parent).\(field.key)"
                paths.insert(path)
                paths.formUnion(keyPaths(field.value, under: path))
            }
        case .array(let elements):
            return elements.reduce(into: Set<String>()) { paths, element in paths.formUnion(keyPaths(element, under: parent + "[]")) }
        default:
            return []
        }
    }

    /// The key paths of `official` that `ours` lacks.
    static func missing(in ours: JSON, from official: JSON) -> [String] {
        keyPaths(official).subtracting(keyPaths(ours)).sorted()
    }

    func testTheComparisonSeesAKeyMissingAtAnyDepth() {
        let official: JSON = ["total": 1, "trusted": [["node_id": 2, "mutual": true]]]
        XCTAssertEqual(Self.missing(in: ["total": 1, "trusted": [["node_id": 2, "mutual": false, "ours": 1]], "extra": 1], from: official), [])
        XCTAssertEqual(Self.missing(in: ["total": 1, "trusted": [["node_id": 2]]], from: official), ["trusted[].mutual"])
        XCTAssertEqual(Self.missing(in: ["trusted": [["node_id": 2, "mutual": true]]], from: official), ["total"])
        XCTAssertEqual(Self.missing(in: ["total": 1, "trusted": []], from: official), ["trusted[].mutual", "trusted[].node_id"])
    }

    func testOurPilotctlPrintsEveryKeyOfTheOfficialOnesOutput() throws {
        let (overlay, alpha) = try overlay()
        defer { overlay.stopAll() }
        let beta = try overlay.startDaemon("beta", extra: ["-public"])
        let host = try startHost(overlay, listen: "127.0.0.1:\(try LoopbackSocket.freePort())")
        defer { host.stop() }
        func ours(_ arguments: [String], as identity: String = "delta") throws -> JSON {
            let reply = pilotctl(overlay, arguments + ["--identity", identity])
            guard reply?["status"] == "ok", let data = reply?["data"] else {
                throw HarnessError("our pilotctl \(arguments.joined(separator: " ")): \(String(describing: reply))\n\(host.output.suffix(2000))")
            }
            return data
        }
        func pending(_ read: () throws -> JSON) -> Int { (try? read()["pending"]?.arrayValue?.count) ?? 0 }
        func trusted(_ read: () throws -> JSON) -> Int { (try? read()["trusted"]?.arrayValue?.count) ?? 0 }
        XCTAssertEqual(pilotctl(overlay, ["identity", "create", "delta", "--hostname", "delta"])?["status"], "ok")
        XCTAssertEqual(pilotctl(overlay, ["identity", "create", "carol", "--hostname", "carol"])?["status"], "ok")
        let file = overlay.directory.path("notes.txt")
        try Data("notes for the keys test\n".utf8).write(to: URL(fileURLWithPath: file))

        // The official side, daemon alpha: beta asked and was approved (mutual trust), carol's
        // request waits, beta sent a message and a file (alpha's ~/.pilot, which its pilotctl reads).
        _ = try overlay.ctl("beta", ["handshake", "\(alpha)", "keys test"])
        try overlay.eventually("beta's request at alpha", timeout: 20) { pending { try overlay.ctl("alpha", ["pending"]) } == 1 }
        _ = try overlay.ctl("alpha", ["approve", "\(beta)"])
        try overlay.eventually("beta trusting alpha", timeout: 20) { trusted { try overlay.ctl("beta", ["trust"]) } == 1 }
        _ = try ours(["handshake", "\(alpha)", "carol waits"], as: "carol")
        try overlay.eventually("carol's request at alpha", timeout: 20) { pending { try overlay.ctl("alpha", ["pending"]) } == 1 }
        _ = try overlay.ctl("beta", ["send-message", "\(alpha)", "--data", "hello alpha"])
        _ = try overlay.ctl("beta", ["send-file", "\(alpha)", file])

        // Ours, identity delta: the same with beta, and carol's request.
        _ = try ours(["handshake", "\(beta)", "keys test"])
        try overlay.eventually("delta's request at beta", timeout: 20) { pending { try overlay.ctl("beta", ["pending"]) } == 1 }
        let delta = try XCTUnwrap(try overlay.ctl("beta", ["pending"])["pending"]?.arrayValue?.first?["node_id"]?.integerValue)
        _ = try overlay.ctl("beta", ["approve", "\(delta)"])
        try overlay.eventually("delta trusting beta", timeout: 20) { trusted { try ours(["trust"]) } == 1 }
        _ = try ours(["handshake", "delta", "carol waits"], as: "carol")
        try overlay.eventually("carol's request at delta", timeout: 20) { pending { try ours(["pending"]) } == 1 }
        _ = try overlay.ctl("beta", ["send-message", "\(delta)", "--data", "hello delta"])
        _ = try overlay.ctl("beta", ["send-file", "\(delta)", file])

        // Each command on both sides, info last (after the bench, with its tunnel and streams).
        let commands: [[String]] = [
            ["trust"], ["pending"], ["inbox"], ["received"], ["find", "beta"], ["lookup", "\(beta)"], ["bench", "\(beta)", "1"],
            ["peers"], ["info"],
        ]
        for command in commands {
            let official = try overlay.ctl("alpha", command)
            let mine = try ours(command)
            let missing = Self.missing(in: mine, from: official)
            XCTAssertEqual(missing, [], "pilotctl \(command.joined(separator: " ")): ours lacks \(missing)\nofficial: \(official.encodedString())\nours: \(mine.encodedString())")
            // Where the official reply has rows (objects), ours has rows too: their keys were compared.
            for (key, rows) in official.objectValue ?? [:] where rows.arrayValue?.first?.objectValue != nil {
                XCTAssertFalse(mine[key]?.arrayValue?.isEmpty ?? true, "pilotctl \(command.joined(separator: " ")): no \(key) rows of ours")
            }
        }
    }
}
