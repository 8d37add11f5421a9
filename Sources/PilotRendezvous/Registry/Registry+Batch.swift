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
        lookUpBatchKeys(items)
        defer { batchKeys = nil }
        var replies: [JSON] = []
        replies.reserveCapacity(items.count)
        // One transaction for the batch: one fsync instead of one per item. Each item is a
        // savepoint of it, undone alone when the item fails (PostgreSQL goes on with a
        // transaction after a failed statement only from a savepoint).
        let before = snapshot()
        do {
            try store.transaction {
                for item in items {
                    replies.append(batchItem(item, peerIP: peerIP, fromOperatorHost: fromOperatorHost, notify: &notify).json)
                }
            }
            keep()
        } catch {
            // The commit failed (disk full, I/O error, the database gone): memory ran ahead of
            // the store, so it goes back to what it was, and the whole batch is reported failed.
            restore(before)
            notify = []
            throw RegistryFailure("batch: not stored, nothing changed: \(error)")
        }
        return RegistryMessage(type: "batch_ok", ["replies": .array(replies)])
    }

    /// Asks the store at once about the keys of `items`' registrations that memory does not
    /// know (`RegistryStorage.lookUp`): the nodes another instance stored go into memory, and
    /// `register` takes the rest from `batchKeys` instead of asking one key at a time. When the
    /// store cannot answer, each registration asks for itself (and gets the store's error).
    func lookUpBatchKeys(_ items: [JSON]) {
        var keys: [[UInt8]] = []
        var asked: Set<[UInt8]> = []
        for item in items where item["type"] == "register" {
            guard let text = item["public_key"]?.stringValue, let key = try? Ed25519PublicKey(base64: text),
                byKey[key.bytes] == nil, asked.insert(key.bytes).inserted
            else { continue }
            keys.append(key.bytes)
        }
        guard !keys.isEmpty, let (stored, retired) = try? store.lookUp(keys: keys) else { return }
        for var node in stored {
            node.lastSeen = clock()
            rememberFromOtherInstance(node)
        }
        batchKeys = (asked, retired)
    }

    /// What a batch may carry: what a host says for each of its identities at once, and the
    /// goodbye of identities it deletes (a fleet of disposable agents turns over by thousands).
    static let batchable: Set<String> = ["register", "heartbeat", "poll_handshakes", "set_hostname", "set_tags", "set_visibility", "deregister"]

    func batchItem(_ item: JSON, peerIP: String, fromOperatorHost: Bool, notify: inout [UInt32]) -> RegistryMessage {
        let type = String((item["type"]?.stringValue ?? "request").prefix(64))
        do {
            let inner = try RegistryMessage(json: item)
            guard Self.batchable.contains(inner.type) else {
                throw RegistryFailure("batch: \(inner.type.prefix(64)) cannot be batched")
            }
            return try store.transaction { try dispatch(inner, peerIP: peerIP, fromOperatorHost: fromOperatorHost, notify: &notify) }
        } catch let error as RegistryFailure {
            return RegistryMessage(type: "error", ["error": .string(error.message)])
        } catch let error as RegistryStorageUnavailable {
            return RegistryMessage(type: "error", ["error": .string("\(type): not done, \(error); try again")])
        } catch let error as RegistryStorageConflict {
            // Taken again at the retry: another instance won the same value twice in a row.
            return RegistryMessage(type: "error", ["error": .string("\(type): not done, \(error); try again")])
        } catch {
            return RegistryMessage(type: "error", ["error": .string("bad request: \(error)")])
        }
    }

    /// The in-memory state a batch may change, to put back when its commit fails: the node
    /// table and its indexes by their journals (what changed only), the rest as copies, shared
    /// until written (copy-on-write: small tables, or ones a batch rarely changes).
    struct Snapshot {
        var trust: Set<UInt64>
        var networks: NetworkTable
        var requests: [UInt32: [PendingHandshake]]
        var responses: [UInt32: [PendingResponse]]
        var nextID: UInt32
        var retired: Int
    }

    func snapshot() -> Snapshot {
        nodes.openJournal()
        byKey.openJournal()
        byHostname.openJournal()
        byReclaimable.openJournal()
        return Snapshot(trust: trust, networks: networks, requests: requests, responses: responses, nextID: nextID, retired: retired)
    }

    /// The batch is stored: its changes stay.
    func keep() {
        nodes.closeJournal()
        byKey.closeJournal()
        byHostname.closeJournal()
        byReclaimable.closeJournal()
    }

    func restore(_ snapshot: Snapshot) {
        nodes.rollBack()
        byKey.rollBack()
        byHostname.rollBack()
        byReclaimable.rollBack()
        trust = snapshot.trust
        networks = snapshot.networks
        requests = snapshot.requests
        responses = snapshot.responses
        nextID = snapshot.nextID
        retired = snapshot.retired
    }
}
