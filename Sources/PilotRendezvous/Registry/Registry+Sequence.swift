import PilotCrypto
import PilotWire

/// Signed registration sequences (`RegisterSequence`, docs/PROTOCOL.md §8.6): a node that
/// registered with one is refused every registration that is not newer, so a captured
/// `register` (1.18's signature names no time) cannot move it back to an old endpoint.
extension Registry {
    /// The sequence `request` carries for `node` (nil: none), checked: its signature by `key`
    /// over the key and listen address as sent, and above `stored`, the last one the node
    /// registered with. A node with a stored sequence must send one.
    func registerSequence(
        _ request: RegistryMessage, key: Ed25519PublicKey, keyText: String, listenAddress: String, node: UInt32?, stored: Int64
    ) throws -> Int64? {
        let name = node.map { "node \($0)" } ?? "this key"
        guard let field = request[RegisterSequence.field] else {
            guard stored == 0 else {
                throw RegistryFailure(
                    "register: stale registration for \(name): it registered with sequence \(stored) before and this one carries none "
                        + "(a replayed copy, or a host the identity moved away from)")
            }
            return nil
        }
        guard let sequence = field.integerValue, sequence > 0 else { throw RegistryFailure("register: sequence must be a positive integer") }
        guard let signature = request[RegisterSequence.signatureField]?.stringValue else {
            throw RegistryFailure("register: sequence_signature required with a sequence")
        }
        try verify(key, signature, RegisterSequence.text(publicKey: keyText, listenAddress: listenAddress, sequence: sequence))
        guard sequence > stored else {
            throw RegistryFailure(
                "register: stale registration for \(name): sequence \(sequence) is not above \(stored), the last it registered with "
                    + "(a replayed copy, or a host the identity moved away from)")
        }
        return sequence
    }

    /// The last registration sequence of `node` (0: it never sent one).
    public func lastRegisterSequence(of node: UInt32) -> Int64 {
        lock.withLock { nodes[node]?.registerSequence ?? 0 }
    }
}
