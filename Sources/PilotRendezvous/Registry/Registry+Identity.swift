import Foundation
import PilotCrypto
import PilotWire

/// A node's own record: register, heartbeat, deregister, key rotation.
extension Registry {
    /// `retrying`: a first attempt was refused by the database as taken (another instance
    /// registered the key, or holds the hostname, first); memory has its rows now.
    func register(
        _ request: RegistryMessage, peerIP: String, fromOperatorHost: Bool, retrying: Bool = false
    ) throws -> RegistryMessage {
        let keyText = try request.string("public_key")
        let key = try Ed25519PublicKey(base64: keyText)
        let listenAddress = request["listen_addr"]?.stringValue ?? ""
        // 1.18 signs "register:<listen_addr>:<public_key>"; an unsigned register may only claim
        // a key never seen, since it proves nothing about holding it. A key another instance
        // registered (a host failing over from it) keeps its id.
        let known: UInt32?
        let retired: UInt32?
        if let batchKeys, batchKeys.asked.contains(key.bytes) {
            // The batch asked the store about this key already (`lookUpBatchKeys`).
            known = byKey[key.bytes]
            retired = known == nil ? batchKeys.retired[key.bytes] : nil
        } else {
            known = try byKey[key.bytes] ?? rememberStored(withKey: key.bytes)
            // A key whose node was retired was seen too: it must prove itself to get its id back.
            retired = known == nil ? try store.retiredID(of: key.bytes) : nil
        }
        let sequence = try registerSequence(
            request, key: key, keyText: keyText, listenAddress: listenAddress, node: known,
            stored: known.flatMap { nodes[$0]?.registerSequence } ?? 0)
        if sequence != nil {
            // The sequence's signature covers the key and the listen address too: the proof
            // 1.18's signature gives, and more. One verification per register, not two.
        } else if let signature = request["signature"]?.stringValue {
            try verify(key, signature, "register:\(listenAddress):\(keyText)")
        } else if known != nil || retired != nil {
            throw RegistryFailure("register: signature required for a known key")
        }
        let now = clock()
        let id: UInt32
        if let known {
            id = known
        } else {
            if !fromOperatorHost { try admitNewKey(from: peerIP, now: now) }
            if let retired {
                id = retired
            } else {
                guard let new = try store.newNodeID(next: nextID) else { throw RegistryFailure("register: node ids exhausted") }
                id = new
            }
        }
        // 1.18 may leave the host out (`:4000`): only the port counts.
        let port = (try? Endpoint(parsing: listenAddress, defaultHost: ""))?.port
        var node = nodes[id] ?? NodeRecord(
            id: id, publicKey: key.bytes, owner: "", realAddress: "", hostname: nil, tags: [], isPublic: false,
            version: "", lastSeen: now, online: true)
        node.owner = request["owner"]?.stringValue ?? node.owner
        node.version = request["version"]?.stringValue ?? node.version
        node.realAddress = port.map { Endpoint(host: peerIP, port: $0).description } ?? node.realAddress
        node.registeredFrom = peerIP
        // Each register says it again: a restart without -relay-only makes the node direct.
        node.relayOnly = request["relay_only"]?.boolValue ?? false
        node.lanAddresses = Self.lanAddresses(request["lan_addrs"])
        node.lastSeen = now
        if let sequence { node.registerSequence = sequence }
        comeBack(&node)
        do {
            if known == nil, let retired {
                try store.transaction {
                    try store.revive(retired)
                    try store.save(node)
                }
            } else {
                try store.save(node)
            }
        } catch let conflict as RegistryStorageConflict {
            guard !retrying else { throw conflict }
            try rememberStored(holding: key.bytes, or: node.hostname)
            return try register(request, peerIP: peerIP, fromOperatorHost: fromOperatorHost, retrying: true)
        }
        if known == nil, id >= nextID { nextID = id &+ 1 }
        remember(node)
        seen(id)
        var fields: [String: JSON] = [
            "node_id": .integer(Int64(id)), "network_id": 0, "address": .string(Address(node: id).description),
            "public_key": .string(keyText),
        ]
        // What the registry holds, so a node can tell what it must say again (our fields; 1.18
        // reads only node_id, address and hostname).
        if let hostname = node.hostname { fields["hostname"] = .string(hostname) }
        if !node.tags.isEmpty { fields["tags"] = .array(node.tags.map(JSON.string)) }
        fields["public"] = .bool(node.isPublic)
        // Changes signed over their values and a nonce are taken (SignedChange).
        fields["signed_values"] = 1
        return RegistryMessage(type: "register_ok", fields)
    }

    /// The most LAN endpoints a node's record keeps.
    static let maxLANAddresses = 8

    /// What a register's `lan_addrs` may hold, as 1.18 fills it: `ip:port` of private or
    /// link-local IPv4 addresses (10/8, 172.16/12, 192.168/16, 169.254/16). Anything else is
    /// dropped, not refused (the register stands), and at most `maxLANAddresses` are kept.
    static func lanAddresses(_ field: JSON?) -> [String] {
        guard let items = field?.arrayValue else { return [] }
        var kept: [String] = []
        for item in items {
            guard kept.count < maxLANAddresses, let text = item.stringValue, let endpoint = try? Endpoint(parsing: text), endpoint.port != 0,
                let octets = endpoint.ipv4Octets, Endpoint.isPrivateOrLinkLocal(ipv4: octets)
            else { continue }
            let described = endpoint.description
            if !kept.contains(described) { kept.append(described) }
        }
        return kept
    }

    func heartbeat(_ request: RegistryMessage) throws -> RegistryMessage {
        var node = try signedNode(request, "node_id") { "heartbeat:\($0)" }
        node.lastSeen = clock()
        if !node.online {
            // 1.18 keeps heartbeating a node the reaper took offline and never registers it again.
            comeBack(&node)
            try store.save(node)
        }
        remember(node)
        seen(node.id)
        return RegistryMessage(type: "heartbeat_ok", ["time": .integer(Int64(Date().timeIntervalSince1970))])
    }

    /// An explicit goodbye: offline, and out of every custom network (a node that merely goes
    /// silent keeps its memberships). With `forget_signature` (our extension: the node's key over
    /// `forget:<id>`, sent by a host deleting the identity for good), the node is retired at
    /// once, as retention would retire it later: only its tombstone stays (id and key hash), so a
    /// fleet that makes and deletes identities by the thousand leaves no rows behind.
    func deregister(_ request: RegistryMessage) throws -> RegistryMessage {
        if let forgetSignature = request["forget_signature"]?.stringValue {
            // `forget:<id>` proves the key and the intent, more than 1.18's `deregister:<id>`:
            // that one is not checked too.
            let node = try existing(try request.nodeID("node_id"))
            try verify(try Ed25519PublicKey(bytes: node.publicKey), forgetSignature, "forget:\(node.id)")
            try store.transaction {
                try store.retire(node)
                try store.removeMemberships(of: node.id)
            }
            forget([node])
            retired += 1
            return RegistryMessage(type: "deregister_ok", ["node_id": .integer(Int64(node.id)), "forgotten": true])
        }
        var node = try signedNode(request, "node_id") { "deregister:\($0)" }
        goOffline(&node, keepingHostname: false)
        try store.transaction {
            try store.save(node)
            try store.removeMemberships(of: node.id)
        }
        remember(node)
        networks.removeEverywhere(node.id)
        return RegistryMessage(type: "deregister_ok", ["node_id": .integer(Int64(node.id))])
    }

    /// A node's new key, signed by its old one over `rotate:<id>:<new key as sent>` (1.18's form:
    /// the signature covers the key it installs, so it cannot be replayed for another).
    func rotateKey(_ request: RegistryMessage) throws -> RegistryMessage {
        let newKeyText = try request.string("new_public_key")
        var node = try signedNode(request, "node_id") { "rotate:\($0):\(newKeyText)" }
        let newKey = try Ed25519PublicKey(base64: newKeyText)
        guard byKey[newKey.bytes] == nil else { throw RegistryFailure("rotate_key: that key belongs to another node") }
        node.publicKey = newKey.bytes
        do {
            try store.save(node)
        } catch is RegistryStorageConflict {
            // Another instance's node has it, which memory did not know yet.
            try rememberStored(holding: newKey.bytes, or: nil)
            throw RegistryFailure("rotate_key: that key belongs to another node")
        }
        remember(node)
        return RegistryMessage(
            type: "rotate_key_ok",
            ["node_id": .integer(Int64(node.id)), "address": .string(Address(node: node.id).description), "public_key": .string(newKeyText)])
    }
}
