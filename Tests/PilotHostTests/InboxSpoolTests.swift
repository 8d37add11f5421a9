import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// Each identity's inbox copied into its spool in the official daemon's file format
/// (`spool-dir`, docs/PROTOCOL.md §12.4), so the official pilotctl's `inbox`, `received` and
/// `send-message --wait`, which read `$HOME/.pilot` by themselves, work with `HOME` set to the
/// identity's spool; and our pilotctl's `send-message --wait/--reply-to/--count/--data-file`.
/// The official client's part is skipped, saying why, without the official binaries.
final class InboxSpoolTests: HostProcessTestCase {
    private var spool: String { directory.path("spool") }
    private var registry = ""

    /// The official pilotctl with `--json` as identity `name` of the host at `runtime`, with its
    /// `HOME` at that identity's spool; started, not waited for.
    private func startOfficial(_ official: OfficialPilot, _ runtime: String, _ name: String, _ arguments: [String], label: String) throws -> ChildProcess {
        try ChildProcess(
            name: label, executable: official.pilotctl, arguments: ["--json"] + arguments,
            environment: ["HOME": "\(spool)/\(name)", "PILOT_SOCKET": "\(runtime)/id/\(name).sock", "PILOT_REGISTRY": registry],
            logDirectory: URL(fileURLWithPath: directory.path("")))
    }

    /// What a started official pilotctl printed, once it ended (within 30 s), as JSON.
    private func finished(_ process: ChildProcess) throws -> JSON {
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 30) { !process.isRunning }, "\(process.name) did not end: \(process.output)")
        process.stop()
        let text = process.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let json = try? JSON(parsing: text) else { throw HostTestError("\(process.name): not JSON: \(text.prefix(400))") }
        return json
    }

    /// The newest message in `name`'s inbox (our pilotctl), once there is one from `sender` whose data is `data`.
    private func arrived(_ runtime: String, _ name: String, data: String) -> JSON? {
        var found: JSON?
        _ = ChildProcess.waitUntil(timeout: 15) {
            found = self.ctl(runtime, ["inbox", "--identity", name])?["data"]?["messages"]?.arrayValue?.last { $0["data"]?.stringValue == data }
            return found != nil
        }
        return found
    }

    /// Two identities that trust each other, alice's owned by `owner` (nil: the caller).
    private func trustedPair(owner: String? = nil) throws -> (runtime: String, alice: Int64, bob: Int64) {
        let registryPort = try startRendezvous()
        registry = "127.0.0.1:\(registryPort)"
        let runtime = try startHosts(1, registryPort: registryPort, extra: ["--spool-dir", spool])[0]
        let alice = try XCTUnwrap(
            ctl(runtime, ["identity", "create", "alice", "--hostname", "alice"] + (owner.map { ["--owner", $0] } ?? []))?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(runtime, ["identity", "create", "bob", "--hostname", "bob"])?["data"]?["node_id"]?.integerValue)
        XCTAssertEqual(ctl(runtime, ["handshake", "\(bob)", "spool test", "--identity", "alice"])?["status"], "ok")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(runtime, ["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue?.isEmpty == false
        })
        XCTAssertEqual(ctl(runtime, ["approve", "\(alice)", "--identity", "bob"])?["status"], "ok")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(runtime, ["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.isEmpty == false
        })
        return (runtime, alice, bob)
    }

    func testTheSpoolHoldsEachMessageInTheOfficialFormatForItsOwnerAndGoesWithTheIdentity() throws {
        let accounts = ThrowawayAccounts()
        let owner = ThrowawayAccounts.unavailableReason == nil ? try accounts.user("spool") : nil
        if owner == nil { print("InboxSpoolTests: alice stays the caller's: \(ThrowawayAccounts.unavailableReason ?? "")") }
        let (runtime, _, bob) = try trustedPair(owner: owner)
        let ownerUID = owner.map { getpwnam($0).pointee.pw_uid } ?? getuid()

        // bob sends alice a message and a reply to a made-up id: two files, hers, whole.
        XCTAssertEqual(ctl(runtime, ["send-message", "alice", "--data", "hello alice", "--identity", "bob"])?["status"], "ok")
        XCTAssertEqual(ctl(runtime, ["send-message", "alice", "--data", #"{"n":1}"#, "--type", "json", "--reply-to", "abc123", "--identity", "bob"])?["status"], "ok")
        let inbox = "\(spool)/alice/.pilot/inbox"
        var files: [String] = []
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            files = ((try? FileManager.default.contentsOfDirectory(atPath: inbox)) ?? []).sorted()
            return files.count == 2
        }, "\(files)")
        let listed = ctl(runtime, ["inbox", "--identity", "alice"])?["data"]?["messages"]?.arrayValue ?? []
        // Our inbox ids are the files' names.
        XCTAssertEqual(Set(listed.compactMap { $0["id"]?.stringValue.map { $0 + ".json" } }), Set(files))
        let pattern = try NSRegularExpression(pattern: #"^(TEXT|JSON)-\d{8}-\d{6}\.\d{3}-\d{6}\.json$"#)
        for file in files {
            XCTAssertEqual(pattern.numberOfMatches(in: file, range: NSRange(file.startIndex..., in: file)), 1, file)
            var status = stat()
            XCTAssertEqual(stat("\(inbox)/\(file)", &status), 0)
            XCTAssertEqual(status.st_uid, ownerUID, "\(file) is not the owner's")
            XCTAssertEqual(status.st_mode & 0o777, 0o600, file)
        }
        var home = stat()
        XCTAssertEqual(stat("\(spool)/alice", &home), 0)
        XCTAssertEqual(home.st_uid, ownerUID)
        XCTAssertEqual(home.st_mode & 0o777, 0o770)

        // The records: compact JSON, sorted keys, the official fields.
        let text = try String(contentsOfFile: "\(inbox)/\(try XCTUnwrap(files.first { $0.hasPrefix("TEXT-") }))", encoding: .utf8)
        let record = try JSON(parsing: text)
        XCTAssertEqual(record.encodedString(), text, "not compact with sorted keys")
        XCTAssertEqual(Set(record.objectValue?.keys ?? [:].keys), ["bytes", "data", "data_encoding", "from", "message_id", "received_at", "type"])
        XCTAssertEqual(record["data"], "hello alice")
        XCTAssertEqual(record["data_encoding"], "utf8")
        XCTAssertEqual(record["from"]?.stringValue, Address(node: UInt32(bob)).description)
        XCTAssertEqual(record["type"], "TEXT")
        XCTAssertEqual(record["message_id"]?.stringValue?.count, 32)
        let reply = try JSON(parsing: Data(contentsOf: URL(fileURLWithPath: "\(inbox)/\(try XCTUnwrap(files.first { $0.hasPrefix("JSON-") }))")))
        XCTAssertEqual(reply["reply_to"], "abc123")

        // A file bob sends is in alice's received/ under its name.
        let report = directory.path("report.txt")
        try Data("quarterly".utf8).write(to: URL(fileURLWithPath: report))
        XCTAssertEqual(ctl(runtime, ["send-file", "alice", report, "--identity", "bob"])?["status"], "ok")
        let received = ((try? FileManager.default.contentsOfDirectory(atPath: "\(spool)/alice/.pilot/received")) ?? [])
        XCTAssertEqual(received.count, 1, "\(received)")
        XCTAssertTrue(received.first?.hasPrefix("report-") == true && received.first?.hasSuffix(".txt") == true, "\(received)")
        XCTAssertEqual(try? String(contentsOfFile: "\(spool)/alice/.pilot/received/\(received[0])", encoding: .utf8), "quarterly")

        // Clearing with our pilotctl clears the copy; deleting the identity removes its spool.
        XCTAssertEqual(ctl(runtime, ["inbox", "--clear", "--identity", "alice"])?["status"], "ok")
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: inbox))?.count, 0)
        XCTAssertEqual(ctl(runtime, ["identity", "delete", "alice"])?["status"], "ok")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(spool)/alice"), "a deleted identity's spool stayed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(spool)/bob/.pilot/inbox"))
    }

    func testOurSendMessageWaitsForTheReplyNamingItAndTakesReplyToCountAndDataFile() throws {
        let (runtime, alice, _) = try trustedPair()

        // --wait: bob answers with --reply-to the inbox id of alice's message.
        let asking = try ChildProcess(
            name: "ask", executable: bin.appendingPathComponent("pilotctl"),
            arguments: ["send-message", "bob", "--data", "question", "--wait", "15s", "--identity", "alice", "--json", "--runtime-dir", runtime],
            logDirectory: URL(fileURLWithPath: directory.path("")))
        let question = try XCTUnwrap(arrived(runtime, "bob", data: "question"))
        // An answer naming another message is never taken.
        XCTAssertEqual(ctl(runtime, ["send-message", "alice", "--data", "not yours", "--reply-to", "0123", "--identity", "bob"])?["status"], "ok")
        let id = try XCTUnwrap(question["id"]?.stringValue)
        XCTAssertEqual(ctl(runtime, ["send-message", "alice", "--data", "answer", "--reply-to", id, "--identity", "bob"])?["status"], "ok")
        let asked = try finished(asking)
        XCTAssertEqual(asked["status"], "ok", "\(asked)")
        XCTAssertEqual(asked["data"]?["reply"]?["data"], "answer", "\(asked)")
        XCTAssertEqual(asked["data"]?["reply"]?["reply_to"], question["message_id"])
        XCTAssertEqual(asked["data"]?["reply"]?["data_encoding"], "utf8")

        // No reply: a timeout error, after about the wait.
        let started = Date()
        let silent = runPilotctl(["send-message", "bob", "--data", "anyone?", "--wait", "1s", "--identity", "alice"], runtime: runtime, timeout: 20)
        XCTAssertEqual(silent?["code"], "timeout", "\(String(describing: silent))")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 1)

        // --count: each send its own id; --data-file with binary bytes, kept whole.
        let counted = ctl(runtime, ["send-message", "bob", "--data", "tick", "--count", "3", "--identity", "alice"])
        XCTAssertEqual(counted?["data"]?["seq"]?.integerValue, 2, "\(String(describing: counted))")
        let ticks = (ctl(runtime, ["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue ?? []).filter { $0["data"] == "tick" }
        XCTAssertEqual(ticks.count, 3)
        XCTAssertEqual(Set(ticks.compactMap { $0["message_id"]?.stringValue }).count, 3)
        let blob: [UInt8] = [0, 0xFF, 0xFE, 10, 13, 0x80]
        let path = directory.path("blob.bin")
        try Data(blob).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(ctl(runtime, ["send-message", "bob", "--data-file", path, "--type", "binary", "--identity", "alice"])?["status"], "ok")
        let binary = (ctl(runtime, ["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue ?? []).last
        XCTAssertEqual(binary?["type"], "BINARY")
        XCTAssertEqual(binary?["data_b64"]?.stringValue.flatMap { try? Base64.decode($0) }, blob)
        XCTAssertEqual(binary?["from"]?.stringValue, Address(node: UInt32(alice)).description)
    }

    func testTheOfficialPilotctlReadsTheSpoolForInboxReceivedAndSendMessageWait() throws {
        let official: OfficialPilot
        do { official = try OfficialPilot.binaries() } catch { throw XCTSkip("official pilotctl unavailable: \(error)") }
        let (runtime, alice, bob) = try trustedPair()

        // The official pilotctl, as alice, asks bob and waits; bob answers with our pilotctl.
        let asking = try startOfficial(official, runtime, "alice", ["send-message", "\(bob)", "--data", "official question", "--wait", "15s"], label: "official-ask")
        let question = try XCTUnwrap(arrived(runtime, "bob", data: "official question"))
        XCTAssertEqual(question["message_id"]?.stringValue?.count, 32, "the official pilotctl tags its messages")
        let id = try XCTUnwrap(question["id"]?.stringValue)
        XCTAssertEqual(ctl(runtime, ["send-message", "\(alice)", "--data", "official answer", "--reply-to", id, "--identity", "bob"])?["status"], "ok")
        let asked = try finished(asking)
        XCTAssertEqual(asked["status"], "ok", "\(asked)")
        XCTAssertEqual(asked["data"]?["reply"]?["data"], "official answer", "\(asked)")

        // Its inbox and received, as bob, with HOME at bob's spool.
        let inbox = try finished(try startOfficial(official, runtime, "bob", ["inbox"], label: "official-inbox"))
        let messages = inbox["data"]?["messages"]?.arrayValue ?? []
        XCTAssertTrue(messages.contains { $0["from"]?.stringValue == Address(node: UInt32(alice)).description }, "\(inbox)")
        XCTAssertEqual(inbox["data"]?["total"]?.integerValue, 1, "\(inbox)")
        let file = directory.path("notes.md")
        try Data("# notes".utf8).write(to: URL(fileURLWithPath: file))
        XCTAssertEqual(ctl(runtime, ["send-file", "bob", file, "--identity", "alice"])?["status"], "ok")
        let received = try finished(try startOfficial(official, runtime, "bob", ["received"], label: "official-received"))
        XCTAssertEqual(received["data"]?["total"]?.integerValue, 1, "\(received)")

        // A 2 MiB message: our inbox lists it (without its data) and reads it whole.
        let big = String(repeating: "0123456789abcdef", count: 1 << 17)
        let bigFile = directory.path("big.txt")
        try Data(big.utf8).write(to: URL(fileURLWithPath: bigFile))
        let sentBig = try finished(try startOfficial(official, runtime, "alice", ["send-message", "\(bob)", "--data-file", bigFile], label: "official-big"))
        XCTAssertEqual(sentBig["status"], "ok", "\(sentBig)")
        let listing = ctl(runtime, ["inbox", "--identity", "bob"])
        let listed = try XCTUnwrap(listing?["data"]?["messages"]?.arrayValue?.first { $0["bytes"]?.integerValue == Int64(big.utf8.count) }, "\(String(describing: listing))")
        XCTAssertEqual(listed["truncated"], true)
        let read = runPilotctl(["inbox", "read", try XCTUnwrap(listed["id"]?.stringValue), "--identity", "bob"], runtime: runtime, timeout: 30)
        XCTAssertEqual(read?["data"]?["data"]?.stringValue, big, "the large message did not come back whole")
    }
}
