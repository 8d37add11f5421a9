import Foundation
import PilotCrypto
import PilotWire

/// `batch`, our extension: many signed changes of one host in one request.
extension Registry {
    /// `{"type":"batch","requests":[<request>, ...]}` → `{"type":"batch_ok","replies":[<reply>, ...]}`,
    /// replies in request order, each exactly what the request alone would get. Only the types in
    /// `batchable` may be batched (each signed by its own node's key), at most 1000 per batch:
    /// one round trip for a host carrying thousands of identities.
    func batch(_ request: RegistryMessage, peerIP: String, notify: inout [UInt32]) throws -> RegistryMessage {
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
        // One transaction for the batch: one fsync instead of one per item. An item's own
        // transaction (deregister's) is a savepoint of it.
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

    /// What a batch may carry: what a host says for each of its identities at once, and the
    /// goodbye of identities it deletes (a fleet of disposable agents turns over by thousands).
    static let batchable: Set<String> = ["register", "heartbeat", "poll_handshakes", "set_hostname", "set_tags", "set_visibility", "deregister"]

    func batchItem(_ item: JSON, peerIP: String, fromOperatorHost: Bool, notify: inout [UInt32]) -> RegistryMessage {
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
}
