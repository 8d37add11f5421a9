import FoundationEssentials
import PilotCrypto
public import PilotStore
public import PilotWire

/// Each identity's trust table (cached from `host.db`, written through), and the trust
/// requests that go through the registry: handshakes relayed for peers that cannot be reached
/// directly, their answers, and trust reported so `resolve` follows it.
extension IdentityPool {
    /// `name`'s trust entries, by peer.
    public func trust(of name: String) -> [TrustRecord] { trusts[name]?.entries ?? [] }

    public func trust(of name: String, peer: UInt32) -> TrustRecord? { trusts[name]?[peer] }

    /// The peers `name` has business with, in increasing order: trust entries not rejected (what
    /// it is related to on the fabric once it joins).
    public func relatedPeers(of name: String) -> [UInt32] {
        trust(of: name).compactMap { $0.state != .rejected ? $0.peerNode : nil }
    }

    /// Each private identity with peers it has business with, by node id: what the fabric needs
    /// to join it when one of them calls before it has joined.
    public var privateRelations: [(local: UInt32, remotes: [UInt32])] {
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
        trusts[name, default: TrustTable()][record.peerNode] = record
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
}
