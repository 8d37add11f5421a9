public import NIOCore
public import PilotCrypto
public import PilotNet
import PilotWire

/// The data plane's view of the registry: a node's Ed25519 key, by `lookup`, and its endpoint,
/// by a `resolve` that `pool` signs as the asking identity.
public struct RegistryDirectory: PeerDirectory {
    let registry: RegistryClient
    let pool: IdentityPool?

    /// Without `pool` no endpoint is resolved (a relayed remote is tried where it was last seen).
    public init(registry: RegistryClient, pool: IdentityPool? = nil) {
        self.registry = registry
        self.pool = pool
    }

    public func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? {
        let reply = try await registry.send(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node))]))
        guard reply.type == "lookup_ok", let text = reply["public_key"]?.stringValue else { return nil }
        return try Ed25519PublicKey(base64: text)
    }

    public func endpoint(of node: UInt32, asking local: UInt32) async throws -> SocketAddress? {
        guard let pool, let name = await pool.identity(withNode: local)?.name,
            let text = try await pool.resolve(node: node, as: name)
        else { return nil }
        let endpoint = try Endpoint(parsing: text)
        return try SocketAddress(ipAddress: endpoint.host, port: Int(endpoint.port))
    }
}
