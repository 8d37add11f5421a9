import Foundation
public import PilotCrypto
public import PilotWire

/// The registry's request handling: every message the official 1.18 daemon and pilotctl send,
/// with their semantics (docs/PROTOCOL.md §8), custom networks
/// (`Registry+Networks.swift`), plus our own `find_by_tag` and `batch` extensions.
/// Transport-free: `RegistryServer` feeds it decoded messages.
///
/// Thread-safe: one lock serialises every request; SQLite writes happen inside it, before the
/// reply, so an answered change is durable.
public final class Registry: @unchecked Sendable {
    // @unchecked: all mutable state is accessed only with `lock` held.
    public struct Configuration: Sendable {
        /// Beacon addresses for `beacon_list`, as `host:port`.
        public var beaconAddresses: [String] = []
        /// A node that sent no heartbeat for this long is offline and its hostname freed.
        public var livenessTimeout: Double = 180
        /// New keys registered per source IP: per-second refill and burst (ten seconds' worth).
        /// A host carrying thousands of identities registers them all from one address: raise it.
        public var registrationsPerSecond: Double = 100 {
            didSet { registrationBurst = registrationsPerSecond * 10 }
        }
        public var registrationBurst: Double = 1000
        /// New keys registered from all sources together, per-second refill and burst (ten
        /// seconds' worth), except those an operator's host brings with `hostCredential`: many
        /// source addresses cannot fill the registry faster than this.
        public var newKeysPerSecond: Double = 100 {
            didSet { newKeysBurst = newKeysPerSecond * 10 }
        }
        public var newKeysBurst: Double = 1000
        /// Source addresses whose per-IP bucket is remembered at once; full buckets are forgotten
        /// first, and past this a new source must wait until some are.
        public var maxRegistrationSources = 65536
        /// The operator's hosts present this in `batch` requests; their new keys are not held to
        /// the budgets above. Nil or empty: none. `Registry.hostCredential(adminToken:)` derives
        /// it from the admin token.
        public var hostCredential: String?
        /// Seconds a node may stay offline before it is retired: its row deleted, a tombstone
        /// (id, SHA-256 of its key) kept so the id is never reused and the key gets it back.
        public var retention: Double = 30 * 86400
        /// Called (outside the lock) when a relayed handshake or answer waits for `node`.
        public var handshakeQueued: (@Sendable (UInt32) -> Void)?
        /// The registry's admin token: `create_network` needs it, and it may stand in for a node's
        /// signature on `join_network`/`leave_network`. Nil or empty: no networks can be created.
        public var adminToken: String?

        public init() {}
    }

    public let configuration: Configuration
    /// The digest of `configuration.adminToken`, if one is set.
    let adminToken: SecretDigest?
    /// The digest of `configuration.hostCredential`, if one is set.
    let hostCredential: SecretDigest?
    /// `registry.db`; written before a change is answered.
    let store: RegistryStore
    /// Held for every read and write of the state below (extensions in other files included).
    let lock = NSLock()
    /// Every node ever registered, by id, online or not.
    var nodes: [UInt32: NodeRecord] = [:]
    var byKey: [[UInt8]: UInt32] = [:]
    private var byHostname: [String: UInt32] = [:]
    /// Hostnames the reaper freed, by the node that may take each back.
    var byReclaimable: [String: UInt32] = [:]
    var trust: Set<UInt64> = []
    /// The custom networks and their members.
    var networks = NetworkTable()
    var requests: [UInt32: [PendingHandshake]] = [:]
    var responses: [UInt32: [PendingResponse]] = [:]
    private var nextID: UInt32 = 1
    var registrationBuckets: [String: TokenBucket] = [:]
    /// Changes signed the 1.18 way, per node.
    var legacyChangeBuckets: [UInt32: TokenBucket] = [:]
    /// New keys from all sources but the operator's hosts.
    var newKeyBudget: TokenBucket
    /// Nodes retired by this process (`Registry+Retention.swift`).
    var retired = 0
    let clock: @Sendable () -> Double
    /// Unix seconds, for what must count across restarts and reboots (retention).
    let wallClock: @Sendable () -> Double

    /// Changes signed the 1.18 way one node may make: a burst of 10, then one every 6 s.
    static let legacyChangeBurst = 10.0
    static let legacyChangesPerSecond = 1.0 / 6

    /// Per-request limits of the wire.
    static let maxJustification = 1024
    static let maxTags = 10

    /// Opens (or creates) `registry.db` in `stateDirectory` and loads it.
    public init(
        stateDirectory: String, configuration: Configuration = Configuration(),
        clock: @escaping @Sendable () -> Double = Registry.uptime,
        wallClock: @escaping @Sendable () -> Double = Registry.unixTime
    ) throws {
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        self.configuration = configuration
        adminToken = configuration.adminToken.flatMap { $0.isEmpty ? nil : SecretDigest(of: $0) }
        hostCredential = configuration.hostCredential.flatMap { $0.isEmpty ? nil : SecretDigest(of: $0) }
        newKeyBudget = TokenBucket(capacity: configuration.newKeysBurst, ratePerSecond: configuration.newKeysPerSecond, now: clock())
        self.clock = clock
        self.wallClock = wallClock
        store = try RegistryStore(path: (stateDirectory as NSString).appendingPathComponent("registry.db"))
        try loadState()
    }

    /// Replaces the in-memory state with what `registry.db` holds.
    private func loadState() throws {
        let state = try store.load(now: clock())
        nextID = max(nextID, try store.highestRetiredID() &+ 1)
        nodes = [:]
        byKey = [:]
        byHostname = [:]
        byReclaimable = [:]
        trust = []
        networks = NetworkTable()
        for node in state.nodes {
            nodes[node.id] = node
            byKey[node.publicKey] = node.id
            if let hostname = node.hostname { byHostname[hostname] = node.id }
            if let hostname = node.reclaimableHostname { byReclaimable[hostname] = node.id }
            if node.registeredFrom.isEmpty {
                // Registered before the source was kept: the IP of its endpoint stands in.
                nodes[node.id]?.registeredFrom = (try? Endpoint(parsing: node.realAddress))?.host ?? node.realAddress
            }
            if !node.online, node.offlineSince == nil {
                // Offline since before retention was kept: its time starts now, kept on disk.
                var dated = nodes[node.id] ?? node
                dated.offlineSince = Int64(wallClock())
                try store.save(dated)
                nodes[node.id] = dated
            }
            nextID = max(nextID, node.id &+ 1)
        }
        for (a, b) in state.trust { trust.insert(Self.pair(a, b)) }
        for network in state.networks { networks.add(network) }
        requests = state.requests
        responses = state.responses
    }

    /// Seconds since boot: a monotonic clock for liveness.
    public static let uptime: @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }

    /// Seconds since 1970: the clock of what must count across reboots (retention).
    public static let unixTime: @Sendable () -> Double = { Date().timeIntervalSince1970 }

    /// Registered nodes (online or not).
    public var nodeCount: Int { lock.withLock { nodes.count } }

    /// The Ed25519 key `node` registered with, if it is known.
    public func signingKey(of node: UInt32) -> Ed25519PublicKey? {
        lock.withLock { nodes[node].flatMap { try? Ed25519PublicKey(bytes: $0.publicKey) } }
    }

    /// Whether `node` registered relay-only: its endpoint goes to nobody.
    public func isRelayOnly(_ node: UInt32) -> Bool {
        lock.withLock { nodes[node]?.relayOnly == true }
    }

    /// The online node holding `hostname` (case-insensitive), as `resolve_hostname` finds it.
    public func node(withHostname hostname: String) -> UInt32? {
        lock.withLock { byHostname[hostname.lowercased()].flatMap { id in nodes[id]?.online == true ? id : nil } }
    }

    /// The name of network 0, which every registered node is in.
    public static let backbone = "backbone"

    /// The id of the network called `name`: 0 for the backbone, else a custom network's.
    public func network(named name: String) -> UInt16? {
        name == Self.backbone ? 0 : lock.withLock { networks.id(named: name) }
    }

    /// Whether network `id` exists: the backbone or a custom network.
    public func networkExists(_ id: UInt16) -> Bool {
        id == 0 || lock.withLock { networks.byID[id] != nil }
    }

    // MARK: Handling

    /// Answers one request from a client at `peerIP`. Never throws: failures become
    /// `{"type":"error","error":...}` replies naming the problem.
    public func handle(_ request: RegistryMessage, peerIP: String) -> RegistryMessage {
        var notify: [UInt32] = []
        let reply: RegistryMessage
        do {
            reply = try lock.withLock { try dispatch(request, peerIP: peerIP, fromOperatorHost: false, notify: &notify) }
        } catch let error as RegistryFailure {
            reply = RegistryMessage(type: "error", ["error": .string(error.message)])
        } catch let error as WireError {
            reply = RegistryMessage(type: "error", ["error": .string("bad request: \(error)")])
        } catch {
            reply = RegistryMessage(type: "error", ["error": .string("internal error: \(error)")])
        }
        if let queued = configuration.handshakeQueued { notify.forEach(queued) }
        return reply
    }

    /// `fromOperatorHost`: the request came in a batch that carried the host credential.
    private func dispatch(
        _ request: RegistryMessage, peerIP: String, fromOperatorHost: Bool, notify: inout [UInt32]
    ) throws -> RegistryMessage {
        switch request.type {
        case "register": return try register(request, peerIP: peerIP, fromOperatorHost: fromOperatorHost)
        case "heartbeat": return try heartbeat(request)
        case "deregister": return try deregister(request)
        case "lookup": return try lookup(request)
        case "resolve": return try resolve(request)
        case "resolve_hostname": return try resolveHostname(request)
        case "set_visibility": return try setVisibility(request, peerIP: peerIP)
        case "set_hostname": return try setHostname(request, peerIP: peerIP)
        case "set_tags": return try setTags(request, peerIP: peerIP)
        case "report_trust": return try reportTrust(request)
        case "revoke_trust": return try revokeTrust(request)
        case "check_trust": return try checkTrust(request)
        case "request_handshake": return try requestHandshake(request, notify: &notify)
        case "poll_handshakes": return try pollHandshakes(request)
        case "respond_handshake": return try respondHandshake(request, notify: &notify)
        case "punch": return try punch(request)
        case "rotate_key": return try rotateKey(request)
        case "create_network": return try createNetwork(request)
        case "join_network": return try joinNetwork(request)
        case "leave_network": return try leaveNetwork(request)
        case "list_networks": return listNetworks()
        case "get_network_policy": return try networkPolicy(request)
        case "list_nodes": return try listNodes(request)
        case "beacon_list": return beaconList()
        case "find_by_tag": return try findByTag(request)
        case "batch": return try batch(request, peerIP: peerIP, notify: &notify)
        default:
            throw RegistryFailure(
                "unknown type: \(request.type.prefix(64)) (this registry serves no network invites, managed networks, "
                    + "network policies or enterprise features)")
        }
    }

    // MARK: Identity

    private func register(_ request: RegistryMessage, peerIP: String, fromOperatorHost: Bool) throws -> RegistryMessage {
        let keyText = try request.string("public_key")
        let key = try Ed25519PublicKey(base64: keyText)
        let listenAddress = request["listen_addr"]?.stringValue ?? ""
        // 1.18 signs "register:<listen_addr>:<public_key>"; an unsigned register may only claim
        // a key never seen, since it proves nothing about holding it.
        let known = byKey[key.bytes]
        // A key whose node was retired was seen too: it must prove itself to get its id back.
        let retired = known == nil ? try store.retiredID(of: key.bytes) : nil
        if let signature = request["signature"]?.stringValue {
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
                try store.revive(retired)
                id = retired
            } else {
                guard nextID != 0, nextID != Address.broadcastNode else { throw RegistryFailure("register: node ids exhausted") }
                id = nextID
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
        node.lastSeen = now
        comeBack(&node)
        try store.save(node)
        if known == nil {
            if id == nextID { nextID = id &+ 1 }
            byKey[key.bytes] = id
        }
        nodes[id] = node
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

    private func heartbeat(_ request: RegistryMessage) throws -> RegistryMessage {
        var node = try signedNode(request, "node_id") { "heartbeat:\($0)" }
        node.lastSeen = clock()
        if !node.online {
            // 1.18 keeps heartbeating a node the reaper took offline and never registers it again.
            comeBack(&node)
            try store.save(node)
        }
        nodes[node.id] = node
        return RegistryMessage(type: "heartbeat_ok", ["time": .integer(Int64(Date().timeIntervalSince1970))])
    }

    /// An explicit goodbye: offline, and out of every custom network (a node that merely goes
    /// silent keeps its memberships).
    private func deregister(_ request: RegistryMessage) throws -> RegistryMessage {
        var node = try signedNode(request, "node_id") { "deregister:\($0)" }
        goOffline(&node, keepingHostname: false)
        try store.transaction {
            try store.save(node)
            try store.removeMemberships(of: node.id)
        }
        nodes[node.id] = node
        networks.removeEverywhere(node.id)
        return RegistryMessage(type: "deregister_ok", ["node_id": .integer(Int64(node.id))])
    }

    private func rotateKey(_ request: RegistryMessage) throws -> RegistryMessage {
        var node = try signedNode(request, "node_id") { "rotate:\($0)" }
        let newKeyText = try request.string("new_public_key")
        let newKey = try Ed25519PublicKey(base64: newKeyText)
        guard byKey[newKey.bytes] == nil else { throw RegistryFailure("rotate_key: that key belongs to another node") }
        byKey[node.publicKey] = nil
        node.publicKey = newKey.bytes
        try store.save(node)
        byKey[newKey.bytes] = node.id
        nodes[node.id] = node
        return RegistryMessage(
            type: "rotate_key_ok",
            ["node_id": .integer(Int64(node.id)), "address": .string(Address(node: node.id).description), "public_key": .string(newKeyText)])
    }

    // MARK: Discovery

    private func lookup(_ request: RegistryMessage) throws -> RegistryMessage {
        let node = try existing(try request.nodeID("node_id"))
        return RegistryMessage(type: "lookup_ok", describe(node, revealEndpoint: node.isPublic))
    }

    private func resolve(_ request: RegistryMessage) throws -> RegistryMessage {
        let target = try existing(try request.nodeID("node_id"))
        let requester = try signedNode(request, "requester_id") { "resolve:\($0):\(target.id)" }
        guard target.isPublic || target.id == requester.id || trust.contains(Self.pair(target.id, requester.id)) else {
            throw RegistryFailure("resolve: node \(target.id) is private and does not trust \(requester.id)")
        }
        guard target.online, !target.realAddress.isEmpty else { throw RegistryFailure("resolve: node \(target.id) is offline") }
        // A relay-only node's endpoint goes to nobody: it is reached through the beacon.
        if target.relayOnly { return RegistryMessage(type: "resolve_ok", ["node_id": .integer(Int64(target.id)), "relay_only": true]) }
        return RegistryMessage(type: "resolve_ok", ["node_id": .integer(Int64(target.id)), "real_addr": .string(target.realAddress)])
    }

    private func resolveHostname(_ request: RegistryMessage) throws -> RegistryMessage {
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
    private func findByTag(_ request: RegistryMessage) throws -> RegistryMessage {
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
            fields["real_addr"] = .string(node.realAddress)
        }
        return fields
    }

    private func setVisibility(_ request: RegistryMessage, peerIP: String) throws -> RegistryMessage {
        let isPublic = try request.bool("public")
        var node = try changedNode(request, peerIP: peerIP)
        node.isPublic = isPublic
        try store.save(node)
        nodes[node.id] = node
        return RegistryMessage(
            type: "set_visibility_ok",
            ["node_id": .integer(Int64(node.id)), "visibility": .string(node.isPublic ? "public" : "private")])
    }

    private func setHostname(_ request: RegistryMessage, peerIP: String) throws -> RegistryMessage {
        let hostname = try request.string("hostname").lowercased()
        var node = try changedNode(request, peerIP: peerIP)
        if hostname.isEmpty {
            if let old = node.hostname { byHostname[old] = nil }
            node.hostname = nil
        } else {
            try Self.validateHostname(hostname)
            if let holder = byHostname[hostname], holder != node.id {
                guard let other = nodes[holder], !other.online else {
                    throw RegistryFailure("set_hostname: \(hostname) is taken by node \(holder)")
                }
                // An offline node's hostname is free to claim.
                var released = other
                released.hostname = nil
                try store.clearHostname(of: holder)
                nodes[holder] = released
            }
            // Taking a name the reaper freed ends its old holder's claim to it.
            if let claimant = byReclaimable[hostname], claimant != node.id, var other = nodes[claimant] {
                other.reclaimableHostname = nil
                try store.save(other)
                nodes[claimant] = other
                byReclaimable[hostname] = nil
            }
            if let old = node.hostname { byHostname[old] = nil }
            node.hostname = hostname
            byHostname[hostname] = node.id
        }
        try store.save(node)
        nodes[node.id] = node
        return RegistryMessage(type: "set_hostname_ok", ["node_id": .integer(Int64(node.id)), "hostname": .string(hostname)])
    }

    private func setTags(_ request: RegistryMessage, peerIP: String) throws -> RegistryMessage {
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

    private func beaconList() -> RegistryMessage {
        RegistryMessage(
            type: "beacon_list_ok",
            ["beacons": .array(configuration.beaconAddresses.enumerated().map { ["id": .integer(Int64($0.offset + 1)), "addr": .string($0.element)] })])
    }

    // MARK: Trust

    private func reportTrust(_ request: RegistryMessage) throws -> RegistryMessage {
        let peer = try existing(try request.nodeID("peer_id"))
        let node = try signedNode(request, "node_id") { "report_trust:\($0):\(peer.id)" }
        guard node.id != peer.id else { throw RegistryFailure("report_trust: a node cannot trust itself") }
        try store.setTrust(node.id, peer.id, true)
        trust.insert(Self.pair(node.id, peer.id))
        return RegistryMessage(type: "report_trust_ok", ["node_id": .integer(Int64(node.id)), "peer_id": .integer(Int64(peer.id))])
    }

    private func revokeTrust(_ request: RegistryMessage) throws -> RegistryMessage {
        let peerID = try request.nodeID("peer_id")
        let node = try signedNode(request, "node_id") { "revoke_trust:\($0):\(peerID)" }
        guard trust.contains(Self.pair(node.id, peerID)) else {
            throw RegistryFailure("revoke_trust: no trust between \(node.id) and \(peerID)")
        }
        try store.setTrust(node.id, peerID, false)
        trust.remove(Self.pair(node.id, peerID))
        return RegistryMessage(type: "revoke_trust_ok", ["node_id": .integer(Int64(node.id)), "peer_id": .integer(Int64(peerID))])
    }

    /// Trusted: a trust pair, or (as 1.18's registry has it) members of a common custom network,
    /// so a private node accepts datagrams, broadcasts among them, from fellow members.
    private func checkTrust(_ request: RegistryMessage) throws -> RegistryMessage {
        let node = try request.nodeID("node_id")
        let peer = try request.nodeID("peer_id")
        let trusted = trust.contains(Self.pair(node, peer)) || networks.shareNetwork(node, peer)
        return RegistryMessage(
            type: "check_trust_ok", ["node_id": .integer(Int64(node)), "peer_id": .integer(Int64(peer)), "trusted": .bool(trusted)])
    }

    private func requestHandshake(_ request: RegistryMessage, notify: inout [UInt32]) throws -> RegistryMessage {
        let target = try existing(try request.nodeID("to_node_id"))
        let from = try signedNode(request, "from_node_id") { "handshake:\($0):\(target.id)" }
        let justification = request["justification"]?.stringValue ?? ""
        guard justification.utf8.count <= Self.maxJustification else {
            throw RegistryFailure("request_handshake: justification longer than \(Self.maxJustification) bytes")
        }
        var inbox = requests[target.id] ?? []
        inbox.removeAll { $0.from == from.id }
        guard inbox.count < 100 else { throw RegistryFailure("request_handshake: node \(target.id) has 100 requests waiting") }
        let pending = PendingHandshake(from: from.id, justification: justification, timestamp: Int64(Date().timeIntervalSince1970))
        try store.addRequest(to: target.id, pending)
        inbox.append(pending)
        requests[target.id] = inbox
        notify.append(target.id)
        return RegistryMessage(type: "request_handshake_ok", ["status": "delivered"])
    }

    private func pollHandshakes(_ request: RegistryMessage) throws -> RegistryMessage {
        let node = try signedNode(request, "node_id") { "poll_handshakes:\($0)" }
        let waiting = requests[node.id] ?? []
        let answered = responses[node.id] ?? []
        if !waiting.isEmpty || !answered.isEmpty { try store.clearInbox(of: node.id) }
        requests[node.id] = nil
        responses[node.id] = nil
        return RegistryMessage(
            type: "poll_handshakes_ok",
            [
                "requests": .array(waiting.map {
                    ["from_node_id": .integer(Int64($0.from)), "justification": .string($0.justification), "timestamp": .integer($0.timestamp)]
                }),
                "responses": .array(answered.map {
                    ["from_node_id": .integer(Int64($0.from)), "accept": .bool($0.accept), "timestamp": .integer($0.timestamp)]
                }),
            ])
    }

    private func respondHandshake(_ request: RegistryMessage, notify: inout [UInt32]) throws -> RegistryMessage {
        let peer = try existing(try request.nodeID("peer_id"))
        let node = try signedNode(request, "node_id") { "respond:\($0):\(peer.id)" }
        let accept = try request.bool("accept")
        let response = PendingResponse(from: node.id, accept: accept, timestamp: Int64(Date().timeIntervalSince1970))
        try store.transaction {
            try store.addResponse(to: peer.id, response)
            if accept { try store.setTrust(node.id, peer.id, true) }
        }
        responses[peer.id, default: []].removeAll { $0.from == node.id }
        responses[peer.id, default: []].append(response)
        if accept { trust.insert(Self.pair(node.id, peer.id)) }
        notify.append(peer.id)
        return RegistryMessage(type: "respond_handshake_ok", ["accept": .bool(accept), "peer_id": .integer(Int64(peer.id))])
    }

    private func punch(_ request: RegistryMessage) throws -> RegistryMessage {
        let a = try existing(try request.nodeID("node_a"))
        let b = try existing(try request.nodeID("node_b"))
        let requester = try signedNode(request, "requester_id") { _ in "punch:\(a.id):\(b.id)" }
        guard requester.id == a.id || requester.id == b.id else { throw RegistryFailure("punch: requester must be node_a or node_b") }
        let other = requester.id == a.id ? b : a
        // Unlike the old registry, never hand out a private node's endpoint to a stranger.
        guard other.isPublic || trust.contains(Self.pair(a.id, b.id)) else {
            throw RegistryFailure("punch: node \(other.id) is private and does not trust \(requester.id)")
        }
        guard !other.relayOnly else { throw RegistryFailure("punch: node \(other.id) is relay-only") }
        return RegistryMessage(
            type: "punch_ok",
            [
                "node_a": .integer(Int64(a.id)), "node_a_addr": .string(a.realAddress),
                "node_b": .integer(Int64(b.id)), "node_b_addr": .string(b.realAddress),
            ])
    }

    // MARK: Batch (our extension)

    /// `{"type":"batch","requests":[<request>, ...]}` → `{"type":"batch_ok","replies":[<reply>, ...]}`,
    /// replies in request order, each exactly what the request alone would get. Only the types in
    /// `batchable` may be batched (each signed by its own node's key), at most 1000 per batch:
    /// one round trip for a host carrying thousands of identities.
    private func batch(_ request: RegistryMessage, peerIP: String, notify: inout [UInt32]) throws -> RegistryMessage {
        guard let items = request["requests"]?.arrayValue else { throw RegistryFailure("batch: requests must be an array") }
        guard items.count <= 1000 else { throw RegistryFailure("batch: at most 1000 requests") }
        var fromOperatorHost = false
        if let credential = request["credential"]?.stringValue {
            // A wrong credential is an operator's mistake: say so rather than quietly budget it.
            guard let hostCredential, hostCredential.matches(credential) else {
                throw RegistryFailure("batch: host credential not recognised")
            }
            fromOperatorHost = true
        }
        var replies: [JSON] = []
        replies.reserveCapacity(items.count)
        // One transaction for the batch: one fsync instead of one per item. Items never open
        // transactions of their own (none of the batchable types does).
        do {
            try store.transaction {
                for item in items {
                    replies.append(batchItem(item, peerIP: peerIP, fromOperatorHost: fromOperatorHost, notify: &notify).json)
                }
            }
        } catch {
            // The commit failed (disk full, I/O error): memory ran ahead of the disk, so take the
            // disk's word for everything and report the whole batch as failed.
            try loadState()
            throw RegistryFailure("batch: could not be stored: \(error)")
        }
        return RegistryMessage(type: "batch_ok", ["replies": .array(replies)])
    }

    /// What a batch may carry: what a host says for each of its identities at once.
    static let batchable: Set<String> = ["register", "heartbeat", "poll_handshakes", "set_hostname", "set_tags", "set_visibility"]

    private func batchItem(_ item: JSON, peerIP: String, fromOperatorHost: Bool, notify: inout [UInt32]) -> RegistryMessage {
        do {
            let inner = try RegistryMessage(json: item)
            guard Self.batchable.contains(inner.type) else {
                throw RegistryFailure("batch: \(inner.type.prefix(64)) cannot be batched")
            }
            return try dispatch(inner, peerIP: peerIP, fromOperatorHost: fromOperatorHost, notify: &notify)
        } catch let error as RegistryFailure {
            return RegistryMessage(type: "error", ["error": .string(error.message)])
        } catch {
            return RegistryMessage(type: "error", ["error": .string("bad request: \(error)")])
        }
    }

    // MARK: Liveness

    /// Marks nodes without a heartbeat for `livenessTimeout` offline and frees their hostnames
    /// (key, id, trust pairs and inboxes are kept), retires nodes offline for longer than
    /// `retention`, and forgets refilled per-source buckets. Returns how many went offline.
    @discardableResult
    public func reap() -> Int {
        lock.withLock {
            let now = clock()
            var count = 0
            for (id, var node) in nodes where node.online && now - node.lastSeen > configuration.livenessTimeout {
                goOffline(&node, keepingHostname: true)
                try? store.save(node)
                nodes[id] = node
                count += 1
            }
            retireExpired()
            pruneRegistrationBuckets(now: now)
            legacyChangeBuckets = legacyChangeBuckets.filter { !$0.value.isFull(now: now) }
            return count
        }
    }

    /// Offline, its hostname free for others; with `keepingHostname` (the reaper, not a
    /// goodbye) the node may take the name back when it returns, if nobody claimed it.
    private func goOffline(_ node: inout NodeRecord, keepingHostname: Bool) {
        node.online = false
        node.offlineSince = Int64(wallClock())
        if let hostname = node.hostname, byHostname[hostname] == node.id { byHostname[hostname] = nil }
        if keepingHostname, let hostname = node.hostname {
            node.reclaimableHostname = hostname
            byReclaimable[hostname] = node.id
        }
        node.hostname = nil
    }

    /// Online again, with the hostname the reaper took if nobody claimed it meanwhile.
    private func comeBack(_ node: inout NodeRecord) {
        node.online = true
        node.offlineSince = nil
        guard let hostname = node.reclaimableHostname else { return }
        node.reclaimableHostname = nil
        guard byReclaimable[hostname] == node.id else { return }
        byReclaimable[hostname] = nil
        if node.hostname == nil, byHostname[hostname] == nil {
            node.hostname = hostname
            byHostname[hostname] = node.id
        }
    }

    // MARK: Helpers

    /// The node named by `field`, after checking `signature` over `challenge(id)` with its key.
    func signedNode(_ request: RegistryMessage, _ field: String, _ challenge: (UInt32) -> String) throws -> NodeRecord {
        let node = try existing(try request.nodeID(field))
        guard let signature = request["signature"]?.stringValue else { throw RegistryFailure("\(request.type): signature required") }
        try verify(try Ed25519PublicKey(bytes: node.publicKey), signature, challenge(node.id))
        return node
    }

    /// The registered node `id`.
    func existing(_ id: UInt32) throws -> NodeRecord {
        guard let node = nodes[id] else { throw RegistryFailure("node \(id) is not registered") }
        return node
    }

    func verify(_ key: Ed25519PublicKey, _ signature: String, _ challenge: String) throws {
        guard let bytes = try? Base64.decode(signature), key.isValidSignature(bytes, for: Array(challenge.utf8)) else {
            throw RegistryFailure("invalid signature for \(challenge.prefix(80))")
        }
    }

    static func pair(_ a: UInt32, _ b: UInt32) -> UInt64 {
        UInt64(min(a, b)) << 32 | UInt64(max(a, b))
    }

    /// Whether `text` is 1 to `maxLength` lowercase letters, digits and inner hyphens: the rule
    /// for hostnames, tags and network names.
    static func isLabel(_ text: String, maxLength: Int) -> Bool {
        let bytes = Array(text.utf8)
        let allowed = { (byte: UInt8) in (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) }
        guard (1...maxLength).contains(bytes.count), let first = bytes.first, let last = bytes.last else { return false }
        return allowed(first) && allowed(last) && bytes.allSatisfy { allowed($0) || $0 == 0x2D }
    }

    static func validateHostname(_ hostname: String) throws {
        guard isLabel(hostname, maxLength: 63), !["localhost", "backbone", "broadcast"].contains(hostname) else {
            throw RegistryFailure("invalid hostname \(hostname.prefix(63)): lowercase letters, digits and inner hyphens, at most 63")
        }
    }

    /// Tags: a leading `#` dropped, lower-case letters, digits and inner hyphens, at most 32.
    static func normalisedTag(_ text: String) throws -> String {
        let tag = RegistryMessage.storedTag(text)
        guard isLabel(tag, maxLength: 32) else { throw RegistryFailure("invalid tag \(tag.prefix(32)): lowercase letters, digits and inner hyphens, at most 32") }
        return tag
    }
}

/// A request the registry refuses; `message` goes back to the client.
struct RegistryFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
