import PilotCrypto
import PilotWire

/// How a `set_hostname`, `set_tags` or `set_visibility` is proven: 1.18's form, which signs no
/// values, or ours (`SignedChange`), which signs them and a nonce.
extension Registry {
    /// The node a `set_hostname`, `set_tags` or `set_visibility` changes, once the change is
    /// proven. In our form (`SignedChange`: the values and a nonce above the node's last are
    /// signed) it may come from anywhere, and the node is refused the 1.18 form from then on.
    /// The 1.18 form signs `<type>:<node>` only, so a captured one fits any values and can be
    /// replayed: it is taken only from the source address of the node's current registration,
    /// at most `legacyChangeBurst` at once and one per 6 s after. The caller saves the node.
    func changedNode(_ request: RegistryMessage, peerIP: String) throws -> NodeRecord {
        let type = request.type
        var node = try existing(try request.nodeID("node_id"))
        guard let signature = request["signature"]?.stringValue else { throw RegistryFailure("\(type): signature required") }
        let key = try Ed25519PublicKey(bytes: node.publicKey)
        if let nonceField = request["nonce"] {
            guard let nonce = nonceField.integerValue, nonce > node.lastNonce else {
                throw RegistryFailure("\(type): nonce must be an integer above \(node.lastNonce), the last node \(node.id) used")
            }
            guard let values = SignedChange.values(type: type, { request[$0] }) else {
                throw RegistryFailure("\(type): the values to set are missing or malformed")
            }
            try verify(key, signature, SignedChange.text(type: type, node: node.id, nonce: nonce, values: values))
            node.lastNonce = nonce
            node.signsValues = true
            return node
        }
        guard !node.signsValues else {
            throw RegistryFailure("\(type): node \(node.id) signs its values with a nonce; a change signed the 1.18 way is refused for it")
        }
        try verify(key, signature, "\(type):\(node.id)")
        guard peerIP == node.registeredFrom else {
            throw RegistryFailure(
                "\(type): a change signed the 1.18 way is taken only from the address node \(node.id) registered from")
        }
        let now = clock()
        var bucket = legacyChangeBuckets[node.id]
            ?? TokenBucket(capacity: Self.legacyChangeBurst, ratePerSecond: Self.legacyChangesPerSecond, now: now)
        guard bucket.take(now: now) else { throw RegistryFailure("\(type): rate limit for node \(node.id)'s changes signed the 1.18 way") }
        legacyChangeBuckets[node.id] = bucket
        return node
    }

    /// Whether `node` signs its changes in our form, and is refused the 1.18 form.
    public func signsValues(_ node: UInt32) -> Bool {
        lock.withLock { nodes[node]?.signsValues == true }
    }
}
