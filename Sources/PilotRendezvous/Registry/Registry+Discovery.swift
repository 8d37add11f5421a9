import Foundation
import PilotCrypto
import PilotWire

/// Finding nodes and what they show of themselves: lookups, hostnames, tags, visibility, beacons.
extension Registry {
    func lookup(_ request: RegistryMessage) throws -> RegistryMessage {
        let node = try existing(try request.nodeID("node_id"))
        return RegistryMessage(type: "lookup_ok", describe(node, revealEndpoint: node.isPublic))
    }

    func resolve(_ request: RegistryMessage) throws -> RegistryMessage {
        let target = try existing(try request.nodeID("node_id"))
        let requester = try signedNode(request, "requester_id") { "resolve:\($0):\(target.id)" }
        guard target.isPublic || target.id == requester.id || trust.contains(Self.pair(target.id, requester.id)) else {
            throw RegistryFailure("resolve: node \(target.id) is private and does not trust \(requester.id)")
        }
        guard target.online, !target.realAddress.isEmpty else { throw RegistryFailure("resolve: node \(target.id) is offline") }
        // A relay-only node's endpoint goes to nobody: it is reached through the beacon, whose
        // address stands in `real_addr` (1.18 refuses to dial a node that has none, and then
        // sees `relay_only` and goes through the beacon).
        if target.relayOnly {
            var fields: [String: JSON] = ["node_id": .integer(Int64(target.id)), "relay_only": true]
            if let beacon = configuration.beaconAddresses.first { fields["real_addr"] = .string(beacon) }
            return RegistryMessage(type: "resolve_ok", fields)
        }
        var fields: [String: JSON] = ["node_id": .integer(Int64(target.id)), "real_addr": .string(endpoint(of: target))]
        // Where it is on its own LAN (1.18 goes there when it shares the /24).
        if !target.lanAddresses.isEmpty { fields["lan_addrs"] = .array(target.lanAddresses.map(JSON.string)) }
        return RegistryMessage(type: "resolve_ok", fields)
    }

    /// Where `node` is reached: the endpoint the beacon saw its tunnel socket at, when that is
    /// fresh and from the IP the node registered from, else `real_addr` as registered (the TCP
    /// peer's IP with `listen_addr`'s port).
    ///
    /// Our extension. A daemon behind a NAT can only guess the port its tunnel socket is mapped
    /// to; 1.18 registers the mapping of a throwaway socket, which under a NAT that does not
    /// keep ports is another port. The beacon sees the tunnel socket itself (1.18 and pilot-host
    /// send it discovers from there), so its view is the one a peer can reach. A discover names
    /// its node without proof, hence the IP check: nobody can move a node to another address,
    /// only to another port of the address it registered from.
    func endpoint(of node: NodeRecord) -> String {
        guard let observed = configuration.observedEndpoint?(node.id), observed.port != 0,
            !observed.host.isEmpty, Self.plainIP(observed.host) == Self.plainIP(node.registeredFrom)
        else { return node.realAddress }
        return Endpoint(host: Self.plainIP(observed.host), port: observed.port).description
    }

    /// An IP as one form: an IPv4 that came IPv4-mapped from a dual-stack socket as IPv4.
    static func plainIP(_ ip: String) -> String {
        let lowered = ip.lowercased()
        return lowered.hasPrefix("::ffff:") && lowered.contains(".") ? String(lowered.dropFirst(7)) : lowered
    }

    func resolveHostname(_ request: RegistryMessage) throws -> RegistryMessage {
        let hostname = try request.string("hostname").lowercased()
        guard let id = byHostname[hostname], let node = nodes[id], node.online else {
            throw RegistryFailure("hostname not found: \(hostname.prefix(63))")
        }
        return RegistryMessage(
            type: "resolve_hostname_ok",
            [
                "node_id": .integer(Int64(id)), "address": .string(Address(node: id).description),
                "public": .bool(node.isPublic), "hostname": .string(hostname),
            ])
    }

    /// Our extension: online nodes carrying `tag`, with what `lookup` would show of each.
    func findByTag(_ request: RegistryMessage) throws -> RegistryMessage {
        let tag = try Self.normalisedTag(try request.string("tag"))
        let matches = nodes.values.filter { $0.online && $0.tags.contains(tag) }.sorted { $0.id < $1.id }.prefix(1000)
        return RegistryMessage(
            type: "find_by_tag_ok",
            ["tag": .string(tag), "nodes": .array(matches.map { .object(describe($0, revealEndpoint: $0.isPublic)) })])
    }

    /// What `lookup` shows of `node`; its endpoint only with `revealEndpoint`.
    func describe(_ node: NodeRecord, revealEndpoint: Bool) -> [String: JSON] {
        let memberOf = [0] + networks.networks(of: node.id)
        var fields: [String: JSON] = [
            "node_id": .integer(Int64(node.id)), "address": .string(Address(node: node.id).description),
            "networks": .array(memberOf.map { .integer(Int64($0)) }), "public_key": .string(Base64.encode(node.publicKey)),
            "public": .bool(node.isPublic), "polo_score": 0, "online": .bool(node.online),
        ]
        if let hostname = node.hostname { fields["hostname"] = .string(hostname) }
        if !node.tags.isEmpty { fields["tags"] = .array(node.tags.map(JSON.string)) }
        if node.relayOnly {
            fields["relay_only"] = true
        } else if revealEndpoint, node.online, !node.realAddress.isEmpty {
            fields["real_addr"] = .string(endpoint(of: node))
        }
        return fields
    }

    func setVisibility(_ request: RegistryMessage, peerIP: String) throws -> RegistryMessage {
        let isPublic = try request.bool("public")
        var node = try changedNode(request, peerIP: peerIP)
        node.isPublic = isPublic
        try store.save(node)
        nodes[node.id] = node
        return RegistryMessage(
            type: "set_visibility_ok",
            ["node_id": .integer(Int64(node.id)), "visibility": .string(node.isPublic ? "public" : "private")])
    }

    /// `retrying`: as for `register`.
    func setHostname(_ request: RegistryMessage, peerIP: String, retrying: Bool = false) throws -> RegistryMessage {
        let hostname = try request.string("hostname").lowercased()
        var node = try changedNode(request, peerIP: peerIP)
        // Other nodes the change takes the name from, stored before `node` (the name is unique).
        var others: [UInt32: NodeRecord] = [:]
        if !hostname.isEmpty {
            try Self.validateHostname(hostname)
            if let holder = byHostname[hostname], holder != node.id {
                guard let other = nodes[holder], !other.online else {
                    throw RegistryFailure("set_hostname: \(hostname) is taken by node \(holder)")
                }
                // An offline node's hostname is free to claim.
                others[holder, default: other].hostname = nil
            }
            // Taking a name the reaper freed ends its old holder's claim to it.
            if let claimant = byReclaimable[hostname], claimant != node.id, let other = nodes[claimant] {
                others[claimant, default: other].reclaimableHostname = nil
            }
        }
        node.hostname = hostname.isEmpty ? nil : hostname
        do {
            try store.transaction {
                for other in others.values { try store.save(other) }
                try store.save(node)
            }
        } catch let conflict as RegistryStorageConflict {
            // Another instance gave the name to a node this one had not heard of yet: asked
            // again with that node in memory, the answer is the one a name taken gets here.
            guard !retrying else { throw conflict }
            try rememberStored(holding: node.publicKey, or: node.hostname)
            return try setHostname(request, peerIP: peerIP, retrying: true)
        }
        others.values.forEach(remember)
        remember(node)
        return RegistryMessage(type: "set_hostname_ok", ["node_id": .integer(Int64(node.id)), "hostname": .string(hostname)])
    }

    func setTags(_ request: RegistryMessage, peerIP: String) throws -> RegistryMessage {
        var node = try changedNode(request, peerIP: peerIP)
        let values = request["tags"]?.arrayValue ?? []
        guard values.count <= Self.maxTags else { throw RegistryFailure("set_tags: at most \(Self.maxTags) tags") }
        var tags: [String] = []
        for value in values {
            guard let text = value.stringValue else { throw RegistryFailure("set_tags: tags must be strings") }
            let tag = try Self.normalisedTag(text)
            if !tags.contains(tag) { tags.append(tag) }
        }
        node.tags = tags
        try store.save(node)
        nodes[node.id] = node
        return RegistryMessage(
            type: "set_tags_ok", ["node_id": .integer(Int64(node.id)), "tags": tags.isEmpty ? nil : .array(tags.map(JSON.string))])
    }

    func beaconList() -> RegistryMessage {
        RegistryMessage(
            type: "beacon_list_ok",
            ["beacons": .array(configuration.beaconAddresses.enumerated().map { ["id": .integer(Int64($0.offset + 1)), "addr": .string($0.element)] })])
    }
}
