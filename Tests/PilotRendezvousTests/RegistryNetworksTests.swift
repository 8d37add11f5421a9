import Foundation
import PilotRendezvous
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// Custom networks (`Registry+Networks.swift`): create, join, leave, members, trust, lookup,
/// persistence, deregister.
final class RegistryNetworksTests: XCTestCase {
    private static let adminToken = "s3cret-admin"
    private var directory: TemporaryDirectory!
    private let clock = TestClock()

    /// The registry's monotonic clock, moved by the test.
    private final class TestClock: @unchecked Sendable {
        // @unchecked: read by the registry under its lock and written by the test between requests.
        var now = 1000.0
    }

    override func setUpWithError() throws {
        directory = try TemporaryDirectory(prefix: "pilot-networks")
    }

    override func tearDown() {
        directory.remove()
    }

    private func makeRegistry(adminToken: String? = RegistryNetworksTests.adminToken) throws -> Registry {
        var configuration = Registry.Configuration()
        configuration.adminToken = adminToken
        let clock = clock
        return try Registry(stateDirectory: directory.path("state"), configuration: configuration, clock: { clock.now })
    }

    private func registered(_ registry: Registry, count: Int) throws -> [TestNode] {
        try (0..<count).map { _ in
            var node = try TestNode()
            let reply = registry.handle(node.register(), peerIP: "127.0.0.1")
            node.id = try reply.nodeID("node_id")
            return node
        }
    }

    private func create(
        _ registry: Registry, _ name: String, rule: String = "open", token: String = "", by node: UInt32 = 0,
        adminToken: String? = RegistryNetworksTests.adminToken
    ) -> RegistryMessage {
        var fields: [String: JSON] = ["node_id": .integer(Int64(node)), "name": .string(name), "join_rule": .string(rule), "token": .string(token)]
        if let adminToken { fields["admin_token"] = .string(adminToken) }
        return registry.handle(RegistryMessage(type: "create_network", fields), peerIP: "127.0.0.1")
    }

    /// `node` joins (or leaves) `network`, signed by `signer` (default: itself).
    private func send(
        _ type: String, _ registry: Registry, _ node: TestNode, _ network: Int, token: String = "", signer: TestNode? = nil
    ) -> RegistryMessage {
        let fields: [String: JSON] = [
            "node_id": .integer(Int64(node.id)), "network_id": .integer(Int64(network)), "token": .string(token), "inviter_id": 0,
        ]
        return registry.handle((signer ?? node).signed(type, "\(type):\(node.id):\(network)", fields), peerIP: "127.0.0.1")
    }

    private func members(_ registry: Registry, _ network: Int, _ extra: [String: JSON] = [:]) -> RegistryMessage {
        var fields = extra
        fields["network_id"] = .integer(Int64(network))
        return registry.handle(RegistryMessage(type: "list_nodes", fields), peerIP: "127.0.0.1")
    }

    private func lookupNetworks(_ registry: Registry, _ node: TestNode) -> [Int64] {
        registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node.id))]), peerIP: "x")["networks"]?
            .arrayValue?.compactMap(\.integerValue) ?? []
    }

    private func trusted(_ registry: Registry, _ a: TestNode, _ b: TestNode) -> JSON? {
        registry.handle(
            RegistryMessage(type: "check_trust", ["node_id": .integer(Int64(a.id)), "peer_id": .integer(Int64(b.id))]), peerIP: "x")["trusted"]
    }

    func testCreatingANetworkNeedsTheRegistrysAdminToken() throws {
        do {
            let unconfigured = try makeRegistry(adminToken: nil)
            XCTAssertEqual(
                create(unconfigured, "lab")["error"], "create_network: this registry has no admin token configured")
        }
        let registry = try makeRegistry()
        XCTAssertEqual(create(registry, "lab", adminToken: nil)["error"], "create_network: admin token required")
        XCTAssertEqual(create(registry, "lab", adminToken: "")["error"], "create_network: admin token required")
        XCTAssertEqual(create(registry, "lab", adminToken: "s3cret-admiN")["error"], "create_network: invalid admin token")
        XCTAssertEqual(create(registry, "lab", adminToken: "s3cret")["error"], "create_network: invalid admin token")
        let created = create(registry, "lab")
        XCTAssertEqual(created.json, ["type": "create_network_ok", "network_id": 1, "name": "lab", "enterprise": false])
        XCTAssertEqual(registry.members(of: 1), [], "created by node 0: no first member")
    }

    func testNetworkNamesAndJoinRulesAreValidatedAndIdsCountUp() throws {
        let registry = try makeRegistry()
        for bad in ["Lab", "-lab", "lab-", "la_b", "", String(repeating: "a", count: 64)] {
            XCTAssertEqual(
                create(registry, bad)["error"]?.stringValue,
                "create_network: invalid name \(bad.prefix(63)): lowercase letters, digits and inner hyphens, at most 63")
        }
        XCTAssertEqual(create(registry, "backbone")["error"], "create_network: the name backbone is reserved for network 0")
        XCTAssertEqual(create(registry, "lab", rule: "invite")["error"],
            "create_network: join_rule invite is not served by this registry (it serves no invites): use open or token")
        XCTAssertEqual(create(registry, "lab", rule: "token")["error"], "create_network: join_rule token needs a non-empty token")
        XCTAssertEqual(create(registry, "lab", token: "tk")["error"], "create_network: a token needs join_rule token (this one is open)")
        XCTAssertEqual(create(registry, "lab", rule: "secret")["error"], "create_network: unknown join_rule secret: open or token")
        XCTAssertEqual(create(registry, "lab", by: 77)["error"], "node 77 is not registered")
        XCTAssertEqual(create(registry, String(repeating: "a", count: 63))["network_id"], 1)
        XCTAssertEqual(create(registry, "lab-2", rule: "token", token: "tk")["network_id"], 2)
        XCTAssertEqual(create(registry, "lab-2")["error"], "create_network: network 2 is already named lab-2")
        let listed = registry.handle(RegistryMessage(type: "list_networks"), peerIP: "x")["networks"]?.arrayValue ?? []
        XCTAssertEqual(listed.compactMap { $0["name"]?.stringValue }, ["backbone", String(repeating: "a", count: 63), "lab-2"])
        XCTAssertEqual(listed.last, ["id": 2, "name": "lab-2", "join_rule": "token", "members": 0])
    }

    func testJoiningChecksTheTokenTheNodesSignatureAndMembership() throws {
        let registry = try makeRegistry()
        let nodes = try registered(registry, count: 3)
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        XCTAssertEqual(create(registry, "lab", rule: "token", token: "tk1")["network_id"], 1)

        XCTAssertEqual(send("join_network", registry, a, 1, token: "tk2")["error"], "invalid token for network 1")
        XCTAssertEqual(send("join_network", registry, a, 1)["error"], "invalid token for network 1")
        XCTAssertEqual(
            send("join_network", registry, a, 1, token: "tk1", signer: b)["error"]?.stringValue, "invalid signature for join_network:\(a.id):1")
        let unsigned = RegistryMessage(type: "join_network", ["node_id": .integer(Int64(a.id)), "network_id": 1, "token": "tk1"])
        XCTAssertEqual(registry.handle(unsigned, peerIP: "x")["error"], "join_network: signature required")
        XCTAssertEqual(registry.members(of: 1), [])

        let joined = send("join_network", registry, a, 1, token: "tk1")
        XCTAssertEqual(joined.json, ["type": "join_network_ok", "network_id": 1, "address": .string("1:0001.0000.000\(a.id)")])
        XCTAssertEqual(send("join_network", registry, a, 1, token: "tk1")["error"]?.stringValue, "node \(a.id) already in network 1")
        XCTAssertEqual(
            send("join_network", registry, b, 0)["error"],
            "join_network: network 0, the backbone, cannot be joined: every registered node is in it")
        XCTAssertEqual(send("join_network", registry, b, 9)["error"], "network 9 does not exist")
        XCTAssertEqual(send("join_network", registry, b, 70000)["error"], "network 70000 does not exist")

        // The admin token stands in for the node's signature, not for the join token.
        func byAdmin(_ token: String, admin: String) -> RegistryMessage {
            registry.handle(
                RegistryMessage(
                    type: "join_network",
                    ["node_id": .integer(Int64(c.id)), "network_id": 1, "token": .string(token), "admin_token": .string(admin)]),
                peerIP: "x")
        }
        XCTAssertEqual(byAdmin("tk1", admin: "nope")["error"], "join_network: invalid admin token")
        XCTAssertEqual(byAdmin("nope", admin: Self.adminToken)["error"], "invalid token for network 1")
        XCTAssertEqual(byAdmin("tk1", admin: Self.adminToken).type, "join_network_ok")
        XCTAssertEqual(registry.members(of: 1), [a.id, c.id])
    }

    func testMembersAreListedWithTheOfflineFlagAndLeavingRemovesThem() throws {
        let registry = try makeRegistry()
        let nodes = try registered(registry, count: 3)
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        XCTAssertEqual(create(registry, "lab", by: a.id)["network_id"], 1, "a registered creator is the first member")
        XCTAssertEqual(send("join_network", registry, b, 1).type, "join_network_ok")
        _ = registry.handle(b.signed("set_visibility", "set_visibility:\(b.id)", ["node_id": .integer(Int64(b.id)), "public": true]), peerIP: "127.0.0.1")
        clock.now += 1000  // all silent past the liveness timeout; a comes back, b stays offline
        _ = registry.handle(a.signed("heartbeat", "heartbeat:\(a.id)", ["node_id": .integer(Int64(a.id))]), peerIP: "x")
        registry.reap()

        let reply = members(registry, 1)
        XCTAssertEqual(reply.type, "list_nodes_ok", reply.json.encodedString())
        let listed = reply["nodes"]?.arrayValue ?? []
        XCTAssertEqual(listed.compactMap { $0["node_id"]?.integerValue }, [Int64(a.id), Int64(b.id)], "c is no member")
        XCTAssertEqual(listed.compactMap { $0["address"]?.stringValue }, ["1:0001.0000.000\(a.id)", "1:0001.0000.000\(b.id)"])
        XCTAssertEqual(listed.map { $0["offline"] }, [nil, true], "a silent member stays a member, marked offline")
        XCTAssertEqual(listed.map { $0["public"] }, [false, true])
        XCTAssertEqual(listed.first?["version"], "1.18.0")
        XCTAssertTrue(listed.allSatisfy { $0["real_addr"] == nil }, "never an endpoint")
        XCTAssertEqual(reply["total"], 2)
        XCTAssertEqual(reply["truncated"], false)
        XCTAssertEqual(members(registry, 1, ["admin_token": .string(Self.adminToken)])["total"], 2)
        XCTAssertEqual(members(registry, 1, ["admin_token": "wrong"])["error"], "list_nodes: invalid admin token")
        XCTAssertEqual(members(registry, 4)["error"], "network 4 does not exist")
        XCTAssertEqual(
            registry.handle(RegistryMessage(type: "get_network_policy", ["network_id": 1]), peerIP: "x").json,
            ["type": "get_network_policy_ok", "network_id": 1])

        XCTAssertEqual(send("leave_network", registry, b, 1).json, ["type": "leave_network_ok", "network_id": 1])
        XCTAssertEqual(send("leave_network", registry, b, 1)["error"]?.stringValue, "node \(b.id) is not in network 1")
        XCTAssertEqual(send("leave_network", registry, c, 1)["error"]?.stringValue, "node \(c.id) is not in network 1")
        XCTAssertEqual(send("leave_network", registry, a, 1, signer: c)["error"]?.stringValue, "invalid signature for leave_network:\(a.id):1")
        XCTAssertEqual(
            send("leave_network", registry, a, 0)["error"], "leave_network: network 0, the backbone, cannot be left: every registered node is in it")
        XCTAssertEqual(members(registry, 1)["nodes"]?.arrayValue?.compactMap { $0["node_id"]?.integerValue }, [Int64(a.id)])
        let listedNetworks = registry.handle(RegistryMessage(type: "list_networks"), peerIP: "x")["networks"]?.arrayValue
        XCTAssertEqual(listedNetworks?.last, ["id": 1, "name": "lab", "join_rule": "open", "members": 1])
    }

    func testCoMembersAreTrustedAndLookupListsTheirNetworks() throws {
        let registry = try makeRegistry()
        let nodes = try registered(registry, count: 3)
        let (a, b, c) = (nodes[0], nodes[1], nodes[2])
        XCTAssertEqual(trusted(registry, a, b), false)
        _ = create(registry, "lab")
        _ = create(registry, "other")
        XCTAssertEqual(send("join_network", registry, a, 1).type, "join_network_ok")
        XCTAssertEqual(send("join_network", registry, c, 2).type, "join_network_ok")
        XCTAssertEqual(trusted(registry, a, b), false, "b is in no network yet")
        XCTAssertEqual(send("join_network", registry, b, 1).type, "join_network_ok")
        XCTAssertEqual(trusted(registry, a, b), true)
        XCTAssertEqual(trusted(registry, b, a), true)
        XCTAssertEqual(trusted(registry, a, c), false, "members of different networks")
        XCTAssertEqual(lookupNetworks(registry, a), [0, 1])
        XCTAssertEqual(lookupNetworks(registry, c), [0, 2])
        XCTAssertEqual(registry.networks(of: b.id), [0, 1])
        XCTAssertEqual(registry.networks(of: 99), [])
        XCTAssertEqual(registry.members(of: 1), [a.id, b.id])
        XCTAssertNil(registry.members(of: 0))
        XCTAssertNil(registry.members(of: 3))
        XCTAssertEqual(registry.network(named: "other"), 2)
        XCTAssertTrue(registry.networkExists(2))
        XCTAssertFalse(registry.networkExists(3))

        XCTAssertEqual(send("leave_network", registry, b, 1).type, "leave_network_ok")
        XCTAssertEqual(trusted(registry, a, b), false, "trust through a network ends with the membership")
    }

    func testNetworksSurviveARestartAndDeregisterDropsMemberships() throws {
        var nodes: [TestNode] = []
        do {
            let registry = try makeRegistry()
            nodes = try registered(registry, count: 2)
            XCTAssertEqual(create(registry, "lab", rule: "token", token: "tk1", by: nodes[0].id)["network_id"], 1)
            XCTAssertEqual(send("join_network", registry, nodes[1], 1, token: "tk1").type, "join_network_ok")
        }
        let (a, b) = (nodes[0], nodes[1])
        let database = try Database(path: directory.path("state/registry.db"))
        let rows = try database.rows("SELECT id, name, join_rule, length(token_digest) FROM network")
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows.first?[0].integer, 1)
        XCTAssertEqual(rows.first?[1].text, "lab")
        XCTAssertEqual(rows.first?[2].text, "token")
        XCTAssertEqual(rows.first?[3].integer, 32, "the token is kept as its digest only")
        XCTAssertEqual(try database.rows("SELECT node FROM network_member ORDER BY node").compactMap { $0.first?.integer }, [Int64(a.id), Int64(b.id)])

        do {
            let registry = try makeRegistry()
            XCTAssertEqual(registry.members(of: 1), [a.id, b.id])
            XCTAssertEqual(lookupNetworks(registry, b), [0, 1])
            XCTAssertEqual(trusted(registry, a, b), true)
            XCTAssertEqual(send("join_network", registry, a, 1, token: "tk1")["error"]?.stringValue, "node \(a.id) already in network 1")
            XCTAssertEqual(create(registry, "lab")["error"], "create_network: network 1 is already named lab")
            XCTAssertEqual(create(registry, "lab-2")["network_id"], 2, "ids are not reused")
            let goodbye = b.signed("deregister", "deregister:\(b.id)", ["node_id": .integer(Int64(b.id))])
            XCTAssertEqual(registry.handle(goodbye, peerIP: "x").type, "deregister_ok")
            XCTAssertEqual(registry.members(of: 1), [a.id])
            XCTAssertEqual(lookupNetworks(registry, b), [0])
            XCTAssertEqual(trusted(registry, a, b), false)
        }
        XCTAssertEqual(try database.rows("SELECT node FROM network_member").compactMap { $0.first?.integer }, [Int64(a.id)])
        let restarted = try makeRegistry()
        XCTAssertEqual(restarted.members(of: 1), [a.id])
        XCTAssertEqual(restarted.members(of: 2), [])
        XCTAssertEqual(restarted.handle(RegistryMessage(type: "list_networks"), peerIP: "x")["networks"]?.arrayValue?.count, 3)
    }
}
