public import PilotCrypto
public import PilotNet
import PilotWire

/// The data plane's view of the registry: a node's Ed25519 key, by `lookup`.
public struct RegistryDirectory: PeerDirectory {
    let registry: RegistryClient

    public init(registry: RegistryClient) {
        self.registry = registry
    }

    public func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? {
        let reply = try await registry.send(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node))]))
        guard reply.type == "lookup_ok", let text = reply["public_key"]?.stringValue else { return nil }
        return try Ed25519PublicKey(base64: text)
    }
}
