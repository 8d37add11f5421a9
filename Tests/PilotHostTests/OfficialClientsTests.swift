import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// The official 1.18 `pilotctl`, unchanged, on pilot-host identity sockets: it speaks the 1.18
/// driver protocol (docs/PROTOCOL.md §12.2), which each identity socket serves beside
/// pilot-host's JSON protocol, chosen per connection from its first frame. Every reply is parsed
/// and checked. Skipped, saying why, without the official binaries (PyPI out of reach).
final class OfficialClientsTests: HostProcessTestCase {
    /// The keys the official pilotctl prints for `info` on an official 1.18 daemon (its 33
    /// keys but `endpoint`, which pilotctl leaves out).
    static let referenceInfoKeys: Set<String> = [
        "node_id", "address", "hostname", "uptime_secs", "connections", "ports", "peers", "encrypted_peers",
        "authenticated_peers", "encrypt", "identity", "public_key", "email", "bytes_sent", "bytes_recv", "pkts_sent", "pkts_recv",
        "tunnel_encryption_success", "tunnel_encryption_failure", "handshake_pending_count", "version", "networks", "peer_list",
        "conn_list", "accept_queue_drops", "webhook_queue_dropped", "webhook_circuit_skips", "relay_peer_count", "beacon_addr", "motd",
        "features", "transport",
    ]

    private var official: OfficialPilot!
    private var home: String { directory.path("home") }
    /// The registry the official pilotctl asks itself (`lookup`, and for a peer not trusted yet).
    private var registry = ""

    override func setUpWithError() throws {
        try super.setUpWithError()
        do { official = try OfficialPilot.binaries() } catch { throw XCTSkip("official pilotctl unavailable: \(error)") }
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
    }

    /// The official pilotctl with `--json` on identity `name`'s socket of the host with runtime
    /// `runtime`: its exit status and the envelope it printed. Bounded: a client left waiting
    /// for a reply it cannot read is a failure, not a hang.
    private func officialCtl(_ runtime: String, _ name: String, _ arguments: [String], user: String? = nil) throws -> (status: Int32, json: JSON) {
        var command = [official.pilotctl.path, "--json"] + arguments
        if let user { command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups"] + command }
        let started = Date()
        let result = ChildProcess.run(
            command[0], Array(command.dropFirst()),
            environment: ["HOME": home, "PILOT_SOCKET": "\(runtime)/id/\(name).sock", "PILOT_REGISTRY": registry], timeout: 20)
        XCTAssertLessThan(Date().timeIntervalSince(started), 15, "official pilotctl \(arguments) did not finish: \(result.output)")
        // The envelope goes to stdout, an error's to stderr.
        let printed = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let text = printed.isEmpty ? result.output.trimmingCharacters(in: .whitespacesAndNewlines) : printed
        guard let json = try? JSON(parsing: text) else { throw HostTestError("official pilotctl \(arguments): not JSON: \(result.output.prefix(400))") }
        return (result.status, json)
    }

    func testTheOfficialPilotctlRunsOnIdentitySockets() throws {
        let registryPort = try startRendezvous()
        registry = "127.0.0.1:\(registryPort)"
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        let alice = try XCTUnwrap(ctl(runtime, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(runtime, ["identity", "create", "bob"])?["data"]?["node_id"]?.integerValue)

        // info: every key of the reference, with this identity's figures.
        let info = try officialCtl(runtime, "alice", ["info"])
        XCTAssertEqual(info.status, 0)
        XCTAssertEqual(info.json["status"], "ok")
        let data = try XCTUnwrap(info.json["data"]?.objectValue)
        XCTAssertTrue(Self.referenceInfoKeys.isSubset(of: Set(data.keys)), "missing: \(Self.referenceInfoKeys.subtracting(data.keys).sorted())")
        XCTAssertEqual(data["node_id"]?.integerValue, alice)
        XCTAssertEqual(data["address"]?.stringValue, Address(node: UInt32(alice)).description)
        XCTAssertEqual(data["identity"], true, "a boolean in 1.18")
        XCTAssertEqual(data["name"]?.stringValue, "alice")
        XCTAssertEqual(data["public_key"]?.stringValue?.count, 44, "an Ed25519 key in base64")

        let health = try officialCtl(runtime, "alice", ["health"])
        XCTAssertEqual(health.json["data"]?["status"], "ok")
        let healthKeys: Set<String> = [
            "accept_queue_drops", "authenticated_peers", "beacon_addr", "bytes_recv", "bytes_sent", "connections", "encrypted_peers",
            "handshake_pending_count", "peers", "relay_peer_count", "status", "uptime_seconds", "webhook_circuit_skips", "webhook_queue_dropped",
        ]
        XCTAssertTrue(healthKeys.isSubset(of: Set(health.json["data"]?.objectValue?.keys ?? [:].keys)), "\(health.json)")

        // set-hostname, seen by the JSON protocol on the same socket too.
        XCTAssertEqual(try officialCtl(runtime, "alice", ["set-hostname", "alice-h"]).json["data"]?["hostname"], "alice-h")
        XCTAssertEqual(ctl(runtime, ["info", "--identity", "alice"])?["data"]?["hostname"], "alice-h")

        // The handshake between two identities, entirely with the official pilotctl.
        let sent = try officialCtl(runtime, "alice", ["handshake", "\(bob)", "hello bob"])
        XCTAssertEqual(sent.json["data"]?["status"], "sent", "\(sent.json)")
        var pending: [JSON] = []
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            pending = (try? self.officialCtl(runtime, "bob", ["pending"]).json["data"]?["pending"]?.arrayValue) ?? []
            return !pending.isEmpty
        })
        XCTAssertEqual(pending.first?["node_id"]?.integerValue, alice)
        XCTAssertEqual(pending.first?["justification"], "hello bob")
        XCTAssertEqual(try officialCtl(runtime, "bob", ["approve", "\(alice)"]).json["data"]?["status"], "approved")
        var trusted: [JSON] = []
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            trusted = (try? self.officialCtl(runtime, "alice", ["trust"]).json["data"]?["trusted"]?.arrayValue) ?? []
            return !trusted.isEmpty
        })
        XCTAssertEqual(trusted.first?["node_id"]?.integerValue, bob)

        // Through the driver's streams and datagrams, from the official pilotctl (it checks trust
        // first with a handshake wait of 0 ms).
        let ping = try officialCtl(runtime, "alice", ["ping", "\(bob)", "--count", "2"])
        XCTAssertEqual(ping.json["data"]?["results"]?.arrayValue?.count, 2, "\(ping.json)")
        XCTAssertEqual(ping.json["data"]?["timeout"], false)
        let message = try officialCtl(runtime, "alice", ["send-message", "\(bob)", "--data", "hi bob"])
        XCTAssertEqual(message.json["data"]?["ack"], "ACK TEXT 6 bytes", "\(message.json)")
        let inbox = ctl(runtime, ["inbox", "--identity", "bob"])?["data"]?["messages"]?.arrayValue ?? []
        XCTAssertTrue(inbox.contains { $0["data"] == "hi bob" }, "\(inbox)")
        let bench = try officialCtl(runtime, "alice", ["bench", "\(bob)", "1"])
        XCTAssertEqual(bench.json["data"]?["complete"], true, "\(bench.json)")
        XCTAssertEqual(bench.json["data"]?["recv_bytes"]?.integerValue, 1 << 20)
        let connect = try officialCtl(runtime, "alice", ["connect", "\(bob)", "7", "--message", "hello"])
        XCTAssertEqual(connect.json["data"]?["response"], "hello", "\(connect.json)")
        let datagram = try officialCtl(runtime, "alice", ["dgram", "\(bob)", "6000", "--data", "dg"])
        XCTAssertEqual(datagram.json["data"]?["confirmed"], true, "\(datagram.json)")
        let lookup = try officialCtl(runtime, "alice", ["lookup", "\(bob)"])
        XCTAssertEqual(lookup.json["data"]?["node_id"]?.integerValue, bob, "\(lookup.json)")

        let revoked = try officialCtl(runtime, "alice", ["untrust", "\(bob)"])
        XCTAssertEqual(revoked.json["status"], "ok", "\(revoked.json)")
        XCTAssertEqual(revoked.json["data"]?["node_id"]?.integerValue, bob)
        XCTAssertEqual(try officialCtl(runtime, "alice", ["trust"]).json["data"]?["total"], 0)
    }

    /// `pilotctl find --tag` (ours) over the registry's `find_by_tag`: the online nodes with the
    /// tag, and nothing for a tag nobody has; a hostname and --tag together are refused.
    func testFindByTagFromAClient() throws {
        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        let alice = try XCTUnwrap(ctl(runtime, ["identity", "create", "alice", "--tags", "gpu,eu"])?["data"]?["node_id"]?.integerValue)
        XCTAssertEqual(ctl(runtime, ["identity", "create", "bob", "--tags", "cpu"])?["status"], "ok")
        let found = try XCTUnwrap(ctl(runtime, ["find", "--tag", "gpu", "--identity", "bob"]))
        XCTAssertEqual(found["status"], "ok", "\(found)")
        XCTAssertEqual(found["data"]?["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [alice], "\(found)")
        XCTAssertEqual(ctl(runtime, ["find", "--tag", "tpu", "--identity", "bob"])?["data"]?["nodes"]?.arrayValue?.count, 0)
        XCTAssertNotEqual(ctl(runtime, ["find", "alice", "--tag", "gpu", "--identity", "bob"])?["status"], "ok")
    }

    /// A Send frame of the largest size a frame has (1 MiB) is read whole and its data echoed:
    /// before, the connection stopped reading while such a frame was half in, with nothing
    /// queued that could start it again (a client's writes then hung).
    func testASendFrameOfTheLargestSizeIsReadWhole() throws {
        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        XCTAssertEqual(ctl(runtime, ["identity", "create", "alice"])?["status"], "ok")
        let bob = try XCTUnwrap(ctl(runtime, ["identity", "create", "bob", "--public"])?["data"]?["node_id"]?.integerValue)
        let client = try RawDriverClient(path: "\(runtime)/id/alice.sock")
        try client.send(DriverRequest.dial(Address(node: UInt32(bob)), port: 7).frame())
        let dialed = try client.reply()
        XCTAssertEqual(dialed.command, DriverCommand.dialOK.rawValue, "\(dialed)")
        let id = dialed.payload.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let data = (0..<(DriverFrame.maxSize - 5)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        // All but its last two bytes, a pause, then those: the host holds over 1 MiB of a frame
        // not yet whole.
        let bytes = DriverRequest.send(connection: id, data: data).frame().encoded()
        try client.write(Array(bytes.dropLast(2)))
        Thread.sleep(forTimeInterval: 0.3)
        try client.write(Array(bytes.suffix(2)))
        var echoed: [UInt8] = []
        while echoed.count < data.count {
            let frame = try client.reply()
            guard frame.command == DriverCommand.recv.rawValue else { continue }
            echoed += frame.payload.dropFirst(4)
        }
        XCTAssertTrue(echoed == data, "\(echoed.count) bytes came back")
    }

    /// What the driver protocol cannot have gets its error reply: a readable error from the
    /// official client, at once, and the socket goes on serving.
    func testWhatIsNotServedGetsTheDriversErrorReplyNotSilence() throws {
        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        XCTAssertEqual(ctl(runtime, ["identity", "create", "alice"])?["status"], "ok")
        // The official pilotctl keeps the webhook in its own config and says it was not applied.
        let webhook = try officialCtl(runtime, "alice", ["extras", "set-webhook", "http://127.0.0.1:9/x"])
        XCTAssertEqual(webhook.json["data"]?["applied"], false, "\(webhook.json)")
        let client = try RawDriverClient(path: "\(runtime)/id/alice.sock")
        try client.send(DriverRequest.setWebhook("http://127.0.0.1:9/x").frame())
        XCTAssertEqual(try client.errorMessage(), "set_webhook: webhooks are not available on pilot-host")
        try client.send(DriverFrame(.managed, payload: [0x01]))
        XCTAssertEqual(try client.errorMessage(), "Managed is not available on a pilot-host identity socket")
        try client.send(DriverRequest.network(.pollInvites).frame())
        XCTAssertTrue(try client.errorMessage()?.hasPrefix("network: invitations are not available on pilot-host") == true)
        XCTAssertEqual(try officialCtl(runtime, "alice", ["info"]).json["status"], "ok")
    }

    /// The driver's network and broadcast requests, each as the identity: join with the
    /// network's token, members, leave, visible in the registry's lookup; a broadcast with the
    /// host's admin token reaches a member, and one without gets 1.18's words.
    func testIdentitiesJoinNetworksAndBroadcastOverTheDriver() throws {
        let token = "tok-\(UInt32.random(in: 0...UInt32.max))"
        let tokenFile = directory.path("admin-token")
        try (token + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        chmod(tokenFile, 0o600)
        let registryPort = try startRendezvous(extra: ["--admin-token-file", tokenFile])
        let runtime = try startHosts(1, registryPort: registryPort, extra: ["--admin-token-file", tokenFile])[0]
        let alice = try XCTUnwrap(ctl(runtime, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(runtime, ["identity", "create", "bob"])?["data"]?["node_id"]?.integerValue)
        func networks(_ node: Int64) -> [JSON] { ctl(runtime, ["lookup", "\(node)", "--identity", "alice"])?["data"]?["networks"]?.arrayValue ?? [] }
        let created = runPilotctl(
            ["network", "create", "--name", "crew", "--join-rule", "token", "--token", "tk1", "--identity", "alice"], runtime: runtime,
            timeout: 30, environment: ["PILOT_ADMIN_TOKEN": token])
        let network = try XCTUnwrap(created?["data"]?["network_id"]?.integerValue.flatMap(UInt16.init(exactly:)), "\(String(describing: created))")
        let driver = try RawDriverClient(path: "\(runtime)/id/bob.sock")
        func networkRequest(_ request: DriverNetworkRequest) throws -> JSON? {
            try driver.send(DriverRequest.network(request).frame())
            let reply = try driver.reply()
            guard reply.command == DriverCommand.networkOK.rawValue else { return .string(String(decoding: reply.payload.dropFirst(2), as: UTF8.self)) }
            return try JSON(parsing: reply.payload)
        }
        XCTAssertEqual(try networkRequest(.join(network: network, token: "nope")), .string("registry: invalid token for network \(network)"))
        XCTAssertEqual(try networkRequest(.join(network: network, token: "tk1"))?["type"], "join_network_ok")
        XCTAssertTrue(networks(bob).contains(.integer(Int64(network))))
        let members = try networkRequest(.members(network: network))?["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }
        XCTAssertEqual(Set(members ?? []), [alice, bob])
        XCTAssertEqual(try networkRequest(.list)?["networks"]?.arrayValue?.contains { $0["name"] == "crew" }, true)

        // alice broadcasts to the crew with the host's admin token; without it, 1.18's words.
        // (A member takes a datagram from a node it trusts: bob trusts alice.)
        XCTAssertEqual(ctl(runtime, ["handshake", "\(alice)", "crew", "--identity", "bob"])?["data"]?["status"], "sent")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(runtime, ["pending", "--identity", "alice"])?["data"]?["pending"]?.arrayValue?.isEmpty == false
        })
        XCTAssertEqual(ctl(runtime, ["approve", "\(bob)", "--identity", "alice"])?["data"]?["status"], "approved")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(runtime, ["trust", "--identity", "bob"])?["data"]?["trusted"]?.arrayValue?.isEmpty == false
        })
        let caster = try RawDriverClient(path: "\(runtime)/id/alice.sock")
        try caster.send(DriverRequest.broadcast(network: network, port: 1000, token: Array("wrong".utf8), data: Array("hi".utf8)).frame())
        XCTAssertEqual(try caster.errorMessage(), "broadcast: broadcast denied: invalid admin token")
        try caster.send(DriverRequest.broadcast(network: 0, port: 1000, token: Array(token.utf8), data: Array("hi".utf8)).frame())
        XCTAssertEqual(try caster.errorMessage(), "broadcast: broadcast not permitted on backbone network")
        try caster.send(DriverRequest.broadcast(network: network, port: 1000, token: Array(token.utf8), data: Array("hi".utf8)).frame())
        XCTAssertEqual(try caster.reply().command, DriverCommand.broadcastOK.rawValue)
        // bob, a member, gets it: pushed to his driver connection as 1.18's RecvFrom.
        let pushed = try driver.reply()
        XCTAssertEqual(pushed.command, DriverCommand.recvFrom.rawValue)
        XCTAssertEqual(Array(pushed.payload.suffix(2)), Array("hi".utf8))
        var source = ByteWriter(capacity: 6)
        Address(network: network, node: UInt32(alice)).encode(into: &source)
        XCTAssertEqual(Array(pushed.payload.prefix(6)), source.bytes, "from alice's address in the network")

        XCTAssertEqual(try networkRequest(.leave(network: network))?["type"], "leave_network_ok")
        XCTAssertFalse(networks(bob).contains(.integer(Int64(network))))
        XCTAssertEqual(try networkRequest(.leave(network: network)), .string("registry: node \(bob) is not in network \(network)"))
        try driver.send(DriverRequest.network(.invite(network: network, node: UInt32(alice))).frame())
        XCTAssertTrue(try driver.errorMessage()?.hasPrefix("network: invitations are not available on pilot-host") == true)
    }

    /// The official pilotctl's rotate-key, prefer-direct and deregister on an identity socket,
    /// with what the registry and host.db show afterwards; the identity's tunnels work across
    /// the rotation and a restart with the new key.
    func testIdentitiesRotateKeysPreferDirectAndDeregister() throws {
        let registryPort = try startRendezvous()
        registry = "127.0.0.1:\(registryPort)"
        let listen = "127.0.0.1:\(try LoopbackSocket.freePort())"
        let runtime = try startHost(0, registryPort: registryPort, listen: listen).runtime
        let other = try startHost(1, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())").runtime
        let alice = try XCTUnwrap(ctl(runtime, ["identity", "create", "alice", "--hostname", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(other, ["identity", "create", "bob", "--public"])?["data"]?["node_id"]?.integerValue)
        func lookup(_ node: Int64) -> JSON? { ctl(other, ["lookup", "\(node)", "--identity", "bob"])?["data"] }

        // Trust between the two hosts, then a tunnel.
        XCTAssertEqual(ctl(runtime, ["handshake", "\(bob)", "rotate test", "--identity", "alice"])?["data"]?["status"], "sent")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(other, ["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue?.isEmpty == false
        })
        XCTAssertEqual(ctl(other, ["approve", "\(alice)", "--identity", "bob"])?["data"]?["status"], "approved")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(runtime, ["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.isEmpty == false
        })
        func pings(_ host: String, _ name: String, _ target: Int64) -> Bool {
            (try? officialCtl(host, name, ["ping", "\(target)", "--count", "1"]).json["data"]?["results"]?.arrayValue?.first?["rtt_ms"]) != nil
        }
        XCTAssertTrue(pings(runtime, "alice", bob))

        // prefer-direct: 1.18's keys, with what the tunnel table holds (a direct session).
        let preferred = try officialCtl(runtime, "alice", ["prefer-direct", "\(bob)"])
        XCTAssertEqual(preferred.status, 0, "\(preferred.json)")
        let report = try XCTUnwrap(preferred.json["data"]?.objectValue)
        XCTAssertTrue(Set(["had_tunnel", "node_id", "pila_pushed", "resolve_error", "was_relay_active", "was_relay_pinned"]).isSubset(of: Set(report.keys)))
        XCTAssertEqual(report["node_id"]?.integerValue, bob)
        XCTAssertEqual(report["had_tunnel"], true)
        XCTAssertEqual(report["was_relay_active"], false, "no beacon: the path is direct")
        XCTAssertEqual(report["was_relay_pinned"], false)
        XCTAssertEqual(report["resolve_error"], "")
        let unknown = ctl(runtime, ["prefer-direct", "999", "--identity", "alice"])?["data"]
        XCTAssertEqual(unknown?["had_tunnel"], false)
        XCTAssertNotEqual(unknown?["resolve_error"], "", "node 999 is not registered")

        // rotate-key: a new key at the registry, the same address, the tunnel still carries.
        let oldKey = try XCTUnwrap(try officialCtl(runtime, "alice", ["info"]).json["data"]?["public_key"]?.stringValue)
        let rotated = try officialCtl(runtime, "alice", ["rotate-key"])
        XCTAssertEqual(rotated.status, 0, "\(rotated.json)")
        let newKey = try XCTUnwrap(rotated.json["data"]?["public_key"]?.stringValue)
        XCTAssertNotEqual(newKey, oldKey)
        XCTAssertEqual(rotated.json["data"]?["node_id"]?.integerValue, alice)
        XCTAssertEqual(lookup(alice)?["public_key"]?.stringValue, newKey)
        XCTAssertEqual(try officialCtl(runtime, "alice", ["info"]).json["data"]?["public_key"]?.stringValue, newKey)
        XCTAssertTrue(pings(runtime, "alice", bob), "the session from before the rotation goes on")
        // Ours, on bob, over the JSON protocol.
        let bobRotated = ctl(other, ["rotate-key", "--identity", "bob"])
        XCTAssertEqual(bobRotated?["data"]?["type"], "rotate_key_ok", "\(String(describing: bobRotated))")

        // A restart: host.db gave alice the new key, fresh key exchanges carry it, and bob takes it.
        processes[1].stop()
        _ = try startHost(0, registryPort: registryPort, listen: listen, generation: 2)
        let restarted = try officialCtl(runtime, "alice", ["info"]).json["data"]
        XCTAssertEqual(restarted?["public_key"]?.stringValue, newKey)
        XCTAssertEqual(restarted?["node_id"]?.integerValue, alice)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 15) { pings(runtime, "alice", bob) }, "a new session, alice signing with her new key")
        XCTAssertTrue(pings(other, "bob", alice))

        // deregister: 1.18's reply, offline at the registry, and said so by info; not deleted.
        let gone = try officialCtl(runtime, "alice", ["deregister"])
        XCTAssertEqual(gone.status, 0, "\(gone.json)")
        XCTAssertEqual(gone.json["data"], ["node_id": .integer(alice), "type": "deregister_ok"])
        XCTAssertEqual(lookup(alice)?["online"], false)
        XCTAssertNotEqual(ctl(other, ["find", "alice", "--identity", "bob"])?["status"], "ok", "her hostname is free")
        XCTAssertEqual(ctl(runtime, ["info", "--identity", "alice"])?["data"]?["deregistered"], true)
        XCTAssertEqual(try officialCtl(runtime, "alice", ["info"]).json["data"]?["deregistered"], true)
        let refused = try officialCtl(runtime, "alice", ["set-hostname", "alice-2"])
        XCTAssertTrue(refused.json["message"]?.stringValue?.contains("deregistered itself") == true, "\(refused.json)")
        // The next start registers her again.
        processes[3].stop()
        _ = try startHost(0, registryPort: registryPort, listen: listen, generation: 3)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 15) { lookup(alice)?["online"] == true })
        XCTAssertNotEqual(ctl(runtime, ["info", "--identity", "alice"])?["data"]?["deregistered"], true)
    }

    /// A user who may open the socket file (a group-shared identity) but is not allowed gets the
    /// driver's error reply, not a JSON frame the official client cannot read (it used to wait
    /// forever). Needs root and throwaway accounts.
    func testARefusedOfficialClientGetsTheDriversErrorReply() throws {
        if let reason = ThrowawayAccounts.unavailableReason { throw XCTSkip(reason) }
        let accounts = ThrowawayAccounts()
        defer { accounts.removeAll() }
        let team = try accounts.group("ptdrv")
        let stranger = try accounts.user("ptdrvx")
        chmod(home, 0o777)
        let registryPort = try startRendezvous()
        let runtime = try startHosts(1, registryPort: registryPort)[0]
        XCTAssertEqual(ctl(runtime, ["identity", "create", "shared", "--group", team])?["status"], "ok", "a socket others can open")
        let refused = try officialCtl(runtime, "shared", ["info"], user: stranger)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.json["message"]?.stringValue?.contains("permission_denied") == true, "\(refused.json)")
        XCTAssertEqual(try officialCtl(runtime, "shared", ["info"]).json["status"], "ok", "root may")
    }
    /// Hostile driver frames: an unknown command and a short payload get the error reply and the
    /// connection goes on; a frame over 1 MiB gets it and the connection is closed; a storm of
    /// dials is held to 16 under way; the admin socket answers a driver frame in kind; and the
    /// identity keeps serving everyone else throughout.
    func testHostileDriverFramesGetErrorRepliesAndTheSocketGoesOn() throws {
        let registryPort = try startRendezvous()
        let runtimes = try startHosts(2, registryPort: registryPort)
        let runtime = runtimes[0]
        XCTAssertEqual(ctl(runtime, ["identity", "create", "alice"])?["status"], "ok")
        let path = "\(runtime)/id/alice.sock"
        // A public node whose host then stops: registered, reachable by no one, so a dial to it
        // waits its whole 15 s.
        let gone = try XCTUnwrap(ctl(runtimes[1], ["identity", "create", "gone", "--public"])?["data"]?["node_id"]?.integerValue)
        processes[2].stop()

        let client = try RawDriverClient(path: path)
        try client.send(DriverFrame(command: 0x1D, payload: []))
        XCTAssertEqual(try client.errorMessage(), "unknown command: 0x1D")
        try client.send(DriverFrame(.handshake, payload: [0x01, 0x00]))
        XCTAssertNotNil(try client.errorMessage(), "a handshake request cut short")
        try client.send(DriverFrame(.info))
        XCTAssertEqual(try client.reply().command, DriverCommand.infoOK.rawValue, "the same connection goes on")

        // A dial storm toward a node nobody can reach: no more than 16 under way, the rest refused at once.
        let storm = try RawDriverClient(path: path)
        for _ in 0..<40 { try storm.send(DriverRequest.dial(Address(node: UInt32(gone)), port: 7).frame()) }
        var refusedAtOnce = 0
        for _ in 0..<24 where (try? storm.errorMessage())?.contains("more than 16 requests under way") == true { refusedAtOnce += 1 }
        XCTAssertEqual(refusedAtOnce, 24)
        let other = try RawDriverClient(path: path)
        try other.send(DriverFrame(.health))
        XCTAssertEqual(try other.reply().command, DriverCommand.healthOK.rawValue, "served beside the storm")

        // Over 1 MiB on a driver connection: the error reply, then the end of the connection. (As
        // the very first frame its length alone says it is no frame of either protocol, and the
        // JSON protocol refuses it, as it always did.)
        let big = try RawDriverClient(path: path)
        try big.send(DriverFrame(.health))
        XCTAssertEqual(try big.reply().command, DriverCommand.healthOK.rawValue)
        try big.write([0x00, 0x20, 0x00, 0x00, DriverCommand.send.rawValue])
        XCTAssertNotNil(try big.errorMessage())
        XCTAssertTrue(big.isClosed(), "a connection that sent a frame too long is closed")

        // The admin socket speaks only JSON, and says so in the driver's own words.
        let admin = try RawDriverClient(path: "\(runtime)/admin.sock")
        try admin.send(DriverFrame(.info))
        XCTAssertTrue(try admin.errorMessage()?.contains("admin socket") == true)
        XCTAssertEqual(ctl(runtime, ["info", "--identity", "alice"])?["status"], "ok", "the JSON protocol on the same socket")
    }
}

/// A bare driver-protocol client on a Unix socket, for frames no real client would send.
final class RawDriverClient {
    private let descriptor: Int32
    private var decoder = DriverFrameDecoder()

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw HostTestError("connect \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(descriptor) }

    func write(_ bytes: [UInt8]) throws {
        guard bytes.withUnsafeBytes({ Glibc.write(descriptor, $0.baseAddress, $0.count) }) == bytes.count else {
            throw HostTestError("write: errno \(errno)")
        }
    }

    func send(_ frame: DriverFrame) throws { try write(frame.encoded()) }

    /// The next frame (10 s at most).
    func reply() throws -> DriverFrame {
        while true {
            if let frame = try decoder.next() { return frame }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let count = read(descriptor, &buffer, buffer.count)
            guard count > 0 else { throw HostTestError("no reply (read \(count), errno \(errno))") }
            decoder.append(buffer[0..<count])
        }
    }

    /// The next frame's message if it is the error reply, nil if it is another frame.
    func errorMessage() throws -> String? {
        let frame = try reply()
        guard frame.command == DriverCommand.error.rawValue, frame.payload.count >= 2 else { return nil }
        return String(decoding: frame.payload.dropFirst(2), as: UTF8.self)
    }

    /// Whether the server closed the connection (within 5 s).
    func isClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let count = read(descriptor, &buffer, buffer.count)
            if count == 0 { return true }
            if count < 0 && errno != EAGAIN && errno != EINTR { return true }
        }
        return false
    }
}
