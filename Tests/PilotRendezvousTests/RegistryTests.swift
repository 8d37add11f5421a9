import Foundation
import PilotCrypto
import PilotRendezvous
import PilotStore
import PilotTestSupport
import PilotWire
import NIOConcurrencyHelpers
import XCTest

/// A node as a client: its key signs the registry's challenge strings.
struct TestNode {
    let key: Ed25519PrivateKey
    var id: UInt32 = 0

    init() throws { key = try Ed25519PrivateKey() }

    var publicKey: String { key.publicKey.base64 }

    func signature(_ challenge: String) -> JSON { .string(Base64.encode(key.sign(challenge))) }

    func register(listen: String = "127.0.0.1:4000") -> RegistryMessage {
        RegistryMessage(
            type: "register",
            [
                "listen_addr": .string(listen), "public_key": .string(publicKey), "version": "1.18.0",
                "signature": signature("register:\(listen):\(publicKey)"),
            ])
    }

    func signed(_ type: String, _ challenge: String, _ fields: [String: JSON] = [:]) -> RegistryMessage {
        var all = fields
        all["signature"] = signature(challenge)
        return RegistryMessage(type: type, all)
    }
}

extension RegistryMessage {
    /// This message with `field` set to `value`: a captured request, altered.
    func with(_ field: String, _ value: JSON) -> RegistryMessage {
        var fields = json.objectValue ?? [:]
        fields[field] = value
        return RegistryMessage(type: type, fields)
    }
}

final class RegistryTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var now = 1000.0

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-registry")
    }

    override func tearDown() {
        directory.remove()
    }

    private func makeRegistry(_ configure: (inout Registry.Configuration) -> Void = { _ in }) throws -> Registry {
        var configuration = Registry.Configuration()
        configure(&configuration)
        let clock = Clock(self)
        return try Registry(stateDirectory: directory.path("state"), configuration: configuration, clock: { clock.read() }, wallClock: { clock.read() })
    }

    /// Lets the registry read the test's `now` without capturing `self` unsafely.
    private final class Clock: @unchecked Sendable {
        weak var test: RegistryTests?
        init(_ test: RegistryTests) { self.test = test }
        func read() -> Double { test?.now ?? 0 }
    }

    /// `set_hostname` signed the 1.18 way, from the address the tests register from.
    private func setHostname(_ registry: Registry, _ node: TestNode, _ name: String) -> RegistryMessage {
        registry.handle(
            node.signed("set_hostname", "set_hostname:\(node.id)", ["node_id": .integer(Int64(node.id)), "hostname": .string(name)]),
            peerIP: "127.0.0.1")
    }

    private func resolveHostname(_ registry: Registry, _ name: String) -> RegistryMessage {
        registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": .string(name)]), peerIP: "x")
    }

    private func register(_ registry: Registry, _ node: inout TestNode, ip: String = "127.0.0.1") throws {
        let reply = registry.handle(node.register(), peerIP: ip)
        XCTAssertEqual(reply.type, "register_ok", "\(reply.json.encodedString())")
        node.id = try reply.nodeID("node_id")
    }

    /// A key rotation is signed by the old key over the id and the new key (1.18's form, which
    /// the official daemon's `pilotctl rotate-key` sends); the id alone (the old form) is refused,
    /// and so is a signature over another key. The node keeps its id under the new key.
    func testAKeyRotationIsSignedOverTheNewKey() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        try register(registry, &a)
        let next = try TestNode()
        let fields: [String: JSON] = ["node_id": .integer(Int64(a.id)), "new_public_key": .string(next.publicKey)]
        XCTAssertEqual(registry.handle(a.signed("rotate_key", "rotate:\(a.id)", fields), peerIP: "127.0.0.1").type, "error")
        let other = try TestNode()
        XCTAssertEqual(registry.handle(a.signed("rotate_key", "rotate:\(a.id):\(other.publicKey)", fields), peerIP: "127.0.0.1").type, "error")
        let rotated = registry.handle(a.signed("rotate_key", "rotate:\(a.id):\(next.publicKey)", fields), peerIP: "127.0.0.1")
        XCTAssertEqual(rotated.type, "rotate_key_ok", rotated.json.encodedString())
        var again = next
        try register(registry, &again)
        XCTAssertEqual(again.id, a.id, "the new key holds the same id")
    }

    func testNodeIDsAreHandedOutInOrderAndKeptAcrossRestarts() throws {
        var a = try TestNode()
        var b = try TestNode()
        do {
            let registry = try makeRegistry()
            try register(registry, &a)
            try register(registry, &b)
            XCTAssertEqual([a.id, b.id], [1, 2])
            let reply = registry.handle(a.register(), peerIP: "127.0.0.1")
            XCTAssertEqual(try reply.nodeID("node_id"), 1, "same key, same id")
            XCTAssertEqual(reply["address"], "0:0000.0000.0001")
        }
        let restarted = try makeRegistry()
        var again = b
        try register(restarted, &again)
        XCTAssertEqual(again.id, 2)
        var c = try TestNode()
        try register(restarted, &c)
        XCTAssertEqual(c.id, 3)
    }

    func testForgedAndMissingSignaturesAreRefused() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        let b = try TestNode()
        try register(registry, &a)
        // b signs a's heartbeat: refused.
        let forged = RegistryMessage(type: "heartbeat", ["node_id": .integer(Int64(a.id)), "signature": b.signature("heartbeat:\(a.id)")])
        XCTAssertEqual(registry.handle(forged, peerIP: "127.0.0.1").type, "error")
        XCTAssertEqual(registry.handle(RegistryMessage(type: "heartbeat", ["node_id": .integer(Int64(a.id))]), peerIP: "x").type, "error")
        // Someone replaying a's key without its signature cannot move a's endpoint.
        let hijack = RegistryMessage(type: "register", ["listen_addr": "10.0.0.9:1", "public_key": .string(a.publicKey)])
        XCTAssertEqual(registry.handle(hijack, peerIP: "10.0.0.9")["error"], "register: signature required for a known key")
        let good = a.signed("heartbeat", "heartbeat:\(a.id)", ["node_id": .integer(Int64(a.id))])
        XCTAssertEqual(registry.handle(good, peerIP: "127.0.0.1").type, "heartbeat_ok")
    }

    func testPrivateEndpointsGoOnlyToTrustedPeers() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        var b = try TestNode()
        var c = try TestNode()
        try register(registry, &a)
        try register(registry, &b)
        try register(registry, &c)
        func resolve(_ target: TestNode, by requester: TestNode) -> RegistryMessage {
            registry.handle(
                requester.signed(
                    "resolve", "resolve:\(requester.id):\(target.id)",
                    ["node_id": .integer(Int64(target.id)), "requester_id": .integer(Int64(requester.id))]),
                peerIP: "127.0.0.1")
        }
        XCTAssertEqual(resolve(a, by: b).type, "error")
        XCTAssertNil(registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(a.id))]), peerIP: "x")["real_addr"])
        let report = a.signed("report_trust", "report_trust:\(a.id):\(b.id)", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))])
        XCTAssertEqual(registry.handle(report, peerIP: "127.0.0.1").type, "report_trust_ok")
        XCTAssertEqual(resolve(a, by: b)["real_addr"], "127.0.0.1:4000")
        XCTAssertEqual(resolve(a, by: c).type, "error", "trust between a and b says nothing about c")
        // Public: anyone may resolve, and lookup shows the endpoint.
        let visible = a.signed("set_visibility", "set_visibility:\(a.id)", ["node_id": .integer(Int64(a.id)), "public": true])
        XCTAssertEqual(registry.handle(visible, peerIP: "127.0.0.1")["visibility"], "public")
        XCTAssertEqual(resolve(a, by: c)["real_addr"], "127.0.0.1:4000")
        XCTAssertEqual(registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(a.id))]), peerIP: "x")["real_addr"], "127.0.0.1:4000")
    }

    /// A node registered `relay_only` (1.18's -relay-only) has its endpoint handed to nobody,
    /// public or trusted, across a restart; it is reached through the beacon, whose address a
    /// resolve gives as `real_addr` (1.18 dials nothing without one). Registering again without
    /// the flag makes it direct.
    func testARelayOnlyNodesEndpointGoesToNobody() throws {
        var a = try TestNode()
        var b = try TestNode()
        func relayOnlyRegister(_ node: TestNode, _ relayOnly: Bool) -> RegistryMessage {
            let listen = "127.0.0.1:4000"
            return RegistryMessage(
                type: "register",
                [
                    "listen_addr": .string(listen), "public_key": .string(node.publicKey), "version": "1.18.0", "relay_only": .bool(relayOnly),
                    "signature": node.signature("register:\(listen):\(node.publicKey)"),
                ])
        }
        func resolve(_ registry: Registry, _ target: TestNode, by requester: TestNode) -> RegistryMessage {
            registry.handle(
                requester.signed(
                    "resolve", "resolve:\(requester.id):\(target.id)",
                    ["node_id": .integer(Int64(target.id)), "requester_id": .integer(Int64(requester.id))]),
                peerIP: "127.0.0.1")
        }
        let beacon = "198.51.100.7:9001"
        do {
            let registry = try makeRegistry { $0.beaconAddresses = [beacon] }
            a.id = try registry.handle(relayOnlyRegister(a, true), peerIP: "127.0.0.1").nodeID("node_id")
            try register(registry, &b)
            let visible = a.signed("set_visibility", "set_visibility:\(a.id)", ["node_id": .integer(Int64(a.id)), "public": true])
            XCTAssertEqual(registry.handle(visible, peerIP: "127.0.0.1").type, "set_visibility_ok")
            let resolved = resolve(registry, a, by: b)
            XCTAssertEqual(resolved.type, "resolve_ok")
            XCTAssertEqual(resolved["relay_only"], true)
            XCTAssertEqual(resolved["real_addr"], .string(beacon), "\(resolved.json.encodedString())")
            let lookup = registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(a.id))]), peerIP: "x")
            XCTAssertNil(lookup["real_addr"])
            XCTAssertEqual(lookup["relay_only"], true)
            let punch = b.signed("punch", "punch:\(b.id):\(a.id)", ["requester_id": .integer(Int64(b.id)), "node_a": .integer(Int64(b.id)), "node_b": .integer(Int64(a.id))])
            XCTAssertEqual(registry.handle(punch, peerIP: "x")["error"], .string("punch: node \(a.id) is relay-only"))
        }
        let restarted = try makeRegistry { $0.beaconAddresses = [beacon] }
        XCTAssertEqual(resolve(restarted, a, by: b)["real_addr"], .string(beacon), "kept across a restart")
        XCTAssertEqual(restarted.handle(relayOnlyRegister(a, false), peerIP: "127.0.0.1").type, "register_ok")
        XCTAssertEqual(resolve(restarted, a, by: b)["real_addr"], "127.0.0.1:4000")
    }

    /// `lan_addrs` in a register (1.18 lists its private IPv4s with the tunnel port): kept,
    /// filtered to private or link-local IPv4 endpoints, at most eight, given in `resolve_ok`
    /// to those who may resolve the node, kept across a restart, replaced by the next register.
    func testLANAddressesAreFilteredKeptAndResolved() throws {
        var a = try TestNode()
        var b = try TestNode()
        func register(_ registry: Registry, _ node: TestNode, lan: [JSON]?) -> RegistryMessage {
            let listen = ":4000"
            var fields: [String: JSON] = [
                "listen_addr": .string(listen), "public_key": .string(node.publicKey), "version": "1.18.0",
                "signature": node.signature("register:\(listen):\(node.publicKey)"),
            ]
            if let lan { fields["lan_addrs"] = .array(lan) }
            return registry.handle(RegistryMessage(type: "register", fields), peerIP: "203.0.113.9")
        }
        func resolve(_ registry: Registry) -> RegistryMessage {
            registry.handle(
                b.signed("resolve", "resolve:\(b.id):\(a.id)", ["node_id": .integer(Int64(a.id)), "requester_id": .integer(Int64(b.id))]),
                peerIP: "127.0.0.1")
        }
        let sent: [JSON] = [
            "192.168.1.20:4000", "10.0.0.7:4000", "172.16.5.1:4000", "172.32.0.1:4000", "169.254.3.3:4000", "203.0.113.9:4000",
            "not an endpoint", "[fd00::1]:4000", .integer(5), "192.168.1.20:4000", "10.1.1.1:0",
            "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.5:1",
        ]
        do {
            let registry = try makeRegistry()
            a.id = try register(registry, a, lan: sent).nodeID("node_id")
            try self.register(registry, &b)
            let visible = a.signed("set_visibility", "set_visibility:\(a.id)", ["node_id": .integer(Int64(a.id)), "public": true])
            XCTAssertEqual(registry.handle(visible, peerIP: "203.0.113.9").type, "set_visibility_ok")
            let resolved = resolve(registry)
            XCTAssertEqual(resolved["real_addr"], "203.0.113.9:4000")
            XCTAssertEqual(
                resolved["lan_addrs"],
                .array(["192.168.1.20:4000", "10.0.0.7:4000", "172.16.5.1:4000", "169.254.3.3:4000", "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"]),
                "\(resolved.json.encodedString())")
        }
        let restarted = try makeRegistry()
        XCTAssertEqual(resolve(restarted)["lan_addrs"]?.arrayValue?.count, 8, "kept across a restart")
        // The next register says it again: without the field, none.
        XCTAssertEqual(register(restarted, a, lan: nil).type, "register_ok")
        XCTAssertNil(resolve(restarted)["lan_addrs"])
    }

    /// A resolve gives where the beacon sees a node's tunnel socket (the NAT's mapping of it)
    /// in place of the port it registered, but only from the IP it registered from: a discover
    /// proves nothing, so it may move a node to another port, never to another address.
    func testResolveGivesTheBeaconsViewFromTheRegisteredIPOnly() throws {
        var a = try TestNode()
        var b = try TestNode()
        let seen = NIOLockedValueBox<Endpoint?>(nil)
        let registry = try makeRegistry { configuration in
            configuration.observedEndpoint = { _ in seen.withLockedValue { $0 } }
        }
        let listen = ":4000"
        let registered = registry.handle(
            RegistryMessage(type: "register", [
                "listen_addr": .string(listen), "public_key": .string(a.publicKey), "version": "1.18.0",
                "signature": a.signature("register:\(listen):\(a.publicKey)"),
            ]),
            peerIP: "203.0.113.9")
        a.id = try registered.nodeID("node_id")
        try register(registry, &b)
        let visible = a.signed("set_visibility", "set_visibility:\(a.id)", ["node_id": .integer(Int64(a.id)), "public": true])
        XCTAssertEqual(registry.handle(visible, peerIP: "203.0.113.9").type, "set_visibility_ok")
        func resolved() -> JSON? {
            registry.handle(
                b.signed("resolve", "resolve:\(b.id):\(a.id)", ["node_id": .integer(Int64(a.id)), "requester_id": .integer(Int64(b.id))]),
                peerIP: "127.0.0.1")["real_addr"]
        }
        XCTAssertEqual(resolved(), "203.0.113.9:4000", "nothing seen: as registered")
        seen.withLockedValue { $0 = Endpoint(host: "203.0.113.9", port: 52_280) }
        XCTAssertEqual(resolved(), "203.0.113.9:52280", "the beacon's view of the same IP")
        XCTAssertEqual(registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(a.id))]), peerIP: "x")["real_addr"], "203.0.113.9:52280")
        seen.withLockedValue { $0 = Endpoint(host: "::ffff:203.0.113.9", port: 52_281) }
        XCTAssertEqual(resolved(), "203.0.113.9:52281", "an IPv4-mapped view is the same IP, given as IPv4")
        seen.withLockedValue { $0 = Endpoint(host: "198.51.100.66", port: 52_280) }
        XCTAssertEqual(resolved(), "203.0.113.9:4000", "another IP is never taken from a discover")
    }

    func testHostnamesAreValidatedUniqueAndFreedWhenANodeGoesSilent() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        var b = try TestNode()
        try register(registry, &a)
        try register(registry, &b)
        for bad in ["-x", "x-", "Upper_case", "localhost", String(repeating: "a", count: 64), "a b"] {
            XCTAssertEqual(setHostname(registry, a, bad).type, "error", bad)
        }
        XCTAssertEqual(setHostname(registry, a, "alpha").type, "set_hostname_ok")
        XCTAssertEqual(setHostname(registry, b, "alpha").type, "error", "taken")
        XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alpha"]), peerIP: "x")["node_id"], .integer(Int64(a.id)))

        now += 181  // a and b miss every heartbeat
        XCTAssertEqual(registry.reap(), 2)
        XCTAssertEqual(registry.handle(RegistryMessage(type: "resolve_hostname", ["hostname": "alpha"]), peerIP: "x").type, "error")
        try register(registry, &b)
        XCTAssertEqual(setHostname(registry, b, "alpha").type, "set_hostname_ok", "an offline node's hostname is free")
    }

    func testANodeBackAfterTheReaperGetsItsHostnameBackUnlessAnotherTookIt() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        var b = try TestNode()
        try register(registry, &a)
        try register(registry, &b)
        XCTAssertEqual(setHostname(registry, a, "alpha").type, "set_hostname_ok")
        XCTAssertEqual(setHostname(registry, b, "beta").type, "set_hostname_ok")
        now += 181
        XCTAssertEqual(registry.reap(), 2)
        XCTAssertEqual(resolveHostname(registry, "alpha").type, "error", "an offline node is not found")

        // a comes back first: its hostname is its own again, and b cannot take it.
        let back = registry.handle(a.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(back["hostname"], "alpha", "register_ok reports the hostname reclaimed")
        XCTAssertEqual(resolveHostname(registry, "alpha")["node_id"], .integer(Int64(a.id)))
        try register(registry, &b)
        XCTAssertEqual(setHostname(registry, b, "alpha").type, "error", "taken again by its owner")

        // Once another node took a freed hostname, its old holder does not get it back.
        now += 181
        XCTAssertEqual(registry.reap(), 2)
        var c = try TestNode()
        try register(registry, &c)
        XCTAssertEqual(setHostname(registry, c, "beta").type, "set_hostname_ok")
        XCTAssertNil(registry.handle(b.register(), peerIP: "127.0.0.1")["hostname"])
        XCTAssertEqual(resolveHostname(registry, "beta")["node_id"], .integer(Int64(c.id)))
        now += 181
        XCTAssertEqual(registry.reap(), 2)
        XCTAssertNil(registry.handle(b.register(), peerIP: "127.0.0.1")["hostname"], "c's claim ended b's")
        XCTAssertEqual(registry.handle(c.register(), peerIP: "127.0.0.1")["hostname"], "beta")
    }

    func testAReclaimableHostnameSurvivesARestartOfTheRegistry() throws {
        var a = try TestNode()
        do {
            let registry = try makeRegistry()
            try register(registry, &a)
            let set = a.signed("set_hostname", "set_hostname:\(a.id)", ["node_id": .integer(Int64(a.id)), "hostname": "alpha"])
            XCTAssertEqual(registry.handle(set, peerIP: "127.0.0.1").type, "set_hostname_ok")
            now += 181
            XCTAssertEqual(registry.reap(), 1)
        }
        let restarted = try makeRegistry()
        XCTAssertEqual(restarted.handle(a.register(), peerIP: "127.0.0.1")["hostname"], "alpha")
    }

    func testTagsAreNormalisedAndFoundByTag() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        var b = try TestNode()
        try register(registry, &a)
        try register(registry, &b)
        func setTags(_ node: TestNode, _ tags: [JSON]) -> RegistryMessage {
            registry.handle(
                node.signed("set_tags", "set_tags:\(node.id)", ["node_id": .integer(Int64(node.id)), "tags": .array(tags)]),
                peerIP: "127.0.0.1")
        }
        XCTAssertEqual(setTags(a, ["#worker", "gpu"])["tags"], ["worker", "gpu"])
        XCTAssertEqual(setTags(b, ["worker"]).type, "set_tags_ok")
        XCTAssertEqual(setTags(b, ["Bad Tag"]).type, "error")
        XCTAssertEqual(setTags(b, .init(repeating: "x", count: 11)).type, "error")
        let found = registry.handle(RegistryMessage(type: "find_by_tag", ["tag": "worker"]), peerIP: "x")
        XCTAssertEqual(found["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [Int64(a.id), Int64(b.id)])
        XCTAssertEqual(setTags(a, [])["tags"], .null)
        let after = registry.handle(RegistryMessage(type: "find_by_tag", ["tag": "gpu"]), peerIP: "x")
        XCTAssertEqual(after["nodes"], [])
    }

    func testRelayedHandshakeSurvivesARestartAndNotifiesTheTarget() throws {
        let notified = Notified()
        var a = try TestNode()
        var b = try TestNode()
        do {
            let registry = try makeRegistry { $0.handshakeQueued = { notified.add($0) } }
            try register(registry, &a)
            try register(registry, &b)
            let request = a.signed(
                "request_handshake", "handshake:\(a.id):\(b.id)",
                ["from_node_id": .integer(Int64(a.id)), "to_node_id": .integer(Int64(b.id)), "justification": "hello"])
            XCTAssertEqual(registry.handle(request, peerIP: "x")["status"], "delivered")
            XCTAssertEqual(notified.nodes, [b.id])
        }
        let registry = try makeRegistry { $0.handshakeQueued = { notified.add($0) } }
        let poll = b.signed("poll_handshakes", "poll_handshakes:\(b.id)", ["node_id": .integer(Int64(b.id))])
        let waiting = registry.handle(poll, peerIP: "x")
        XCTAssertEqual(waiting["requests"]?.arrayValue?.first?["from_node_id"], .integer(Int64(a.id)))
        XCTAssertEqual(waiting["requests"]?.arrayValue?.first?["justification"], "hello")
        XCTAssertEqual(registry.handle(poll, peerIP: "x")["requests"], [], "polling empties the inbox")

        let respond = b.signed(
            "respond_handshake", "respond:\(b.id):\(a.id)",
            ["node_id": .integer(Int64(b.id)), "peer_id": .integer(Int64(a.id)), "accept": true])
        XCTAssertEqual(registry.handle(respond, peerIP: "x").type, "respond_handshake_ok")
        XCTAssertEqual(notified.nodes, [b.id, a.id])
        let answer = registry.handle(a.signed("poll_handshakes", "poll_handshakes:\(a.id)", ["node_id": .integer(Int64(a.id))]), peerIP: "x")
        XCTAssertEqual(answer["responses"]?.arrayValue?.first?["accept"], true)
        let check = registry.handle(
            RegistryMessage(type: "check_trust", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))]), peerIP: "x")
        XCTAssertEqual(check["trusted"], true)
    }

    func testBatchAnswersEachItemAsIfAlone() throws {
        let registry = try makeRegistry()
        let nodes = try (0..<3).map { _ in try TestNode() }
        let registered = registry.handle(RegistryMessage(type: "batch", ["requests": .array(nodes.map { $0.register().json })]), peerIP: "x")
        let ids = registered["replies"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }
        XCTAssertEqual(ids, [1, 2, 3])
        let heartbeats: [JSON] = nodes.enumerated().map { index, node in
            node.signed("heartbeat", "heartbeat:\(index + 1)", ["node_id": .integer(Int64(index + 1))]).json
        } + [RegistryMessage(type: "lookup", ["node_id": 1]).json, .string("junk")]
        let replies = registry.handle(RegistryMessage(type: "batch", ["requests": .array(heartbeats)]), peerIP: "x")["replies"]?.arrayValue
        XCTAssertEqual(replies?.map { $0["type"]?.stringValue ?? "" }, ["heartbeat_ok", "heartbeat_ok", "heartbeat_ok", "error", "error"])
    }

    func testNewKeysFromOneAddressAreRateLimited() throws {
        let registry = try makeRegistry {
            $0.registrationsPerSecond = 0.001
            $0.registrationBurst = 3
        }
        let results = try (0..<5).map { _ in registry.handle(try TestNode().register(), peerIP: "10.1.1.1").type }
        XCTAssertEqual(results, ["register_ok", "register_ok", "register_ok", "error", "error"])
        XCTAssertEqual(registry.handle(try TestNode().register(), peerIP: "10.1.1.2").type, "register_ok")
    }

    /// The flood of issue 12: 20 source addresses sending unsigned registers of fresh keys for
    /// 10 s get no more than the registry's budget for new keys from unknown sources.
    func testTwentySourcesGetNoMoreNewKeysThanTheBudgetIn10Seconds() throws {
        let registry = try makeRegistry()
        var admitted = 0
        var attempts = 0
        for _ in 0..<10 {
            for source in 1...20 {
                for _ in 0..<200 {
                    let key = try Ed25519PrivateKey()
                    let request = RegistryMessage(
                        type: "register", ["listen_addr": "127.0.0.1:4000", "public_key": .string(key.publicKey.base64)])
                    attempts += 1
                    if registry.handle(request, peerIP: "127.0.0.\(source)").type == "register_ok" { admitted += 1 }
                }
            }
            now += 1
        }
        print("20 sources, 10 s: \(admitted) of \(attempts) unsigned new keys admitted")
        let defaults = Registry.Configuration()
        let budget = Int(defaults.newKeysBurst + defaults.newKeysPerSecond * 9)
        XCTAssertLessThanOrEqual(admitted, budget)
        XCTAssertEqual(registry.nodeCount, admitted)
    }

    func testAnOperatorsHostWithTheCredentialIsNotHeldToTheNewKeyBudget() throws {
        let credential = Registry.hostCredential(adminToken: "operator-secret")
        let registry = try makeRegistry {
            $0.newKeysPerSecond = 0.001
            $0.newKeysBurst = 2
            $0.hostCredential = credential
        }
        func batch(_ count: Int, credential: String?) throws -> [String] {
            var fields: [String: JSON] = ["requests": .array(try (0..<count).map { _ in try TestNode().register().json })]
            if let credential { fields["credential"] = .string(credential) }
            let reply = registry.handle(RegistryMessage(type: "batch", fields), peerIP: "10.0.0.1")
            return reply["replies"]?.arrayValue?.map { $0["type"]?.stringValue ?? "" } ?? [reply.type]
        }
        XCTAssertEqual(try batch(3, credential: nil), ["register_ok", "register_ok", "error"])
        XCTAssertEqual(try batch(500, credential: credential), Array(repeating: "register_ok", count: 500))
        XCTAssertEqual(try batch(1, credential: "wrong"), ["error"], "a wrong credential is refused, not budgeted")
        XCTAssertEqual(registry.handle(try TestNode().register(), peerIP: "10.0.0.2").type, "error", "the budget is spent for all")
    }

    func testPerSourceBucketsThatRefilledAreForgotten() throws {
        let registry = try makeRegistry {
            $0.registrationsPerSecond = 1
            $0.registrationBurst = 10
            $0.maxRegistrationSources = 50
        }
        for source in 0..<50 { XCTAssertEqual(registry.handle(try TestNode().register(), peerIP: "10.0.1.\(source)").type, "register_ok") }
        XCTAssertEqual(registry.registrationSourceCount, 50)
        XCTAssertEqual(registry.handle(try TestNode().register(), peerIP: "10.0.2.1").type, "error", "the table is full")
        now += 0.5  // half a token back each: not full yet
        registry.reap()
        XCTAssertEqual(registry.registrationSourceCount, 50)
        now += 10
        XCTAssertEqual(registry.handle(try TestNode().register(), peerIP: "10.0.2.1").type, "register_ok", "full buckets made room")
        registry.reap()
        XCTAssertEqual(registry.registrationSourceCount, 1)
    }

    func testANodeOfflineLongerThanTheRetentionIsRetiredAndItsKeyGetsItsIdBack() throws {
        var a = try TestNode()
        var b = try TestNode()
        do {
            let registry = try makeRegistry { $0.retention = 86400 }
            try register(registry, &a)
            try register(registry, &b)
            let trust = a.signed("report_trust", "report_trust:\(a.id):\(b.id)", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))])
            XCTAssertEqual(registry.handle(trust, peerIP: "127.0.0.1").type, "report_trust_ok")
            now += 181
            registry.reap()
            try register(registry, &b)
            now += 86401  // b heartbeats meanwhile; a stays away
            XCTAssertEqual(registry.handle(b.signed("heartbeat", "heartbeat:\(b.id)", ["node_id": .integer(Int64(b.id))]), peerIP: "127.0.0.1").type, "heartbeat_ok")
            registry.reap()
            XCTAssertEqual(registry.nodeCount, 1, "a retired")
            XCTAssertEqual(registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(a.id))]), peerIP: "x").type, "error")
            let check = registry.handle(
                RegistryMessage(type: "check_trust", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))]), peerIP: "x")
            XCTAssertEqual(check["trusted"], false, "its trust went with it")
        }
        // A restart keeps the tombstone: the id is not handed out again.
        let registry = try makeRegistry { $0.retention = 86400 }
        var c = try TestNode()
        try register(registry, &c)
        XCTAssertEqual(c.id, 3)
        let unsigned = RegistryMessage(type: "register", ["listen_addr": "127.0.0.1:4000", "public_key": .string(a.publicKey)])
        XCTAssertEqual(registry.handle(unsigned, peerIP: "127.0.0.1").type, "error", "a retired key was seen: it must sign")
        let back = registry.handle(a.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(try back.nodeID("node_id"), a.id, "the key gets its old id")
        var d = try TestNode()
        try register(registry, &d)
        XCTAssertEqual(d.id, 4)
    }

    /// A host deleting identities for good says so (`forget_signature`), batched: each node is
    /// retired at once, leaving only its tombstone row; a plain deregister (1.18's) keeps the node
    /// offline, and a forget signed over another id is refused with nothing changed.
    func testABatchOfForgettingDeregistrationsLeavesOnlyTombstones() throws {
        let registry = try makeRegistry()
        var nodes = try (0..<4).map { _ in try TestNode() }
        for index in nodes.indices { try register(registry, &nodes[index]) }
        func goodbye(_ node: TestNode, forget: String?) -> JSON {
            var fields: [String: JSON] = ["node_id": .integer(Int64(node.id))]
            if let forget { fields["forget_signature"] = node.signature(forget) }
            return node.signed("deregister", "deregister:\(node.id)", fields).json
        }
        let requests: [JSON] = [
            goodbye(nodes[0], forget: "forget:\(nodes[0].id)"), goodbye(nodes[1], forget: "forget:\(nodes[1].id)"),
            goodbye(nodes[2], forget: nil), goodbye(nodes[3], forget: "forget:\(nodes[0].id)"),
        ]
        let replies = registry.handle(RegistryMessage(type: "batch", ["requests": .array(requests)]), peerIP: "127.0.0.1")["replies"]?.arrayValue
        XCTAssertEqual(replies?.map { $0["type"]?.stringValue ?? "" }, ["deregister_ok", "deregister_ok", "deregister_ok", "error"])
        XCTAssertEqual(replies?.first?["forgotten"], true)
        XCTAssertEqual(registry.nodeCount, 2, "the two forgotten are retired; the plain goodbye and the refused one stay")
        let lookup = { (node: TestNode) in registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node.id))]), peerIP: "x") }
        XCTAssertEqual(lookup(nodes[0]).type, "error")
        XCTAssertEqual(lookup(nodes[2])["online"], false)
        XCTAssertEqual(lookup(nodes[3])["online"], true, "a forget signed over another node's id changes nothing")
        let database = try Database(path: directory.path("state") + "/registry.db")
        XCTAssertEqual(try database.rows("SELECT count(*) FROM node").first?[0].integer, 2)
        XCTAssertEqual(try database.rows("SELECT count(*) FROM tombstone").first?[0].integer, 2)
        // The key still gets its id back, signing.
        XCTAssertEqual(try registry.handle(nodes[0].register(), peerIP: "127.0.0.1").nodeID("node_id"), nodes[0].id)
    }

    /// 1.18 signs `set_hostname:<node>`, not the hostname: a captured signature fits any name.
    func testAChangeSignedThe118WayIsTakenOnlyFromTheAddressTheNodeRegisteredFrom() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        try register(registry, &a, ip: "10.0.0.1")
        let captured = a.signed("set_hostname", "set_hostname:\(a.id)", ["node_id": .integer(Int64(a.id)), "hostname": "alpha"])
        XCTAssertEqual(registry.handle(captured, peerIP: "10.0.0.1").type, "set_hostname_ok")
        let replayed = captured.with("hostname", "evil")
        XCTAssertEqual(registry.handle(replayed, peerIP: "10.0.0.2").type, "error", "a replay from elsewhere is refused")
        let hidden = a.signed("set_visibility", "set_visibility:\(a.id)", ["node_id": .integer(Int64(a.id)), "public": false])
        XCTAssertEqual(registry.handle(hidden, peerIP: "10.0.0.1").type, "set_visibility_ok")
        let exposed = hidden.with("public", true)
        XCTAssertEqual(registry.handle(exposed, peerIP: "10.0.0.2").type, "error", "a private node is not made public from elsewhere")
        let lookup = registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(a.id))]), peerIP: "x")
        XCTAssertEqual(lookup["hostname"], "alpha")
        XCTAssertEqual(lookup["public"], false)
    }

    func testChangesSignedThe118WayAreRateLimitedPerNode() throws {
        let registry = try makeRegistry()
        var a = try TestNode()
        try register(registry, &a)
        let change = a.signed("set_tags", "set_tags:\(a.id)", ["node_id": .integer(Int64(a.id)), "tags": ["worker"]])
        let burst = (0..<12).map { _ in registry.handle(change, peerIP: "127.0.0.1").type }
        XCTAssertEqual(burst.filter { $0 == "set_tags_ok" }.count, 10)
        XCTAssertEqual(burst.suffix(2), ["error", "error"])
        now += 60
        XCTAssertEqual(registry.handle(change, peerIP: "127.0.0.1").type, "set_tags_ok")
    }

    /// Our form: `<type>:<node>:<nonce>:<values>`, advertised in register_ok; once a key used
    /// it, the 1.18 form is refused for that key, across restarts.
    func testOnceANodeSignsItsValuesThe118FormIsRefusedForIt() throws {
        var a = try TestNode()
        func change(_ hostname: String, nonce: Int64, signedFor signed: String? = nil) -> RegistryMessage {
            a.signed(
                "set_hostname", "set_hostname:\(a.id):\(nonce):\(signed ?? hostname)",
                ["node_id": .integer(Int64(a.id)), "hostname": .string(hostname), "nonce": .integer(nonce)])
        }
        do {
            let registry = try makeRegistry()
            let registered = registry.handle(a.register(), peerIP: "127.0.0.1")
            XCTAssertEqual(registered["signed_values"], 1, "the registry says it takes our form")
            a.id = try registered.nodeID("node_id")
            let first = change("alpha", nonce: 5)
            XCTAssertEqual(registry.handle(first, peerIP: "10.9.9.9").type, "set_hostname_ok", "from anywhere: it proves itself")
            XCTAssertEqual(registry.handle(first, peerIP: "127.0.0.1").type, "error", "the same nonce again is a replay")
            XCTAssertEqual(registry.handle(change("evil", nonce: 6, signedFor: "alpha"), peerIP: "127.0.0.1").type, "error")
            XCTAssertEqual(registry.handle(change("beta", nonce: 4), peerIP: "127.0.0.1").type, "error", "nonces only go up")
            XCTAssertEqual(registry.handle(change("beta", nonce: 6), peerIP: "127.0.0.1").type, "set_hostname_ok")
            let old = a.signed("set_hostname", "set_hostname:\(a.id)", ["node_id": .integer(Int64(a.id)), "hostname": "gamma"])
            XCTAssertEqual(registry.handle(old, peerIP: "127.0.0.1").type, "error", "sticky: no more 1.18 form for this key")
        }
        let restarted = try makeRegistry()
        let old = a.signed("set_visibility", "set_visibility:\(a.id)", ["node_id": .integer(Int64(a.id)), "public": true])
        XCTAssertEqual(restarted.handle(old, peerIP: "127.0.0.1").type, "error", "still sticky after a restart")
        XCTAssertEqual(restarted.handle(change("beta", nonce: 6), peerIP: "127.0.0.1").type, "error", "the last nonce is kept too")
        let visible = a.signed(
            "set_visibility", "set_visibility:\(a.id):7:public", ["node_id": .integer(Int64(a.id)), "public": true, "nonce": 7])
        XCTAssertEqual(restarted.handle(visible, peerIP: "127.0.0.1").type, "set_visibility_ok")
        let tags = a.signed(
            "set_tags", "set_tags:\(a.id):8:#worker,gpu", ["node_id": .integer(Int64(a.id)), "tags": ["#worker", "gpu"], "nonce": 8])
        XCTAssertEqual(restarted.handle(tags, peerIP: "127.0.0.1")["tags"], ["worker", "gpu"])
    }

    /// A node that went offline before retention was kept has no time in registry.db: its
    /// time starts at the first start that sees it, and stays put across later restarts.
    func testAnOfflineNodeFromBeforeRetentionExpiresFromTheFirstStartThatSeesIt() throws {
        var a = try TestNode()
        do {
            let registry = try makeRegistry { $0.retention = 30 * 86400 }
            try register(registry, &a)
            now += 181
            registry.reap()
        }
        try Database(path: directory.path("state") + "/registry.db").run("UPDATE node SET offline_since = NULL")
        _ = try makeRegistry { $0.retention = 30 * 86400 }  // the time starts here
        now += 20 * 86400
        _ = try makeRegistry { $0.retention = 30 * 86400 }
        now += 11 * 86400
        let registry = try makeRegistry { $0.retention = 30 * 86400 }
        registry.reap()
        XCTAssertEqual(registry.nodeCount, 0, "31 days after the first start, not after the last")
    }

    /// A node registered before the source address was kept: its endpoint's IP stands in.
    func testANodeFromBeforeSourcesWereKeptMayChangeFromItsEndpointsAddress() throws {
        var a = try TestNode()
        do {
            let registry = try makeRegistry()
            try register(registry, &a, ip: "10.0.0.1")
            now += 181
            registry.reap()
        }
        try Database(path: directory.path("state") + "/registry.db").run("UPDATE node SET registered_from = '', offline_since = NULL")
        let registry = try makeRegistry()
        XCTAssertEqual(setHostname(registry, a, "alpha").type, "error", "127.0.0.1 is not where it registered from")
        let change = a.signed("set_hostname", "set_hostname:\(a.id)", ["node_id": .integer(Int64(a.id)), "hostname": "alpha"])
        XCTAssertEqual(registry.handle(change, peerIP: "10.0.0.1").type, "set_hostname_ok")
    }

    func testUnknownAndMalformedRequestsGetErrorsNamingTheProblem() throws {
        let registry = try makeRegistry()
        XCTAssertEqual(
            registry.handle(RegistryMessage(type: "no_such"), peerIP: "x")["error"],
            "unknown type: no_such (this registry serves no network invites, managed networks, network policies or enterprise features)")
        XCTAssertEqual(
            registry.handle(RegistryMessage(type: "lookup", ["node_id": "seven"]), peerIP: "x")["error"],
            "bad request: invalid lookup.node_id: must be a node id (0...4294967295)")
        XCTAssertEqual(registry.handle(RegistryMessage(type: "lookup", ["node_id": 42]), peerIP: "x")["error"], "node 42 is not registered")
    }

    func testMembersOfTheBackboneAreListedOnlineOnlyWithoutEndpoints() throws {
        let registry = try makeRegistry()
        var a = try TestNode(), b = try TestNode()
        try register(registry, &a)
        try register(registry, &b)
        _ = registry.handle(b.signed("set_visibility", "set_visibility:\(b.id)", ["node_id": .integer(Int64(b.id)), "public": true]), peerIP: "127.0.0.1")
        now += 1000  // both silent past the liveness timeout; a comes back
        _ = registry.handle(a.signed("heartbeat", "heartbeat:\(a.id)", ["node_id": .integer(Int64(a.id))]), peerIP: "x")
        registry.reap()
        let reply = registry.handle(RegistryMessage(type: "list_nodes", ["network_id": 0]), peerIP: "x")
        XCTAssertEqual(reply.type, "list_nodes_ok", reply.json.encodedString())
        let listed = try XCTUnwrap(reply["nodes"]?.arrayValue)
        XCTAssertEqual(listed.compactMap { $0["node_id"]?.integerValue }, [Int64(a.id)], reply.json.encodedString())
        XCTAssertEqual(listed.first?["version"], "1.18.0")
        XCTAssertNil(listed.first?["real_addr"])
        XCTAssertEqual(reply["total"], 1)
        XCTAssertEqual(registry.handle(RegistryMessage(type: "list_nodes", ["network_id": 3]), peerIP: "x")["error"], "network 3 does not exist")
    }

    func testTheBackboneHasAnEmptyNetworkPolicyAndOtherNetworksDoNotExist() throws {
        let registry = try makeRegistry()
        let backbone = registry.handle(RegistryMessage(type: "get_network_policy", ["network_id": 0]), peerIP: "x")
        XCTAssertEqual(backbone.json, ["type": "get_network_policy_ok", "network_id": 0])
        XCTAssertEqual(
            registry.handle(RegistryMessage(type: "get_network_policy", ["network_id": 7]), peerIP: "x")["error"],
            "network 7 does not exist")
        XCTAssertEqual(registry.handle(RegistryMessage(type: "get_network_policy"), peerIP: "x").type, "error")
    }
}

/// Nodes the registry asked the beacon to poke.
final class Notified: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var list: [UInt32] = []
    func add(_ node: UInt32) { lock.withLock { list.append(node) } }
    var nodes: [UInt32] { lock.withLock { list } }
}
