import PilotCrypto
import PilotWire

/// Custom networks as 1.18's registry has them (docs/PROTOCOL.md §8.4): `create_network`, gated on
/// the registry's admin token; `join_network` and `leave_network`, signed by the node or carrying
/// the admin token; per-network `list_nodes`, which 1.18's broadcast fans out to; `list_networks`
/// and `get_network_policy`. The backbone, network 0, holds every registered node and cannot be
/// joined or left. Invites, managed networks and enterprise features are not served.
extension Registry {
    /// The networks `node` is in, as `lookup` lists them: the backbone (0), then its custom
    /// networks by id; empty for a node never registered.
    public func networks(of node: UInt32) -> [UInt16] {
        lock.withLock { nodes[node] == nil ? [] : [0] + networks.networks(of: node) }
    }

    /// The members of custom network `network` by node id; nil when no custom network has that id
    /// (the backbone included: it has no member list, every registered node is in it).
    public func members(of network: UInt16) -> [UInt32]? {
        lock.withLock { networks.byID[network].map { $0.members.sorted() } }
    }

    /// Most nodes one `list_nodes` reply carries; `total` and `truncated` say what was left out.
    static let maxListed = 1000

    // MARK: Handling (with `lock` held, from `dispatch`)

    /// `create_network` {node_id, name, join_rule, token, admin_token}: pilotctl sends it itself
    /// with node_id 0; a registered node_id becomes the first member.
    func createNetwork(_ request: RegistryMessage) throws -> RegistryMessage {
        try requireAdminToken(request)
        let name = try request.string("name")
        guard RegistryMessage.isLabel(name, maxLength: 63) else {
            throw RegistryFailure("create_network: invalid name \(name.prefix(63)): lowercase letters, digits and inner hyphens, at most 63")
        }
        guard name != Self.backbone else { throw RegistryFailure("create_network: the name backbone is reserved for network 0") }
        if let taken = networks.id(named: name) { throw RegistryFailure("create_network: network \(taken) is already named \(name)") }
        let token = request["token"]?.stringValue ?? ""
        let rule: JoinRule
        switch request["join_rule"]?.stringValue ?? "open" {
        case "open":
            guard token.isEmpty else { throw RegistryFailure("create_network: a token needs join_rule token (this one is open)") }
            rule = .open
        case "token":
            guard !token.isEmpty else { throw RegistryFailure("create_network: join_rule token needs a non-empty token") }
            rule = .token
        case "invite":
            throw RegistryFailure("create_network: join_rule invite is not served by this registry (it serves no invites): use open or token")
        case let other:
            throw RegistryFailure("create_network: unknown join_rule \(other.prefix(32)): open or token")
        }
        let creator = try request["node_id"] == nil ? 0 : request.nodeID("node_id")
        if creator != 0 { _ = try existing(creator) }
        guard let id = networks.nextID else { throw RegistryFailure("create_network: all 65535 network ids are taken") }
        let network = CustomNetwork(
            id: id, name: name, joinRule: rule, token: rule == .token ? SecretDigest(of: token) : nil,
            members: creator == 0 ? [] : [creator])
        try store.transaction { try store.add(network) }
        networks.add(network)
        return RegistryMessage(type: "create_network_ok", ["network_id": .integer(Int64(id)), "name": .string(name), "enterprise": false])
    }

    /// `join_network` {node_id, network_id, token, inviter_id, signature over
    /// `join_network:<node>:<net>` or admin_token}. The join rule holds for the admin token too.
    func joinNetwork(_ request: RegistryMessage) throws -> RegistryMessage {
        let network = try customNetwork(request, "joined")
        let node = try authorisedNode(request) { "join_network:\($0):\(network.id)" }
        guard !network.members.contains(node.id) else { throw RegistryFailure("node \(node.id) already in network \(network.id)") }
        guard network.accepts(token: request["token"]?.stringValue ?? "") else {
            throw RegistryFailure("invalid token for network \(network.id)")
        }
        try store.setMember(node.id, of: network.id, true)
        networks.insert(node.id, into: network.id)
        return RegistryMessage(
            type: "join_network_ok",
            ["network_id": .integer(Int64(network.id)), "address": .string(Address(network: network.id, node: node.id).description)])
    }

    /// `leave_network` {node_id, network_id, signature over `leave_network:<node>:<net>` or admin_token}.
    func leaveNetwork(_ request: RegistryMessage) throws -> RegistryMessage {
        let network = try customNetwork(request, "left")
        let node = try authorisedNode(request) { "leave_network:\($0):\(network.id)" }
        guard network.members.contains(node.id) else { throw RegistryFailure("node \(node.id) is not in network \(network.id)") }
        try store.setMember(node.id, of: network.id, false)
        networks.remove(node.id, from: network.id)
        return RegistryMessage(type: "leave_network_ok", ["network_id": .integer(Int64(network.id))])
    }

    /// The backbone (its online members count) and every custom network, by id.
    func listNetworks() -> RegistryMessage {
        let backbone: JSON = [
            "id": 0, "name": .string(Self.backbone), "join_rule": "open", "members": .integer(Int64(nodes.values.filter(\.online).count)),
        ]
        let custom = networks.byID.values.sorted { $0.id < $1.id }.map { network -> JSON in
            [
                "id": .integer(Int64(network.id)), "name": .string(network.name), "join_rule": .string(network.joinRule.rawValue),
                "members": .integer(Int64(network.members.count)),
            ]
        }
        return RegistryMessage(type: "list_networks_ok", ["networks": .array([backbone] + custom)])
    }

    /// `pilotctl network members N` and 1.18's broadcast: for the backbone its online nodes, for a
    /// custom network its members (`offline: true` on those not online), with what `lookup` shows
    /// of each but never an endpoint, by node id; at most `maxListed`, with the total. No token is
    /// needed, but a wrong `admin_token` is refused.
    func listNodes(_ request: RegistryMessage) throws -> RegistryMessage {
        let network = try networkID(request)
        if let given = request["admin_token"]?.stringValue, !given.isEmpty, let adminToken, !adminToken.matches(given) {
            throw RegistryFailure("list_nodes: invalid admin token")
        }
        let listed = network == 0
            ? nodes.values.filter(\.online) : (networks.byID[network]?.members ?? []).compactMap { nodes[$0] }
        let entries = listed.sorted { $0.id < $1.id }.prefix(Self.maxListed).map { node in
            var fields = describe(node, revealEndpoint: false)
            fields["address"] = .string(Address(network: network, node: node.id).description)
            fields["version"] = .string(node.version)
            if !node.online { fields["offline"] = true }
            return JSON.object(fields)
        }
        return RegistryMessage(
            type: "list_nodes_ok",
            [
                "network_id": .integer(Int64(network)), "nodes": .array(Array(entries)), "total": .integer(Int64(listed.count)),
                "truncated": .bool(listed.count > entries.count),
            ])
    }

    /// 1.18 asks for the policy of every network it is in and keeps its last-known policy on an
    /// error. No network here has a policy: an ok reply naming the network and carrying no rules
    /// (1.18 then applies none).
    func networkPolicy(_ request: RegistryMessage) throws -> RegistryMessage {
        RegistryMessage(type: "get_network_policy_ok", ["network_id": .integer(Int64(try networkID(request)))])
    }

    // MARK: Checks

    /// The request's `network_id`: the backbone or an existing custom network.
    private func networkID(_ request: RegistryMessage) throws -> UInt16 {
        let value = try request.nodeID("network_id")
        guard let id = UInt16(exactly: value), id == 0 || networks.byID[id] != nil else {
            throw RegistryFailure("network \(value) does not exist")
        }
        return id
    }

    /// The custom network the request's `network_id` names; the backbone cannot be `verb`.
    private func customNetwork(_ request: RegistryMessage, _ verb: String) throws -> CustomNetwork {
        let id = try networkID(request)
        guard let network = networks.byID[id] else {
            throw RegistryFailure("\(request.type): network 0, the backbone, cannot be \(verb): every registered node is in it")
        }
        return network
    }

    /// The node named by `node_id`, proven by its signature over `challenge(id)` or, in a request
    /// without a signature, by the registry's admin token.
    private func authorisedNode(_ request: RegistryMessage, _ challenge: (UInt32) -> String) throws -> NodeRecord {
        if request["signature"] == nil, let given = request["admin_token"]?.stringValue, !given.isEmpty {
            try requireAdminToken(request)
            return try existing(try request.nodeID("node_id"))
        }
        return try signedNode(request, "node_id", challenge)
    }

    /// The request must carry the registry's admin token.
    private func requireAdminToken(_ request: RegistryMessage) throws {
        guard let adminToken else { throw RegistryFailure("\(request.type): this registry has no admin token configured") }
        guard let given = request["admin_token"]?.stringValue, !given.isEmpty else {
            throw RegistryFailure("\(request.type): admin token required")
        }
        guard adminToken.matches(given) else { throw RegistryFailure("\(request.type): invalid admin token") }
    }
}
