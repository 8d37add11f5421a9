public import PilotCrypto
import PilotStore
public import PilotWire

/// Key rotation: an identity's new Ed25519 key, same node id and address.
///
/// The order keeps every crash and every answer safe. The new key is stored first, sealed, as
/// the record's pending key; then the registry is asked (`rotate_key`, signed by the old key
/// over `rotate:<node>:<new key>`, 1.18's form); then the pending key becomes the key. A refusal
/// drops the pending key (the old one stays, the registry holds it). No answer, or a crash
/// anywhere in between, leaves the pending key on disk, and `settlePendingKey` (before the
/// identity registers again, at the latest at the next start) asks the registry which key it
/// holds and keeps that one. Registering with a key the registry no longer holds would make a
/// new node: hence no registration of the identity while a rotation is unsettled.
extension IdentityPool {
    /// Rotates `name`'s key at the registry and in `host.db`; returns the registry's
    /// `rotate_key_ok` and the new key.
    public func rotateKey(name: String) async throws -> (reply: RegistryMessage, key: Ed25519PrivateKey) {
        try requireRegistered(name)
        guard rotating.insert(name).inserted else { throw PoolError.busy(name: name, reason: "a key rotation is under way") }
        defer { rotating.remove(name) }
        try await settlePendingKey(name)
        guard var record = records[name] else { throw PoolError.notFound(name) }
        let old = try key(name)
        let new = try Ed25519PrivateKey()
        record.pendingSealedKey = keys.seal(new)
        try store.update(record)
        records[name] = record
        let newText = new.publicKey.base64
        let reply: RegistryMessage
        do {
            reply = try await registry.send(signedMessage(
                old, "rotate_key", "rotate:\(record.nodeID):\(newText)",
                ["node_id": .integer(Int64(record.nodeID)), "new_public_key": .string(newText)]))
        } catch {
            // No answer: the registry may hold either key. Asked now if it can be, else
            // before the identity next registers.
            try? await settlePendingKey(name)
            throw error
        }
        guard reply.type == "rotate_key_ok", reply["public_key"]?.stringValue == newText else {
            try keepKey(name, pending: false)
            throw PoolError.registry(reply["error"]?.stringValue ?? "unexpected reply \(reply.type)")
        }
        try keepKey(name, pending: true)
        return (reply, new)
    }

    /// Settles an unfinished rotation of `name`, if any: the key the registry holds (its
    /// `lookup`) is kept, the other dropped. A registry that no longer knows the node keeps the
    /// old key (it registers anew either way). Throws when the registry cannot be asked; the
    /// pending key then stays.
    func settlePendingKey(_ name: String) async throws {
        guard let record = records[name], let sealed = record.pendingSealedKey else { return }
        guard let pending = try? keys.unseal(sealed) else {
            try keepKey(name, pending: false)
            return
        }
        let reply = try await registry.send(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(record.nodeID))]))
        try keepKey(name, pending: reply.type == "lookup_ok" && reply["public_key"]?.stringValue == pending.publicKey.base64)
    }

    /// Settles the rotations every crash or lost answer left unfinished, before `names`
    /// register; returns those whose registry could not be asked (they must not register yet).
    func settlePendingKeys(of names: [String]) async -> [String: String] {
        var unsettled: [String: String] = [:]
        for name in names where records[name]?.pendingSealedKey != nil {
            do { try await settlePendingKey(name) } catch { unsettled[name] = "key rotation unsettled: \(error)" }
        }
        return unsettled
    }

    /// Ends a rotation of `name`: its pending key becomes its key (`pending`), or is dropped.
    private func keepKey(_ name: String, pending: Bool) throws {
        guard var record = records[name], let sealed = record.pendingSealedKey else { return }
        if pending {
            let key = try keys.unseal(sealed)
            record.sealedKey = sealed
            unsealed[name] = key
        }
        record.pendingSealedKey = nil
        try store.update(record)
        records[name] = record
    }
}
