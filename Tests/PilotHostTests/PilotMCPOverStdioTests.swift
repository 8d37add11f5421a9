import Foundation
import MCP
import PilotClient
import PilotMCP
import PilotTestSupport
import PilotWire
import XCTest

/// `pilot-mcp` against a real pilot-host, driven over its standard input and output by the MCP
/// SDK's client: alice's and bob's servers carry trust, messages, a reply waited for and a file
/// between the two identities, and bob stands in for the directory agent that pilot_search
/// asks; failures are tool errors the server outlives; the socket's peer check refuses another
/// user.
final class PilotMCPOverStdioTests: HostProcessTestCase {
    /// The host with alice (tagged worker) and bob (tagged gpu); returns its runtime directory.
    func hostWithAliceAndBob() async throws -> String {
        let registryPort = try startRendezvous()
        let runtime = try startHost(0, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())").runtime
        let admin = PilotClient.admin(runtimeDirectory: runtime)
        for (name, tag) in [("alice", "worker"), ("bob", "gpu")] {
            _ = try await admin.createIdentity(AdminControl.CreateIdentity(identity: name, owner: "0", hostname: name, tags: [tag]))
        }
        return runtime
    }

    /// Waits up to `seconds` for `condition`.
    func eventually(_ what: String, seconds: Double = 20, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        XCTFail("never: \(what)")
    }

    func testTwoIdentitiesTrustEachOtherAndTalkThroughTheirServers() async throws {
        let runtime = try await hostWithAliceAndBob()
        let alice = try await mcp("alice", runtime: runtime)
        let bob = try await mcp("bob", runtime: runtime)

        // Every tool, each with its schema.
        let (tools, _) = try await alice.client.listTools()
        XCTAssertEqual(tools.map(\.name), PilotTools.all.map(\.name))
        for tool in tools { XCTAssertEqual(tool.inputSchema.objectValue?["type"], "object", tool.name) }
        let send = tools.first { $0.name == "pilot_send" }?.inputSchema.objectValue
        XCTAssertEqual(send?["required"], ["peer", "message"])
        XCTAssertEqual(send?["properties"]?.objectValue?["wait_seconds"]?.objectValue?["type"], "integer")

        // Who they are, as resources.
        let me = try await alice.read("pilot://identity")
        XCTAssertEqual(me["name"], "alice")
        let bobInfo = try await bob.read("pilot://identity")
        guard let bobNode = bobInfo["node_id"]?.integerValue, let bobAddress = bobInfo["address"]?.stringValue,
            let aliceAddress = me["address"]?.stringValue
        else { return XCTFail("no node ids: \(me) \(bobInfo)") }

        // Not trusted yet: a tool error, and the server answers the next call.
        let refused = try await alice.call("pilot_send", ["peer": "bob", "message": "too early", "wait_seconds": 0])
        XCTAssertTrue(refused.isError, refused.text)
        XCTAssertTrue(refused.text.hasPrefix("timeout: ") && refused.text.hasSuffix("never answers: pilot_trust_check)"), refused.text)
        let before = try await alice.json("pilot_trust_check", ["target": "bob"])
        XCTAssertEqual(before["state"], "untrusted")
        XCTAssertEqual(before["node_id"]?.integerValue, bobNode)

        // Found by tag.
        let tagged = try await alice.json("pilot_find_by_tag", ["tag": "gpu"])
        XCTAssertEqual(tagged["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [bobNode])

        // alice asks, bob sees the request and approves it.
        _ = try await alice.json("pilot_handshake", ["target": "bob", "reason": "let us talk"])
        try await eventually("bob sees alice's request") {
            let pending = try await bob.json("pilot_pending")
            return pending["pending"]?.arrayValue?.contains { $0["justification"] == "let us talk" } ?? false
        }
        _ = try await bob.json("pilot_approve", ["target": "alice"])
        try await eventually("alice and bob trust each other") {
            try await alice.json("pilot_trust_check", ["target": "bob"])["state"] == "trusted"
        }
        let trust = try await alice.read("pilot://trust")
        XCTAssertEqual(trust["trusted"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [bobNode])

        // A message from alice lands in bob's inbox.
        let sent = try await alice.json("pilot_send", ["peer": "bob", "message": "hello bob", "wait_seconds": 0])
        XCTAssertEqual(sent["to"]?.stringValue, bobAddress)
        let inbox = try await bob.json("pilot_inbox", ["limit": 5])
        let hello = inbox["messages"]?.arrayValue?.last
        XCTAssertEqual(hello?["data"], "hello bob")
        XCTAssertEqual(hello?["from"]?.stringValue, aliceAddress)
        let inboxResource = try await bob.read("pilot://inbox")
        XCTAssertEqual(inboxResource["messages"]?.arrayValue?.last?["data"], "hello bob")

        // alice asks and waits; bob's answer comes back in her call's result.
        let asking = alice.client
        async let question = asking.callTool(name: "pilot_send", arguments: ["peer": "bob", "message": "what is 6 times 7?", "wait_seconds": 30])
        try await eventually("bob has the question") {
            try await bob.json("pilot_inbox")["messages"]?.arrayValue?.last?["data"] == "what is 6 times 7?"
        }
        _ = try await bob.json("pilot_send", ["peer": "alice", "message": "42", "wait_seconds": 0])
        let answered = try await question
        let answer = MCPServerProcess.text(of: answered.content)
        XCTAssertNotEqual(answered.isError, true, answer)
        let reply = try JSON(parsing: answer)["reply"]
        XCTAssertEqual(reply?["data"], "42")
        XCTAssertEqual(reply?["from"]?.stringValue, bobAddress)

        // The directory's pattern, with bob standing in for the directory agent (hostname
        // list-agents): what pilot_search sends, and the reply it returns.
        _ = try await PilotClient(identity: "bob", runtimeDirectory: runtime).setHostname(PilotTools.directoryAgent)
        async let search = asking.callTool(name: "pilot_search", arguments: ["keyword": "weather", "limit": 3])
        try await eventually("the directory has the search") {
            try await bob.json("pilot_inbox")["messages"]?.arrayValue?.last?["data"] == #"/data {"limit":3,"search":"weather"}"#
        }
        _ = try await bob.json("pilot_send", ["peer": "alice", "message": #"{"matches":[{"hostname":"noaa"}]}"#, "wait_seconds": 0])
        let found = try await search
        XCTAssertNotEqual(found.isError, true)
        XCTAssertEqual(MCPServerProcess.text(of: found.content), #"{"matches":[{"hostname":"noaa"}]}"#, "the reply's data, as it came")

        // A file, listed where it arrived.
        let file = directory.url.appendingPathComponent("notes.txt")
        try Data("file for bob".utf8).write(to: file)
        let fileSent = try await alice.json("pilot_send_file", ["peer": .string(bobAddress), "path": .string(file.path)])
        XCTAssertEqual(fileSent["bytes"]?.integerValue, 12)
        let received = try await bob.json("pilot_received")
        XCTAssertEqual(received["files"]?.arrayValue?.compactMap { $0["name"]?.stringValue }, ["notes.txt"])

        // The peers resource reads; lookup finds bob by hostname.
        _ = try await alice.read("pilot://peers")
        let looked = try await alice.json("pilot_lookup", ["target": .string(PilotTools.directoryAgent)])
        XCTAssertEqual(looked["node_id"]?.integerValue, bobNode)

        // Bad arguments and a host error: tool errors, and the server goes on.
        let bad = try await alice.call("pilot_ping", ["target": "bob", "count": "many"])
        XCTAssertTrue(bad.isError)
        XCTAssertEqual(bad.text, "invalid argument: pilot_ping: count must be a whole number")
        let nobody = try await alice.call("pilot_find", ["hostname": "no-such-host"])
        XCTAssertTrue(nobody.isError)
        XCTAssertTrue(nobody.text.hasPrefix("not_found: "), nobody.text)
        let still = try await alice.json("pilot_trust_check", ["target": .string(bobAddress)])
        XCTAssertEqual(still["state"], "trusted")

        await alice.stop()
        await bob.stop()
        if testRun?.hasSucceeded == false { print(alice.errors, bob.errors) }
    }

    /// pilot_search and pilot_help against the real directory agent (`pilot-rendezvous
    /// --directory-addr`): a published identity is found by a word of its description.
    func testPilotSearchFindsAPublishedIdentityThroughTheDirectoryAgent() async throws {
        let registryPort = try startRendezvous(extra: ["--directory-addr", "127.0.0.1:0"])
        let runtime = try startHost(0, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())").runtime
        let admin = PilotClient.admin(runtimeDirectory: runtime)
        for name in ["alice", "forecaster"] {
            _ = try await admin.createIdentity(AdminControl.CreateIdentity(identity: name, owner: "0", hostname: name, tags: []))
        }
        _ = try await PilotClient(identity: "forecaster", runtimeDirectory: runtime).send(
            IdentityControl.SetListing(DirectoryListing(choice: .published, description: "Hourly weather forecasts", category: "data")))
        let alice = try await mcp("alice", runtime: runtime)
        let found = try await alice.call("pilot_search", ["keyword": "weather", "limit": 5])
        XCTAssertFalse(found.isError, found.text)
        let page = try JSON(parsing: found.text)
        XCTAssertEqual(page["source"], "list-agents")
        XCTAssertEqual(page["items"]?.arrayValue?.compactMap { $0["hostname"]?.stringValue }, ["forecaster"])
        XCTAssertEqual(page["items"]?.arrayValue?.first?["description"], "Hourly weather forecasts")
        let help = try await alice.call("pilot_help", ["agent": "list-agents"])
        XCTAssertFalse(help.isError, help.text)
        XCTAssertTrue(help.text.contains("/data {FILTERS}"), help.text)
        await alice.stop()
    }

    func testAnotherUsersServerIsRefusedAtStartSayingWhy() async throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to run pilot-mcp as uid 65534 (uid \(getuid()))")
        }
        let runtime = try await hostWithAliceAndBob()
        // carol lets in a group too: her socket is open to all (0666), and the host's peer check decides.
        _ = try await PilotClient.admin(runtimeDirectory: runtime).createIdentity(AdminControl.CreateIdentity(identity: "carol", owner: "0", groups: ["root"]))
        let pilotMCP = bin.appendingPathComponent("pilot-mcp").path
        func asNobody(_ identity: String) -> ChildProcess.Result {
            ChildProcess.run(
                "/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", pilotMCP, "--identity", identity, "--runtime-dir", runtime],
                timeout: 20)
        }
        // alice's socket is her owner's alone (0600): the kernel refuses the connection.
        let refused = asNobody("alice")
        XCTAssertEqual(refused.status, 1, refused.output)
        XCTAssertEqual(refused.stdout, "", "nothing on the protocol's stream")
        XCTAssertTrue(refused.output.hasPrefix("pilot-mcp: cannot use the identity socket \(runtime)/id/alice.sock: "), refused.output)
        XCTAssertTrue(refused.output.contains("Permission denied"), refused.output)
        XCTAssertTrue(refused.output.contains("not uid 65534: run pilot-mcp as the identity's owner"), refused.output)
        // carol's: the host's peer check (SO_PEERCRED) answers, naming the uid.
        let denied = asNobody("carol")
        XCTAssertEqual(denied.status, 1, denied.output)
        XCTAssertEqual(denied.stdout, "")
        XCTAssertTrue(
            denied.output.contains("carol.sock: permission_denied: permission denied: uid 65534"), denied.output)

        // Its owner (root here) is served.
        let alice = try await mcp("alice", runtime: runtime)
        let me = try await alice.read("pilot://identity")
        XCTAssertEqual(me["name"], "alice")
        await alice.stop()
    }
}
