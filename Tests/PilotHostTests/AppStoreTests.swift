import Foundation
import PilotAppStore
import PilotCrypto
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// The app store end to end: pilot-rendezvous, pilot-host, the app service and pilotctl as
/// users run them, with catalogues published for the test (`AppCatalogueFixture`) and the
/// example app (`pilot-app-notes`).
final class AppStoreTests: HostProcessTestCase {
    private var catalogue: AppCatalogueFixture!
    static let notes = "dev.pilot-host.notes"

    override func setUpWithError() throws {
        try super.setUpWithError()
        if let reason = AppSandboxReason.unavailable { throw XCTSkip(reason) }
        catalogue = try AppCatalogueFixture(directory: directory.path("catalogue"))
    }

    private var appsRoot: String { directory.path("apps") }

    /// The example app, signed by the fixture's publisher, in the catalogue.
    @discardableResult
    private func publishNotes() throws -> [UInt8] {
        let binary = Array(try Data(contentsOf: bin.appendingPathComponent("pilot-app-notes")))
        let manifest = catalogue.manifest(
            id: Self.notes, binaryPath: "bin/pilot-app-notes", binary: binary, exposes: ["notes.help", "notes.add", "notes.list", "notes.clear"],
            grants: [.init(cap: "fs.write", target: "$APP/notes.jsonl"), .init(cap: "audit.log", target: "*")])
        try catalogue.addBundle(id: Self.notes, members: AppCatalogueFixture.members(manifest, binary: binary))
        return binary
    }

    /// pilot-rendezvous, pilot-host with the catalogue, the app service; alice and bob. Returns
    /// the registry's port.
    @discardableResult
    private func startAll(catalogueURL: String? = nil, hostArguments: [String] = []) throws -> UInt16 {
        let registry = try startRendezvous()
        _ = try start(
            "apps", "pilot-host-apps",
            ["--state-dir", appsRoot, "--socket", runtime + "/apps.sock", "--host-user", "0", "--app-user", "nobody", "--idle-seconds", "60"],
            ready: "serving")
        _ = try start(
            "pilot-host", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registry)", "--beacon", "127.0.0.1:1",
             "--listen", "127.0.0.1:0", "--app-catalogue", catalogueURL ?? catalogue.catalogueURL, "--app-catalogue-keys", catalogue.catalogueKeyText]
                + hostArguments,
            ready: "pilot-host serving")
        for name in ["alice", "bob"] { XCTAssertEqual(pilotctl(["identity", "create", name]).json?["status"], "ok") }
        return registry
    }

    private func app(_ identity: String, _ arguments: [String]) -> (status: Int32, json: JSON?) {
        pilotctl(["--identity", identity, "appstore"] + arguments)
    }

    private func rows(_ sql: String) throws -> [[SQLValue]] {
        try Database(path: directory.path("state") + "/host.db").rows(sql)
    }

    private func storeEntries() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: appsRoot + "/store")) ?? []).filter { !$0.hasPrefix(".") }
    }

    func testAliceInstallsCallsListsAndUninstallsBobCannotCall() throws {
        try publishNotes()
        try catalogue.writeCatalogue()
        try startAll()
        let listed = app("alice", ["catalogue"])
        XCTAssertEqual(listed.json?["data"]?["apps"]?.arrayValue?.first?["id"], .string(Self.notes))
        // Not without approval.
        let unapproved = app("alice", ["install", Self.notes])
        XCTAssertEqual(unapproved.status, 1)
        XCTAssertEqual(unapproved.json?["code"], "invalid_argument")
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 0)
        let installed = app("alice", ["install", Self.notes, "--yes"])
        XCTAssertEqual(installed.json?["status"], "ok", "\(String(describing: installed.json))")
        // The approved grants, in host.db: who, when, which.
        let grants = try rows("SELECT cap, target FROM app_grant ORDER BY position")
        XCTAssertEqual(grants.map { $0[0].text ?? "" }, ["fs.write", "audit.log"])
        XCTAssertEqual(grants.map { $0[1].text ?? "" }, ["$APP/notes.jsonl", "*"])
        let install = try rows("SELECT i.name, a.approved_by, a.approved_at, a.state_dir FROM app_install a JOIN identity i ON i.id = a.identity_id")
        XCTAssertEqual(install.first?[0].text, "alice")
        XCTAssertEqual(install.first?[1].integer, 0)
        XCTAssertGreaterThan(install.first?[2].integer ?? 0, 1_700_000_000)

        let added = app("alice", ["call", Self.notes, "notes.add", #"{"text":"tide at 6"}"#])
        XCTAssertEqual(added.json?["data"]?["reply"]?["count"], 1, "\(String(describing: added.json))")
        let list = app("alice", ["call", Self.notes, "notes.list"])
        XCTAssertEqual(list.json?["data"]?["reply"]?["notes"]?.arrayValue?.first?["text"], "tide at 6")
        XCTAssertEqual(try String(contentsOfFile: appsRoot + "/state/alice/\(Self.notes)/notes.jsonl", encoding: .utf8).contains("tide at 6"), true)
        let help = app("alice", ["call", Self.notes, "notes.help"])
        XCTAssertNotNil(help.json?["data"]?["reply"]?["methods"]?.arrayValue)
        // A method the manifest does not expose never reaches the app.
        let unknown = app("alice", ["call", Self.notes, "notes.format"])
        XCTAssertEqual(unknown.json?["code"], "not_found")
        XCTAssertTrue(unknown.json?["message"]?.stringValue?.contains("method not found") == true)
        let status = app("alice", ["list"]).json?["data"]?["apps"]?.arrayValue?.first
        XCTAssertEqual(status?["state"], "running")
        // bob did not install it.
        let bob = app("bob", ["call", Self.notes, "notes.list"])
        XCTAssertEqual(bob.json?["code"], "not_found")
        XCTAssertTrue(bob.json?["message"]?.stringValue?.contains("bob has no app") == true)

        XCTAssertEqual(app("alice", ["uninstall", Self.notes]).status, 1, "needs --yes")
        XCTAssertEqual(app("alice", ["uninstall", Self.notes, "--yes"]).json?["status"], "ok")
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 0)
        XCTAssertEqual(try rows("SELECT count(*) FROM app_grant").first?.first?.integer, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: appsRoot + "/state/alice/\(Self.notes)"))
        XCTAssertEqual(storeEntries(), [], "no identity uses the bundle any more")
    }

    func testPilotMCPShowsThePlanInstallsOnlyTheApprovedBundleAndCallsIt() async throws {
        try publishNotes()
        try catalogue.writeCatalogue()
        try startAll()
        let alice = try await mcp("alice", runtime: runtime)
        let offered = try await alice.json("pilot_appstore_catalogue", ["search": "notes"])
        XCTAssertEqual(offered["apps"]?.arrayValue?.first?["id"], .string(Self.notes))

        // Without approve: the plan, the grants for the user to read, and nothing installed.
        let plan = try await alice.json("pilot_appstore_install", ["app_id": .string(Self.notes)])
        XCTAssertEqual(plan["installed"], false)
        XCTAssertEqual(plan["grants"]?.arrayValue?.compactMap { $0["cap"]?.stringValue }, ["fs.write", "audit.log"])
        guard let bundle = plan["bundle_sha256"]?.stringValue else { return XCTFail("no bundle hash: \(plan)") }
        XCTAssertTrue(plan["next"]?.stringValue?.contains("approve: true and bundle_sha256: \(bundle)") == true, "\(plan)")
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 0)

        // Approval names the bundle: another one is refused.
        let other = try await alice.call(
            "pilot_appstore_install", ["app_id": .string(Self.notes), "approve": true, "bundle_sha256": .string(String(repeating: "0", count: 64))])
        XCTAssertTrue(other.isError, other.text)
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 0)

        let installed = try await alice.json("pilot_appstore_install", ["app_id": .string(Self.notes), "approve": true, "bundle_sha256": .string(bundle)])
        XCTAssertEqual(installed["bundle_sha256"]?.stringValue, bundle)
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 1)

        let added = try await alice.json(
            "pilot_appstore_call", ["app_id": .string(Self.notes), "method": "notes.add", "payload_json": #"{"text":"tide at 6"}"#])
        XCTAssertEqual(added["reply"]?["count"], 1, "\(added)")
        let listed = try await alice.json("pilot_appstore_call", ["app_id": .string(Self.notes), "method": "notes.list"])
        XCTAssertEqual(listed["reply"]?["notes"]?.arrayValue?.first?["text"], "tide at 6")
        let apps = try await alice.json("pilot_appstore_list")
        XCTAssertEqual(apps["apps"]?.arrayValue?.first?["state"], "running")
        await alice.stop()
    }

    func testAnIdentityWhoseAppSocketPathIsTooLongForAnAddressStillCallsIt() throws {
        try publishNotes()
        try catalogue.writeCatalogue()
        try startAll()
        let name = "agent-with-a-name-long-enough-to-overflow-sun-path-" + String(repeating: "x", count: 10)
        XCTAssertEqual(pilotctl(["identity", "create", name]).json?["status"], "ok")
        XCTAssertEqual(app(name, ["install", Self.notes, "--yes"]).json?["status"], "ok")
        XCTAssertGreaterThan((appsRoot + "/state/\(name)/\(Self.notes)/app.sock").utf8.count, 107)
        XCTAssertEqual(app(name, ["call", Self.notes, "notes.add", #"{"text":"long"}"#]).json?["data"]?["reply"]?["count"], 1)
    }

    /// A bundle directory as a developer has it.
    private func bundleDirectory(_ manifest: Manifest, binary: [UInt8]) throws -> String {
        let root = directory.path("dev-\(manifest.id)")
        try FileManager.default.createDirectory(atPath: root + "/bin", withIntermediateDirectories: true)
        try Data(AppCatalogueFixture.json(of: manifest)).write(to: URL(fileURLWithPath: root + "/manifest.json"))
        try Data(binary).write(to: URL(fileURLWithPath: root + "/" + manifest.binary.path))
        chmod(root + "/" + manifest.binary.path, 0o755)
        return root
    }

    func testSideloadingOnlyWhereAllowedAndOnlyUnderItsPolicy() throws {
        try catalogue.writeCatalogue()
        let binary = Array(try Data(contentsOf: bin.appendingPathComponent("pilot-app-notes")))
        let manifest = catalogue.manifest(
            id: Self.notes, binaryPath: "bin/pilot-app-notes", binary: binary, exposes: ["notes.help", "notes.add", "notes.list"],
            grants: [.init(cap: "fs.write", target: "$APP/notes.jsonl"), .init(cap: "audit.log", target: "*")])
        let local = try bundleDirectory(manifest, binary: binary)
        try startAll()
        let off = app("alice", ["install", local, "--local", "--yes"])
        XCTAssertEqual(off.json?["code"], "permission_denied", "\(String(describing: off.json))")
        XCTAssertTrue(off.json?["message"]?.stringValue?.contains("app-sideload") == true)
        for process in processes where process.name == "pilot-host" { process.stop() }
        processes.removeAll { $0.name == "pilot-host" }
        _ = try start(
            "pilot-host-2", "pilot-host",
            ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:1", "--beacon", "127.0.0.1:1",
             "--listen", "127.0.0.1:0", "--app-sideload", "yes"],
            ready: "pilot-host serving")
        let installed = app("alice", ["install", local, "--local", "--yes"])
        XCTAssertEqual(installed.json?["data"]?["source"], "sideload", "\(String(describing: installed.json))")
        XCTAssertEqual(app("alice", ["call", Self.notes, "notes.add", #"{"text":"sideloaded"}"#]).json?["data"]?["reply"]?["count"], 1)
        // More than the policy allows: refused.
        var greedy = catalogue.manifest(id: "io.test.greedy", binary: binary, exposes: ["greedy.help"], grants: [.init(cap: "net.dial", target: "*")])
        greedy.binary.path = "bin/pilot-app-notes"
        let refused = app("alice", ["install", try bundleDirectory(greedy, binary: binary), "--local", "--yes"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.json?["message"]?.stringValue?.contains("sideload") == true, "\(String(describing: refused.json))")
    }

    /// alice moves from host A to host C, which has an app service and the same catalogue, and
    /// then to host D, which has no app service: on C her app is installed again with the
    /// grants approved on A (the same bundle, no new approval) and answers; D names it as not
    /// installed, with the reason. A keeps its copy of each file it exported.
    func testAMovedIdentityTakesItsAppsWhereTheApprovedBundleIsHad() throws {
        try publishNotes()
        try catalogue.writeCatalogue()
        let registry = try startAll()
        XCTAssertEqual(app("alice", ["install", Self.notes, "--yes"]).json?["status"], "ok")
        let approvedAt = try rows("SELECT approved_at FROM app_install").first?.first?.integer
        XCTAssertEqual(app("alice", ["call", Self.notes, "notes.add", #"{"text":"on A"}"#]).json?["data"]?["reply"]?["count"], 1)

        let (runC, runD) = (directory.path("run-c"), directory.path("run-d"))
        _ = try start(
            "apps-c", "pilot-host-apps",
            ["--state-dir", directory.path("apps-c"), "--socket", runC + "/apps.sock", "--host-user", "0", "--app-user", "nobody", "--idle-seconds", "60"],
            ready: "serving")
        for (label, run) in [("c", runC), ("d", runD)] {
            _ = try start(
                "pilot-host-\(label)", "pilot-host",
                ["--state-dir", directory.path("state-\(label)"), "--runtime-dir", run, "--beacon", "127.0.0.1:1", "--listen", "127.0.0.1:0",
                 "--app-catalogue", catalogue.catalogueURL, "--app-catalogue-keys", catalogue.catalogueKeyText, "--registry", "127.0.0.1:\(registry)"],
                ready: "pilot-host serving")
        }
        func move(_ name: String, from: String, to: String) throws -> (exported: JSON?, imported: JSON?) {
            let key = try XCTUnwrap(ctl(to, ["host-key"])?["data"]?["public_key"]?.stringValue)
            let exported = ctl(from, ["identity", "export", name, "--to-host-key", key])?["data"]
            let file = directory.path("\(name)-\(UUID().uuidString).pilot")
            try Data(try Base64.decode(try XCTUnwrap(exported?["file"]?.stringValue))).write(to: URL(fileURLWithPath: file))
            return (exported, ctl(to, ["identity", "import", file])?["data"])
        }

        // To C: the same bundle from the same catalogue, installed again without asking.
        let (toC, onC) = try move("alice", from: runtime, to: runC)
        XCTAssertEqual(toC?["apps"], 1)
        let kept = try XCTUnwrap(toC?["kept"]?.stringValue)
        XCTAssertTrue(kept.hasPrefix(directory.path("state") + "/exported/alice-"), kept)
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: kept))), try Base64.decode(try XCTUnwrap(toC?["file"]?.stringValue)))
        var info = stat()
        XCTAssertEqual(stat(kept, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        XCTAssertEqual(stat(directory.path("state") + "/exported", &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 0, "nothing of alice's left on A")

        XCTAssertEqual(onC?["apps_restored"], [.string(Self.notes)], "\(String(describing: onC))")
        XCTAssertEqual(onC?["apps_not_restored"], [])
        let rowsC = try Database(path: directory.path("state-c") + "/host.db").rows(
            "SELECT a.approved_by, a.approved_at, g.cap, g.target FROM app_install a JOIN app_grant g ON g.app_id = a.app_id ORDER BY g.position")
        XCTAssertEqual(rowsC.map { $0[2].text ?? "" }, ["fs.write", "audit.log"])
        XCTAssertEqual(rowsC.map { $0[3].text ?? "" }, ["$APP/notes.jsonl", "*"])
        XCTAssertEqual(rowsC.first?[0].integer, 0)
        XCTAssertEqual(rowsC.first?[1].integer, approvedAt, "the approval given on A")
        // It answers on C; its state stayed on A (a new notes file).
        let added = runPilotctl(["--identity", "alice", "appstore", "call", Self.notes, "notes.add", #"{"text":"on C"}"#], runtime: runC, timeout: 30)
        XCTAssertEqual(added?["data"]?["reply"]?["count"], 1, "\(String(describing: added))")

        // To D, which runs no app service: named, with the reason, and nothing installed.
        let (_, onD) = try move("alice", from: runC, to: runD)
        XCTAssertEqual(onD?["apps_restored"], [])
        let missing = onD?["apps_not_restored"]?.arrayValue?.first
        XCTAssertEqual(missing?["app"], .string(Self.notes), "\(String(describing: onD))")
        XCTAssertEqual(missing?["reason"], "this host runs no app service (pilot-host-apps)")
        XCTAssertEqual(try Database(path: directory.path("state-d") + "/host.db").rows("SELECT count(*) FROM app_install").first?.first?.integer, 0)
        XCTAssertEqual(ctl(runD, ["identity", "show", "alice"])?["data"]?["name"], "alice")
    }

    func testAnotherUserCannotCallAlicesApps() throws {
        if let reason = ThrowawayAccounts.unavailableReason { throw XCTSkip(reason) }
        try publishNotes()
        try catalogue.writeCatalogue()
        try startAll()
        XCTAssertEqual(app("alice", ["install", Self.notes, "--yes"]).json?["status"], "ok")
        let stranger = pilotctl(["--identity", "alice", "appstore", "call", Self.notes, "notes.list"], asNobody: true)
        XCTAssertEqual(stranger.json?["code"], "permission_denied")
    }

    func testInstallFromACatalogueServedOverLoopbackHTTP() throws {
        try publishNotes()
        try catalogue.writeCatalogue()
        let port = try LoopbackSocket.freePort()
        let server = try ChildProcess(
            name: "http", executable: URL(fileURLWithPath: "/usr/bin/python3"),
            arguments: ["-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", catalogue.directory], logDirectory: directory.url)
        processes.append(server)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { (try? LoopbackSocket.connect(to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: port))) != nil })
        try startAll(catalogueURL: "http://127.0.0.1:\(port)/catalogue.json")
        XCTAssertEqual(app("alice", ["install", Self.notes, "--yes"]).json?["status"], "ok")
        XCTAssertEqual(app("alice", ["call", Self.notes, "notes.add", #"{"text":"over http"}"#]).json?["data"]?["reply"]?["count"], 1)
    }

    func testEachBadBundleIsRefusedAndLeavesNothing() throws {
        let binary = Array("#!/usr/bin/python3\nprint('x')\n".utf8)
        let exposes = ["bad.help"]
        let grants: [Manifest.Grant] = [.init(cap: "audit.log", target: "*")]
        // The bundle's hash is not the catalogue's.
        let hashed = catalogue.manifest(id: "io.test.badhash", binary: binary, exposes: exposes, grants: grants)
        try catalogue.addBundle(id: "io.test.badhash", members: AppCatalogueFixture.members(hashed, binary: binary), listedHash: String(repeating: "ab", count: 32))
        // Signed by a key other than the one the catalogue pins.
        let stranger = try Ed25519PrivateKey()
        let otherKey = catalogue.manifest(id: "io.test.otherkey", binary: binary, exposes: exposes, grants: grants, signer: stranger)
        try catalogue.addBundle(id: "io.test.otherkey", members: AppCatalogueFixture.members(otherKey, binary: binary))
        // A grant added after signing.
        var regranted = catalogue.manifest(id: "io.test.regrant", binary: binary, exposes: exposes, grants: grants)
        regranted.grants.append(.init(cap: "net.dial", target: "*"))
        try catalogue.addBundle(id: "io.test.regrant", members: AppCatalogueFixture.members(regranted, binary: binary))
        // Entries that escape the bundle, or links.
        let escaping = catalogue.manifest(id: "io.test.escape", binary: binary, exposes: exposes, grants: grants)
        try catalogue.addBundle(
            id: "io.test.escape", members: AppCatalogueFixture.members(escaping, binary: binary) + [.init("../../outside", data: [1])])
        let absolute = catalogue.manifest(id: "io.test.absolute", binary: binary, exposes: exposes, grants: grants)
        try catalogue.addBundle(
            id: "io.test.absolute", members: AppCatalogueFixture.members(absolute, binary: binary) + [.init("/tmp/pilot-absolute", data: [1])])
        let linked = catalogue.manifest(id: "io.test.link", binary: binary, exposes: exposes, grants: grants)
        try catalogue.addBundle(
            id: "io.test.link",
            members: [.init("manifest.json", data: AppCatalogueFixture.json(of: linked)), .init("bin", .directory), .init("bin/app", .symlink, link: "/bin/sh")])
        try catalogue.writeCatalogue()
        try startAll()
        let expected = [
            "io.test.badhash": "sha256", "io.test.otherkey": "not the key the catalogue pins", "io.test.regrant": "does not verify",
            "io.test.escape": "..", "io.test.absolute": "absolute", "io.test.link": "symbolic links",
        ]
        for (id, words) in expected.sorted(by: { $0.key < $1.key }) {
            let refused = app("alice", ["install", id, "--yes"])
            XCTAssertEqual(refused.status, 1, id)
            XCTAssertTrue(refused.json?["message"]?.stringValue?.contains(words) == true, "\(id): \(String(describing: refused.json))")
        }
        XCTAssertEqual(try rows("SELECT count(*) FROM app_install").first?.first?.integer, 0)
        XCTAssertEqual(storeEntries(), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/pilot-absolute"))
    }

    func testACatalogueWithABadSignatureIsRefused() throws {
        try publishNotes()
        try catalogue.writeCatalogue(signer: try Ed25519PrivateKey())
        try startAll()
        let refused = app("alice", ["catalogue"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.json?["message"]?.stringValue?.contains("trusted catalogue key") == true, "\(String(describing: refused.json))")
        XCTAssertEqual(app("alice", ["install", Self.notes, "--yes"]).status, 1)
        XCTAssertEqual(storeEntries(), [])
    }

    func testABinaryChangedInTheStoreIsNeverRunAgain() throws {
        try publishNotes()
        try catalogue.writeCatalogue()
        try startAll()
        XCTAssertEqual(app("alice", ["install", Self.notes, "--yes"]).json?["status"], "ok")
        XCTAssertEqual(app("alice", ["call", Self.notes, "notes.list"]).json?["status"], "ok")
        let bundle = storeEntries().first ?? ""
        let path = appsRoot + "/store/\(bundle)/bin/pilot-app-notes"
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // Root rewrites the bytes in place, then the app dies: its restart is refused.
        var tampered = original
        tampered[tampered.count - 1] ^= 0xFF
        try tampered.write(to: URL(fileURLWithPath: path))
        let pid = app("alice", ["status", Self.notes]).json?["data"]?["pid"]?.integerValue ?? 0
        XCTAssertGreaterThan(pid, 0)
        kill(pid_t(pid), SIGKILL)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 15) { self.app("alice", ["status", Self.notes]).json?["data"]?["state"] == "suspended" })
        let status = app("alice", ["status", Self.notes]).json?["data"]
        XCTAssertTrue(status?["reason"]?.stringValue?.contains("verification failed") == true, "\(String(describing: status))")
        let refused = app("alice", ["call", Self.notes, "notes.list"])
        XCTAssertEqual(refused.json?["code"], "unavailable")
        XCTAssertTrue(processes.first { $0.name == "apps" }?.output.contains("app suspended") == true)
        // Restarted with the bytes still changed: refused again. With the right bytes: runs.
        XCTAssertEqual(app("alice", ["restart", Self.notes]).json?["status"], "ok")
        XCTAssertEqual(app("alice", ["call", Self.notes, "notes.list"]).json?["code"], "unavailable")
        try original.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(app("alice", ["restart", Self.notes]).json?["status"], "ok")
        XCTAssertEqual(app("alice", ["call", Self.notes, "notes.list"]).json?["status"], "ok")
    }

    /// A Python app that crashes at start until /app/ok exists, then serves the envelope.
    static let fragileApp = """
        #!/usr/bin/python3
        import json, os, socket, struct, sys
        if not os.path.exists("/app/ok"):
            sys.exit(3)
        path = sys.argv[sys.argv.index("--socket") + 1]
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(4)
        while True:
            connection, _ = server.accept()
            length = struct.unpack(">I", connection.recv(4, socket.MSG_WAITALL))[0]
            request = json.loads(connection.recv(length, socket.MSG_WAITALL))
            reply = json.dumps({"type": "reply", "req_id": request["req_id"], "payload": {"alive": True}}).encode()
            connection.sendall(struct.pack(">I", len(reply)) + reply)
            connection.close()
        """

    /// Python apps that serve the envelope: the callee echoes what it got and who sent it; the
    /// caller relays a request through its broker and returns the broker's answer.
    static func pythonApp(_ body: String) -> String {
        """
        #!/usr/bin/python3
        import json, os, socket, struct, sys
        def frame(sock, obj):
            data = json.dumps(obj).encode()
            sock.sendall(struct.pack(">I", len(data)) + data)
        def unframe(sock):
            head = sock.recv(4, socket.MSG_WAITALL)
            return json.loads(sock.recv(struct.unpack(">I", head)[0], socket.MSG_WAITALL))
        \(body)
        path = sys.argv[sys.argv.index("--socket") + 1]
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(8)
        while True:
            connection, _ = server.accept()
            request = unframe(connection)
            frame(connection, {"type": "reply", "req_id": request["req_id"], "payload": handle(request)})
            connection.close()
        """
    }

    func testAnAppCallsAnotherThroughItsBrokerOnlyWithAnIPCCallGrant() throws {
        let callee = Array(Self.pythonApp("""
            def handle(request):
                return {"echo": request.get("payload"), "from": request.get("app_id", "")}
            """).utf8)
        let caller = Array(Self.pythonApp("""
            def handle(request):
                ask = request["payload"]
                broker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                broker.connect(os.environ["PILOT_BROKER_SOCKET"])
                frame(broker, {"type": "req", "req_id": "00112233aabbccdd", "app_id": ask["app"], "method": ask["method"], "payload": ask.get("payload", {})})
                return unframe(broker)
            """).utf8)
        var calleeManifest = catalogue.manifest(
            id: "io.test.callee", binary: callee, exposes: ["callee.help", "callee.echo"], grants: [.init(cap: "audit.log", target: "*")])
        calleeManifest.binary.runtime = "python"
        ManifestSignature.sign(&calleeManifest, with: catalogue.publisher)
        var callerManifest = catalogue.manifest(
            id: "io.test.caller", binary: caller, exposes: ["caller.help", "caller.relay"],
            grants: [.init(cap: "ipc.call", target: "io.test.callee.callee.echo")])
        callerManifest.binary.runtime = "python"
        ManifestSignature.sign(&callerManifest, with: catalogue.publisher)
        try catalogue.addBundle(id: "io.test.callee", members: AppCatalogueFixture.members(calleeManifest, binary: callee))
        try catalogue.addBundle(id: "io.test.caller", members: AppCatalogueFixture.members(callerManifest, binary: caller))
        try catalogue.writeCatalogue()
        try startAll()
        for id in ["io.test.callee", "io.test.caller"] { XCTAssertEqual(app("alice", ["install", id, "--yes"]).json?["status"], "ok") }
        XCTAssertEqual(app("bob", ["install", "io.test.caller", "--yes"]).json?["status"], "ok")
        func relay(_ who: String, _ method: String) -> JSON? {
            app(who, ["call", "io.test.caller", "caller.relay", #"{"app":"io.test.callee","method":"\#(method)","payload":{"n":7}}"#])
                .json?["data"]?["reply"]
        }
        // Granted: reaches the callee, which sees who called.
        let granted = relay("alice", "callee.echo")
        XCTAssertEqual(granted?["type"], "reply", "\(String(describing: granted))")
        XCTAssertEqual(granted?["payload"]?["echo"]?["n"], 7)
        XCTAssertEqual(granted?["payload"]?["from"], "io.test.caller")
        // Exposed by the callee, but not granted to the caller.
        let ungranted = relay("alice", "callee.help")
        XCTAssertEqual(ungranted?["type"], "err")
        XCTAssertTrue(ungranted?["error"]?.stringValue?.contains("no ipc.call grant") == true, "\(String(describing: ungranted))")
        // Not exposed at all.
        XCTAssertTrue(relay("alice", "callee.secret")?["error"]?.stringValue?.contains("method not found") == true)
        // bob's caller cannot reach alice's callee: another identity's apps are not its neighbours.
        XCTAssertTrue(relay("bob", "callee.echo")?["error"]?.stringValue?.contains("not installed") == true)
    }

    func testACrashLoopSuspendsTheAppAndRestartBringsItBack() throws {
        let binary = Array(Self.fragileApp.utf8)
        var manifest = catalogue.manifest(id: "io.test.fragile", binary: binary, exposes: ["fragile.help"], grants: [.init(cap: "audit.log", target: "*")])
        manifest.binary.runtime = "python"
        ManifestSignature.sign(&manifest, with: catalogue.publisher)
        try catalogue.addBundle(id: "io.test.fragile", members: AppCatalogueFixture.members(manifest, binary: binary))
        try catalogue.writeCatalogue()
        try startAll()
        XCTAssertEqual(app("alice", ["install", "io.test.fragile", "--yes"]).json?["status"], "ok")
        var calls = 0
        while calls < 12, app("alice", ["status", "io.test.fragile"]).json?["data"]?["state"] != "suspended" {
            XCTAssertEqual(app("alice", ["call", "io.test.fragile", "fragile.help"]).status, 1)
            calls += 1
        }
        let status = app("alice", ["status", "io.test.fragile"]).json?["data"]
        XCTAssertEqual(status?["state"], "suspended", "after \(calls) calls")
        XCTAssertTrue(status?["reason"]?.stringValue?.contains("crashed") == true, "\(String(describing: status))")
        XCTAssertTrue(app("alice", ["call", "io.test.fragile", "fragile.help"]).json?["message"]?.stringValue?.contains("suspended") == true)
        // Fixed, then restarted by its owner: it runs.
        XCTAssertTrue(FileManager.default.createFile(atPath: appsRoot + "/state/alice/io.test.fragile/ok", contents: Data()))
        XCTAssertEqual(app("alice", ["restart", "io.test.fragile"]).json?["status"], "ok")
        XCTAssertEqual(app("alice", ["call", "io.test.fragile", "fragile.help"]).json?["data"]?["reply"]?["alive"], true)
    }
}

/// Why apps cannot run here, or nil.
enum AppSandboxReason {
    static var unavailable: String? {
        if getuid() != 0 { return "the app store's tests run apps as another user: they need root" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/bwrap") { return "bubblewrap is not installed (apt-get install bubblewrap)" }
        return LandlockProbe.unavailableReason
    }
}
