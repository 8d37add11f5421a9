import FoundationEssentials
import PilotCrypto
import PilotStore
public import PilotWire

/// The identities at the registry: registration (batched, at start and with heartbeats), the
/// address each registers (the shared socket's, or a public identity's own), resolves, custom
/// networks and queries, and the signed messages they are made of.
extension IdentityPool {
    /// The shared socket turned out to be elsewhere (one passed by systemd): register that.
    func useSharedAddress(_ address: String) { listenAddress = address }

    /// The node ids of the registered identities without a socket of their own: those the
    /// beacon should know to be behind the shared socket.
    public var privateNodes: [UInt32] {
        records.values.filter { $0.nodeID != 0 && ownListenAddresses[$0.name] == nil }.map(\.nodeID).sorted()
    }

    /// The identities without a socket of their own: those registered with the shared socket's
    /// address.
    public var namesOnSharedSocket: [String] { names.filter { ownListenAddresses[$0] == nil } }

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
        try requireRegistered(name)
        let type = join ? "join_network" : "leave_network"
        var fields: [String: JSON] = ["node_id": .integer(Int64(record.nodeID)), "network_id": .integer(Int64(network))]
        if join {
            fields["token"] = .string(token)
            fields["inviter_id"] = 0
        }
        return try await registry.send(signedMessage(try key(name), type, "\(type):\(record.nodeID):\(network)", fields))
    }

    /// `name` now has a UDP socket of its own at `address`: registered again with it, so key
    /// exchanges from anyone reach it there.
    public func useOwnSocket(_ name: String, address: String, port: UInt16) async throws {
        try noteOwnSocket(name, address: address, port: port)
        guard !deregistered.contains(name) else { return }
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

    /// The `listen_addr` `name` registers with: its own socket's, else the shared socket's.
    public func registeredAddress(of name: String) -> String {
        ownListenAddresses[name] ?? listenAddress
    }

    /// `name` is back on the shared socket (made private): registered again with its address.
    public func useSharedSocket(_ name: String) async throws {
        guard records[name] != nil, ownListenAddresses.removeValue(forKey: name) != nil, !deregistered.contains(name) else { return }
        let reply = try await registry.send(registration(try key(name), listenAddress: listenAddress))
        guard reply.type == "register_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
    }

    /// A registry query on behalf of nobody in particular (lookup, resolve_hostname).
    public func query(_ request: RegistryMessage) async throws -> RegistryMessage {
        try await registry.send(request)
    }

    /// Registers every identity again (at start, or after the registry lost us), or those of
    /// `only` (a socket's mapping changed), a chunk at a time (the actor serves other requests
    /// between chunks), and says again, batched, each hostname, tag list and visibility the
    /// registry's `register_ok` shows it no longer holds (a hostname the reaper freed and
    /// another took, a registry restored from nothing). Returns the names whose node id changed
    /// (stored anew) and those that failed, with why.
    public func registerAll(_ only: [String]? = nil) async throws -> (changed: [String], failed: [String: String]) {
        var changed: [String] = []
        // Not as an identity that deregistered itself, nor with a key the registry may no
        // longer hold (a rotation under way, or one a crash left unsettled).
        let wanted = (only ?? names).filter { !deregistered.contains($0) && !rotating.contains($0) }
        var failed = await settlePendingKeys(of: wanted)
        for chunk in chunks(of: wanted.filter { failed[$0] == nil }) {
            var requests: [RegistryMessage] = []
            var sent: [String] = []
            // The chunk's keys first, then its messages: the keys, kept, lie side by side in the
            // heap instead of each between messages that are freed once the batch is answered
            // (holes that would keep most of those pages resident).
            let keys = chunk.map { name in (name, Result { try key(name) }) }
            for (name, key) in keys {
                do {
                    requests.append(registration(try key.get(), listenAddress: ownListenAddresses[name] ?? listenAddress))
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
    /// `chunkSize`; the replies by name. An identity whose key cannot be opened is left out, and
    /// so is one that deregistered itself or whose key is being rotated.
    func signedForEach(_ type: String) async throws -> [(name: String, reply: RegistryMessage)] {
        var replies: [(String, RegistryMessage)] = []
        for chunk in chunks(of: names.filter { !deregistered.contains($0) && !rotating.contains($0) }) {
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

    func chunks(of names: [String]) -> [ArraySlice<String>] {
        stride(from: 0, to: names.count, by: Self.chunkSize).map { names[$0..<min($0 + Self.chunkSize, names.count)] }
    }

    /// Registers a new key, as a batch of one: a batch carries the host credential.
    func register(_ key: Ed25519PrivateKey) async throws -> UInt32 {
        let replies = try await registry.send(batch: [registration(key, listenAddress: listenAddress)])
        guard let reply = replies.first, reply.type == "register_ok" else {
            let reply = replies.first ?? RegistryMessage(type: "error", ["error": "no reply"])
            throw PoolError.registry(reply["error"]?.stringValue ?? "unexpected reply \(reply.type)")
        }
        registrySignsValues = reply["signed_values"] == 1
        return try reply.nodeID("node_id")
    }

    /// `name` leaves the registry (1.18's deregister: offline, its hostname freed, out of its
    /// custom networks) and stays out until the host restarts: no heartbeat, handshake poll or
    /// registration goes out as it meanwhile (`requireRegistered` refuses what would). It is
    /// marked before the request goes out, so a heartbeat sent after cannot bring it back.
    /// Returns the registry's `deregister_ok`.
    public func deregister(name: String) async throws -> RegistryMessage {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        try requireRegistered(name)
        guard !rotating.contains(name) else { throw PoolError.busy(name: name, reason: "a key rotation is under way") }
        deregistered.insert(name)
        do {
            let reply = try await registry.send(signedMessage(
                try key(name), "deregister", "deregister:\(record.nodeID)", ["node_id": .integer(Int64(record.nodeID))]))
            guard reply.type == "deregister_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
            return reply
        } catch {
            deregistered.remove(name)
            throw error
        }
    }

    /// Whether `name` deregistered itself since the host started.
    public func isDeregistered(_ name: String) -> Bool { deregistered.contains(name) }

    /// The identities that deregistered themselves since the host started.
    public var deregisteredNames: Set<String> { deregistered }

    /// Throws if `name` deregistered itself: what would speak to the registry as it waits for
    /// the restart that registers it again.
    func requireRegistered(_ name: String) throws {
        if deregistered.contains(name) { throw PoolError.deregistered(name) }
    }

    /// Best effort: an unreachable registry reaps the node anyway. With `forget` (the identity is
    /// deleted for good), a pilot-rendezvous keeps only the node's tombstone; other registries
    /// ignore the field and keep it offline. An identity that lives on elsewhere (exported, or an
    /// import undone) is not forgotten: its record keeps its registration sequence.
    func deregister(_ key: Ed25519PrivateKey, node: UInt32, forget: Bool = false) async {
        var fields: [String: JSON] = ["node_id": .integer(Int64(node))]
        if forget { fields["forget_signature"] = .string(Base64.encode(key.sign("forget:\(node)"))) }
        let goodbye = signedMessage(key, "deregister", "deregister:\(node)", fields)
        // Batched with other deletes where the registry takes it (a pilot-rendezvous); alone
        // where it does not batch, or does not batch this (an older one).
        if let reply = try? await registry.send(batch: [goodbye]).first, reply.type != "error" || reply["error"]?.stringValue?.contains("cannot be batched") != true {
            return
        }
        _ = try? await registry.send(goodbye)
    }

    /// A `register` for `key` at `listenAddress`, signed as 1.18 signs it, and with a signed
    /// sequence (`RegisterSequence`) unless the registry said it takes none.
    func registration(_ key: Ed25519PrivateKey, listenAddress: String) -> RegistryMessage {
        let text = key.publicKey.base64
        var fields: [String: JSON] = [
            "listen_addr": .string(listenAddress), "public_key": .string(text), "version": "pilot-host",
            "signature": .string(Base64.encode(key.sign("register:\(listenAddress):\(text)"))),
        ]
        if registrySignsValues != false { fields.merge(sequenceFields(key, listenAddress: listenAddress)) { $1 } }
        return RegistryMessage(type: "register", fields)
    }

    /// A `set_hostname`, `set_tags` or `set_visibility` for `node`: signed over its values and
    /// a fresh nonce where the registry takes that (a captured one then fits nothing else and
    /// cannot be replayed), else as 1.18 signs it (`<type>:<node>`).
    func changeMessage(_ key: Ed25519PrivateKey, node: UInt32, _ type: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["node_id"] = .integer(Int64(node))
        guard registrySignsValues == true, let values = SignedChange.values(type: type, { fields[$0] }) else {
            return signedMessage(key, type, "\(type):\(node)", all)
        }
        all["nonce"] = .integer(nextNonce())
        return signedMessage(key, type, SignedChange.text(type: type, node: node, nonce: lastNonce, values: values), all)
    }

    /// Learns which form of change the registry takes, if no `register_ok` has said it yet (a
    /// change right after a restart, before the first registration, which runs after READY):
    /// `name` registers again, as that registration would. A registry that took our form from
    /// a key refuses it the 1.18 form, so guessing is no good.
    func learnRegistryForm(as name: String) async throws {
        guard registrySignsValues == nil else { return }
        let replies = try await registry.send(batch: [registration(try key(name), listenAddress: ownListenAddresses[name] ?? listenAddress)])
        guard let reply = replies.first, reply.type == "register_ok" else { return }
        registrySignsValues = reply["signed_values"] == 1
    }

    func signed(_ key: Ed25519PrivateKey, _ type: String, _ challenge: String, _ fields: [String: JSON]) async throws {
        let reply = try await registry.send(signedMessage(key, type, challenge, fields))
        guard reply.type == "\(type)_ok" else { throw PoolError.registry(reply["error"]?.stringValue ?? reply.type) }
    }

    func signedMessage(_ key: Ed25519PrivateKey, _ type: String, _ challenge: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["signature"] = .string(Base64.encode(key.sign(challenge)))
        return RegistryMessage(type: type, all)
    }
}
