import Foundation
public import PilotCrypto
public import PilotStore
public import PilotWire

/// The identities of the host: their rows in `host.db`, their keys (unsealed when first needed
/// and kept), and their registration with the registry (one shared `RegistryClient`).
///
/// Creating an identity registers it first and stores it second, in one transaction: a crash in
/// between leaves at most a key the registry knows and nobody holds, never a half-made identity;
/// a store that fails (a full disk) has the registration taken back.
///
/// Loading reads the rows only: unsealing 100,000 keys (each a scalar multiplication) would add
/// seconds to a cold start, so a key is opened when it first signs, and the whole pool is walked
/// in chunks by `registerAll`, which runs in the background after the sockets serve.
public actor IdentityPool {
    /// What `create` needs besides the name.
    public struct Request: Sendable {
        public var owner: UInt32
        public var groups: [UInt32] = []
        public var hostname: String?
        public var tags: [String] = []
        public var isPublic = false
        public var isEphemeral = false
        public var autoApprove = false

        public init(owner: UInt32) { self.owner = owner }
    }

    /// How many identities one registry batch (and one stretch of key unsealing) carries.
    static let chunkSize = 1000

    private let store: HostStore
    private let keys: IdentityKeys
    private let registry: RegistryClient
    /// The `listen_addr` sent with every registration: the port of the shared tunnel socket.
    /// The shared tunnel socket's address, registered for every identity without its own.
    private var listenAddress: String
    private var records: [String: IdentityRecord] = [:]
    /// Node id → name, kept with `records` wherever a node id appears, changes or goes.
    private var namesByNode: [UInt32: String] = [:]
    /// Identities with a UDP socket of their own register its address instead of the shared one.
    private var ownListenAddresses: [String: String] = [:]
    private var trusts: [String: [UInt32: TrustRecord]] = [:]
    private var unsealed: [String: Ed25519PrivateKey] = [:]
    /// The registry said in `register_ok` that it takes changes signed over their values and a
    /// nonce (`SignedChange`); the last reply decides.
    private var registrySignsValues = false
    /// The last nonce a change was signed with: microseconds since 1970, or one more than the
    /// last, so it only goes up, across restarts too (while the clock does).
    private var lastNonce: Int64 = 0

    /// The shared socket turned out to be elsewhere (one passed by systemd): register that.
    func useSharedAddress(_ address: String) { listenAddress = address }

    public init(store: sending HostStore, keys: IdentityKeys, registry: RegistryClient, listenAddress: String) {
        self.store = store
        self.keys = keys
        self.registry = registry
        self.listenAddress = listenAddress
    }

    /// Reads every stored identity. One key is opened to check the master key: the wrong master
    /// key stops the load with an error naming the identity (it would otherwise look like data
    /// loss later). A single damaged row is reported when its key is first used.
    public func load() throws {
        var loaded: [String: IdentityRecord] = [:]
        for record in try store.all() { loaded[record.name] = record }
        records = loaded
        namesByNode = Dictionary(loaded.values.map { ($0.nodeID, $0.name) }, uniquingKeysWith: { first, _ in first })
        unsealed = [:]
        trusts = try store.allTrust().mapValues { entries in Dictionary(entries.map { ($0.peerNode, $0) }, uniquingKeysWith: { $1 }) }
        if let first = loaded.keys.min() { _ = try key(first) }
    }

    /// The node ids of the registered identities without a socket of their own: those the
    /// beacon should know to be behind the shared socket.
    public var privateNodes: [UInt32] {
        records.values.filter { $0.nodeID != 0 && ownListenAddresses[$0.name] == nil }.map(\.nodeID).sorted()
    }

    // MARK: Trust

    /// `name`'s trust entries, by peer.
    public func trust(of name: String) -> [TrustRecord] {
        (trusts[name] ?? [:]).values.sorted { $0.peerNode < $1.peerNode }
    }

    public func trust(of name: String, peer: UInt32) -> TrustRecord? { trusts[name]?[peer] }

    /// The peers `name` has business with: trust entries not rejected (what it is related to on
    /// the fabric once it joins).
    public func relatedPeers(of name: String) -> Set<UInt32> {
        Set((trusts[name] ?? [:]).values.filter { $0.state != .rejected }.map(\.peerNode))
    }

    /// Each private identity with peers it has business with, by node id: what the fabric needs
    /// to join it when one of them calls before it has joined.
    public var privateRelations: [(local: UInt32, remotes: Set<UInt32>)] {
        records.values.compactMap { record in
            guard !record.isPublic, record.nodeID != 0 else { return nil }
            let peers = relatedPeers(of: record.name)
            return peers.isEmpty ? nil : (record.nodeID, peers)
        }
    }

    /// Stores `record` for `name` (durable when this returns).
    public func setTrust(_ record: TrustRecord, for name: String) throws {
        guard records[name] != nil else { throw PoolError.notFound(name) }
        try store.setTrust(record, identity: name)
        trusts[name, default: [:]][record.peerNode] = record
    }

    public func removeTrust(peer: UInt32, for name: String) throws {
        try store.removeTrust(peer: peer, identity: name)
        trusts[name]?[peer] = nil
    }

    /// A handshake request left at the registry for `peer` (it cannot be reached directly).
    public func requestHandshake(_ name: String, to peer: UInt32, justification: String) async throws {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        try await signed(
            try key(name), "request_handshake", "handshake:\(record.nodeID):\(peer)",
            ["from_node_id": .integer(Int64(record.nodeID)), "to_node_id": .integer(Int64(peer)), "justification": .string(justification)])
    }

    /// `name`'s answer to a relayed request from `peer`, through the registry.
    public func respondHandshake(_ name: String, to peer: UInt32, accept: Bool) async throws {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        try await signed(
            try key(name), "respond_handshake", "respond:\(record.nodeID):\(peer)",
            ["node_id": .integer(Int64(record.nodeID)), "peer_id": .integer(Int64(peer)), "accept": .bool(accept)])
    }

    /// What the registry holds for each identity: relayed requests and responses, batched.
    /// Returns only the identities with something waiting.
    public func pollHandshakes() async throws -> [(name: String, requests: [JSON], responses: [JSON])] {
        try await signedForEach("poll_handshakes").compactMap { name, reply in
            guard reply.type == "poll_handshakes_ok" else { return nil }
            let waiting = reply["requests"]?.arrayValue ?? []
            let answered = reply["responses"]?.arrayValue ?? []
            return waiting.isEmpty && answered.isEmpty ? nil : (name, waiting, answered)
        }
    }

    /// Tells the registry `name` trusts (or no longer trusts) `peer`, so `resolve` follows.
    public func reportTrust(_ name: String, peer: UInt32, trusted: Bool) async throws {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        let type = trusted ? "report_trust" : "revoke_trust"
        try await signed(
            try key(name), type, "\(type):\(record.nodeID):\(peer)",
            ["node_id": .integer(Int64(record.nodeID)), "peer_id": .integer(Int64(peer))])
    }

    public var names: [String] { records.keys.sorted() }

    public var count: Int { records.count }

    public func identity(named name: String) -> IdentityRecord? { records[name] }

    /// The identity of this host that has node id `node`, if any.
    public func identity(withNode node: UInt32) -> IdentityRecord? { namesByNode[node].flatMap { records[$0] } }

    public var all: [IdentityRecord] { records.values.sorted { $0.name < $1.name } }

    /// `name`'s signing key, unsealed now if it was not yet.
    func key(_ name: String) throws -> Ed25519PrivateKey {
        if let key = unsealed[name] { return key }
        guard let record = records[name] else { throw PoolError.notFound(name) }
        do {
            let key = try keys.unseal(record.sealedKey)
            unsealed[name] = key
            return key
        } catch {
            throw PoolError.unreadableKey(name: name, reason: "\(error)")
        }
    }

    /// `name`'s signing key, for its tunnel key exchanges.
    public func signingKey(of name: String) throws -> Ed25519PrivateKey { try key(name) }

    /// Where `node`'s tunnel endpoint is (`host:port`), asked as identity `name`: the registry
    /// answers for a public node, or a private one that trusts `name`; nil for a node that
    /// registered relay-only (it is reached through the beacon).
    public func resolve(node: UInt32, as name: String) async throws -> String? {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        let requester = record.nodeID
        let reply = try await registry.send(signedMessage(
            try key(name), "resolve", "resolve:\(requester):\(node)",
            ["node_id": .integer(Int64(node)), "requester_id": .integer(Int64(requester))]))
        guard reply.type == "resolve_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
        // A node registered relay-only hides its endpoint: it is reached through the beacon.
        if reply["relay_only"]?.boolValue == true { return nil }
        guard let endpoint = reply["real_addr"]?.stringValue, !endpoint.isEmpty else {
            throw PoolError.registry("resolve_ok without real_addr")
        }
        return endpoint
    }

    /// Asks the registry to let `name` join custom network `network` (with the network's
    /// `token` if it has the token rule), or leave it; signed as 1.18 signs it
    /// (`join_network:<node>:<net>`, `leave_network:<node>:<net>`). The reply as given.
    public func network(_ name: String, join: Bool, network: UInt16, token: String = "") async throws -> RegistryMessage {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        let type = join ? "join_network" : "leave_network"
        var fields: [String: JSON] = ["node_id": .integer(Int64(record.nodeID)), "network_id": .integer(Int64(network))]
        if join {
            fields["token"] = .string(token)
            fields["inviter_id"] = 0
        }
        return try await registry.send(signedMessage(try key(name), type, "\(type):\(record.nodeID):\(network)", fields))
    }

    /// Creates, registers and stores a new identity; returns its record (with its node id).
    public func create(name: String, _ request: Request) async throws -> IdentityRecord {
        try Self.validate(name: name)
        guard records[name] == nil else { throw PoolError.exists(name) }
        let key = try Ed25519PrivateKey()
        let node = try await register(key)
        let record: IdentityRecord
        do {
            // One round trip for all that was asked, as a batch (the host credential's way in).
            var changes: [RegistryMessage] = []
            if let hostname = request.hostname { changes.append(changeMessage(key, node: node, "set_hostname", ["hostname": .string(hostname)])) }
            if !request.tags.isEmpty { changes.append(changeMessage(key, node: node, "set_tags", ["tags": .array(request.tags.map(JSON.string))])) }
            if request.isPublic { changes.append(changeMessage(key, node: node, "set_visibility", ["public": true])) }
            for (change, reply) in zip(changes, try await registry.send(batch: changes)) where reply.type != "\(change.type)_ok" {
                throw PoolError.registry(reply["error"]?.stringValue ?? reply.type)
            }
            record = IdentityRecord(
                name: name, nodeID: node, sealedKey: keys.seal(key), hostname: request.hostname, tags: request.tags,
                isPublic: request.isPublic, ownerUID: request.owner, allowedGIDs: request.groups,
                createdAt: Int64(Date().timeIntervalSince1970), isEphemeral: request.isEphemeral,
                autoApprove: request.autoApprove)
            // A name taken by a concurrent create shows up here as a constraint error.
            do { try store.create(record) } catch let error as StoreError where error.isConstraintViolation {
                throw PoolError.exists(name)
            }
        } catch {
            // Registered but not stored (a full disk, a name taken underneath): nobody will hold
            // this key, and the registry would keep its hostname claimed until it reaps the node.
            await deregister(key, node: node)
            throw error
        }
        records[name] = record
        namesByNode[record.nodeID] = name
        unsealed[name] = key
        return record
    }

    /// Deregisters (best effort: an unreachable registry reaps it anyway) and deletes.
    public func delete(name: String) async throws {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        let node = record.nodeID
        if let key = try? key(name) { await deregister(key, node: node) }
        try store.delete(name: name)
        if namesByNode[node] == name { namesByNode[node] = nil }
        records[name] = nil
        unsealed[name] = nil
        ownListenAddresses[name] = nil
        trusts[name] = nil
    }

    /// Gives `name` to another owner.
    public func setOwner(name: String, uid: UInt32) throws -> IdentityRecord {
        guard var record = records[name] else { throw PoolError.notFound(name) }
        record.ownerUID = uid
        try store.update(record)
        records[name] = record
        return record
    }

    /// Sets or clears (`nil`) the hostname at the registry, then stores it.
    public func setHostname(name: String, hostname: String?) async throws -> IdentityRecord {
        try await change(name, "set_hostname", ["hostname": .string(hostname ?? "")]) { $0.hostname = hostname }
    }

    /// Replaces the tags at the registry (empty clears them), then stores them.
    public func setTags(name: String, tags: [String]) async throws -> IdentityRecord {
        try await change(name, "set_tags", ["tags": .array(tags.map(JSON.string))]) { $0.tags = tags }
    }

    /// Makes the endpoint public or private at the registry, then stores it.
    public func setPublic(name: String, isPublic: Bool) async throws -> IdentityRecord {
        try await change(name, "set_visibility", ["public": .bool(isPublic)]) { $0.isPublic = isPublic }
    }

    /// `name` now has a UDP socket of its own at `address`: registered again with it, so key
    /// exchanges from anyone reach it there.
    public func useOwnSocket(_ name: String, address: String, port: UInt16) async throws {
        try noteOwnSocket(name, address: address, port: port)
        let reply = try await registry.send(registration(try key(name), listenAddress: address))
        guard reply.type == "register_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
    }

    /// `name` has a UDP socket of its own at `address`, which the next `registerAll` registers
    /// (at start, where the registry knows that address from before: nothing to send now).
    public func noteOwnSocket(_ name: String, address: String, port: UInt16) throws {
        guard var record = records[name] else { throw PoolError.notFound(name) }
        if record.ownPort != port {
            record.ownPort = port
            try store.update(record)
            records[name] = record
        }
        ownListenAddresses[name] = address
    }

    /// `name` is back on the shared socket (made private): registered again with its address.
    public func useSharedSocket(_ name: String) async throws {
        guard records[name] != nil, ownListenAddresses.removeValue(forKey: name) != nil else { return }
        let reply = try await registry.send(registration(try key(name), listenAddress: listenAddress))
        guard reply.type == "register_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
    }

    /// A registry query on behalf of nobody in particular (lookup, resolve_hostname).
    public func query(_ request: RegistryMessage) async throws -> RegistryMessage {
        try await registry.send(request)
    }

    /// Sends the change `<type>` for identity `name` (`changeMessage`); on success applies
    /// `update` to its record and stores it.
    private func change(
        _ name: String, _ type: String, _ fields: [String: JSON], _ update: (inout IdentityRecord) -> Void
    ) async throws -> IdentityRecord {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        let reply = try await registry.send(changeMessage(try key(name), node: record.nodeID, type, fields))
        guard reply.type == "\(type)_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
        // The identity may have been changed while the request was out: re-read it.
        guard var current = records[name] else { throw PoolError.notFound(name) }
        update(&current)
        try store.update(current)
        records[name] = current
        return current
    }

    /// Registers every identity again (at start, or after the registry lost us), a chunk at a
    /// time (the actor serves other requests between chunks), and says again, batched, each
    /// hostname, tag list and visibility the registry's `register_ok` shows it no longer holds
    /// (a hostname the reaper freed and another took, a registry restored from nothing).
    /// Returns the names whose node id changed (stored anew) and those that failed, with why.
    public func registerAll() async throws -> (changed: [String], failed: [String: String]) {
        var changed: [String] = []
        var failed: [String: String] = [:]
        for chunk in chunks(of: names) {
            var requests: [RegistryMessage] = []
            var sent: [String] = []
            for name in chunk {
                do {
                    requests.append(registration(try key(name), listenAddress: ownListenAddresses[name] ?? listenAddress))
                    sent.append(name)
                } catch {
                    failed[name] = "\(error)"
                }
            }
            let replies = try await registry.send(batch: requests)
            var reassertions: [(name: String, request: RegistryMessage)] = []
            for (name, reply) in zip(sent, replies) {
                guard reply.type == "register_ok", let node = try? reply.nodeID("node_id") else {
                    failed[name] = reply["error"]?.stringValue ?? reply.type
                    continue
                }
                registrySignsValues = reply["signed_values"] == 1
                // Deleted while the batch was out: nothing to update.
                guard var record = records[name] else { continue }
                if node != record.nodeID {
                    if namesByNode[record.nodeID] == name { namesByNode[record.nodeID] = nil }
                    record.nodeID = node
                    try store.update(record)
                    records[name] = record
                    namesByNode[node] = name
                    changed.append(name)
                }
                guard let key = try? key(name) else { continue }
                for (type, fields) in Self.staleChanges(of: record, given: reply) {
                    reassertions.append((name, changeMessage(key, node: node, type, fields)))
                }
            }
            let answers = try await registry.send(batch: reassertions.map(\.request))
            for ((name, request), answer) in zip(reassertions, answers) where answer.type != "\(request.type)_ok" {
                failed[name] = "registered, but \(request.type) refused: \(answer["error"]?.stringValue ?? answer.type)"
            }
        }
        return (changed, failed)
    }

    /// The changes that would make the registry hold what `record` says, judged by its
    /// `register_ok` (which shows the hostname, tags and visibility it holds; a registry that
    /// shows no visibility is taken to hold the default, private).
    static func staleChanges(of record: IdentityRecord, given reply: RegistryMessage) -> [(type: String, fields: [String: JSON])] {
        var changes: [(String, [String: JSON])] = []
        if reply["hostname"]?.stringValue != record.hostname?.lowercased() {
            changes.append(("set_hostname", ["hostname": .string(record.hostname ?? "")]))
        }
        var wanted: [String] = []
        for tag in record.tags {
            let normalised = RegistryMessage.storedTag(tag).lowercased()
            if !wanted.contains(normalised) { wanted.append(normalised) }
        }
        if (reply["tags"]?.arrayValue?.compactMap(\.stringValue) ?? []) != wanted {
            changes.append(("set_tags", ["tags": .array(record.tags.map(JSON.string))]))
        }
        if (reply["public"]?.boolValue ?? false) != record.isPublic {
            changes.append(("set_visibility", ["public": .bool(record.isPublic)]))
        }
        return changes
    }

    /// One signed heartbeat per identity, batched; returns the names the registry did not know
    /// (those are registered again right away).
    @discardableResult
    public func heartbeatAll() async throws -> [String] {
        let lost = try await signedForEach("heartbeat").filter { $0.reply.type != "heartbeat_ok" }.map(\.name)
        if !lost.isEmpty { _ = try await registerAll() }
        return lost
    }

    /// `{"type": type, "node_id": N}` signed as `type:N` by every identity, sent in batches of
    /// `chunkSize`; the replies by name. An identity whose key cannot be opened is left out.
    private func signedForEach(_ type: String) async throws -> [(name: String, reply: RegistryMessage)] {
        var replies: [(String, RegistryMessage)] = []
        for chunk in chunks(of: names) {
            var requests: [RegistryMessage] = []
            var sent: [String] = []
            for name in chunk {
                guard let record = records[name], let key = try? key(name) else { continue }
                requests.append(signedMessage(key, type, "\(type):\(record.nodeID)", ["node_id": .integer(Int64(record.nodeID))]))
                sent.append(name)
            }
            replies += zip(sent, try await registry.send(batch: requests))
        }
        return replies
    }

    private func chunks(of names: [String]) -> [ArraySlice<String>] {
        stride(from: 0, to: names.count, by: Self.chunkSize).map { names[$0..<min($0 + Self.chunkSize, names.count)] }
    }

    // MARK: Registry requests

    /// Registers a new key, as a batch of one: a batch carries the host credential.
    private func register(_ key: Ed25519PrivateKey) async throws -> UInt32 {
        let replies = try await registry.send(batch: [registration(key, listenAddress: listenAddress)])
        guard let reply = replies.first, reply.type == "register_ok" else {
            let reply = replies.first ?? RegistryMessage(type: "error", ["error": "no reply"])
            throw PoolError.registry(reply["error"]?.stringValue ?? "unexpected reply \(reply.type)")
        }
        registrySignsValues = reply["signed_values"] == 1
        return try reply.nodeID("node_id")
    }

    /// Best effort: an unreachable registry reaps the node anyway.
    private func deregister(_ key: Ed25519PrivateKey, node: UInt32) async {
        _ = try? await registry.send(signedMessage(key, "deregister", "deregister:\(node)", ["node_id": .integer(Int64(node))]))
    }

    private func registration(_ key: Ed25519PrivateKey, listenAddress: String) -> RegistryMessage {
        let text = key.publicKey.base64
        return RegistryMessage(
            type: "register",
            [
                "listen_addr": .string(listenAddress), "public_key": .string(text), "version": "pilot-host",
                "signature": .string(Base64.encode(key.sign("register:\(listenAddress):\(text)"))),
            ])
    }

    /// A `set_hostname`, `set_tags` or `set_visibility` for `node`: signed over its values and
    /// a fresh nonce where the registry takes that (a captured one then fits nothing else and
    /// cannot be replayed), else as 1.18 signs it (`<type>:<node>`).
    private func changeMessage(_ key: Ed25519PrivateKey, node: UInt32, _ type: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["node_id"] = .integer(Int64(node))
        guard registrySignsValues, let values = SignedChange.values(type: type, { fields[$0] }) else {
            return signedMessage(key, type, "\(type):\(node)", all)
        }
        lastNonce = max(lastNonce + 1, Int64(Date().timeIntervalSince1970 * 1_000_000))
        all["nonce"] = .integer(lastNonce)
        return signedMessage(key, type, SignedChange.text(type: type, node: node, nonce: lastNonce, values: values), all)
    }

    private func signed(_ key: Ed25519PrivateKey, _ type: String, _ challenge: String, _ fields: [String: JSON]) async throws {
        let reply = try await registry.send(signedMessage(key, type, challenge, fields))
        guard reply.type == "\(type)_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
    }

    private func signedMessage(_ key: Ed25519PrivateKey, _ type: String, _ challenge: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["signature"] = .string(Base64.encode(key.sign(challenge)))
        return RegistryMessage(type: type, all)
    }

    /// Names become file names (`id/NAME.sock`): lower-case letters, digits, `-`, `_`, `.`, not
    /// starting with a dot, at most 63.
    static func validate(name: String) throws {
        let bytes = Array(name.utf8)
        let allowed = { (byte: UInt8) in
            (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x2D || byte == 0x5F || byte == 0x2E
        }
        guard (1...63).contains(bytes.count), bytes.allSatisfy(allowed), bytes.first != 0x2E else {
            throw PoolError.invalidName(name)
        }
    }
}

/// Why an identity operation failed, in words for `pilotctl`.
public enum PoolError: Error, Equatable, CustomStringConvertible {
    case invalidName(String)
    case exists(String)
    case notFound(String)
    case registry(String)
    case unreadableKey(name: String, reason: String)

    public var description: String {
        switch self {
        case .invalidName(let name):
            "invalid identity name \(name.prefix(80)): 1 to 63 of a-z 0-9 - _ . (not starting with a dot)"
        case .exists(let name): "identity \(name) already exists"
        case .notFound(let name): "no identity named \(name)"
        case .registry(let reason): "registry refused: \(reason)"
        case let .unreadableKey(name, reason): "the key of identity \(name) does not open with this master key: \(reason)"
        }
    }
}
