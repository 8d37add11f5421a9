import FoundationEssentials
import PilotCrypto
public import PilotStore
public import PilotWire

/// Identities that move between hosts: one made into a parcel for another host (its key,
/// registry settings, trust table and, if asked, inbox), and one taken in from a parcel,
/// registered with the same key (so the registry gives back its node id) and a sequence newer
/// than any its old host used (`RegisterSequence`), then stored with its trust table.
extension IdentityPool {
    /// `name` sealed for the host whose key is `recipient` (`IdentityFile`), with its apps and,
    /// if `withInbox`, its inbox; its record, and how many messages and apps went. Nothing
    /// changes here: the caller deletes it once it has the file.
    public func exportFile(
        name: String, to recipient: [UInt8], withInbox: Bool
    ) throws -> (file: [UInt8], record: IdentityRecord, messages: Int, apps: Int) {
        guard let record = records[name] else { throw PoolError.notFound(name) }
        guard !rotating.contains(name), record.pendingSealedKey == nil else {
            throw PoolError.busy(name: name, reason: "a key rotation is unsettled: export it once the rotation is done")
        }
        let key = try key(name)
        let messages = withInbox ? try store.messages(identity: name) : []
        var parcel = IdentityParcel(
            recipient: recipient, exportedAt: Int64(Date().timeIntervalSince1970 * 1_000_000), lastSequence: nextNonce(),
            seed: key.seed.bytes, publicKey: key.publicKey.bytes, node: record.nodeID, network: record.network, name: name,
            hostname: record.hostname, tags: record.tags, isPublic: record.isPublic, autoApprove: record.autoApprove,
            trust: trust(of: name).map {
                IdentityParcel.Trust(
                    peer: $0.peerNode, peerKey: $0.peerKey, state: $0.state.rawValue, reason: $0.reason, updatedAt: $0.updatedAt, mutual: $0.mutual)
            },
            messages: messages.map {
                IdentityParcel.Message(
                    sender: $0.sender, type: $0.type, data: $0.data, messageID: $0.messageID, replyTo: $0.replyTo, receivedAt: $0.receivedAt)
            },
            apps: try store.apps(identity: name).map(Self.parcelApp))
        defer { Sodium.zero(&parcel.seed) }
        return (try IdentityFile.seal(parcel, signedBy: key), record, messages.count, parcel.apps.count)
    }

    /// Takes in the identity of `parcel` as `name`, owned by `owner`: registered with its key
    /// and a fresh sequence, which must give back its node id (the same registry), its
    /// hostname, tags and visibility said again, then stored with its trust table and the
    /// messages it carries. Refused when the name or the node is here already. Whatever fails
    /// after the registration takes it back.
    public func importIdentity(_ parcel: IdentityParcel, name: String, owner: UInt32) async throws -> IdentityRecord {
        try Self.validate(name: name)
        guard records[name] == nil else { throw PoolError.exists(name) }
        if let present = namesByNode[parcel.node] {
            throw PoolError.busy(name: present, reason: "node \(parcel.node) is this host's identity \(present) already: nothing imported")
        }
        let key = try Ed25519PrivateKey(seed: parcel.seed)
        raiseNonce(to: parcel.lastSequence)
        let node = try await register(key)
        guard node == parcel.node else {
            // Another registry: it made a new node of the key, which nobody wants.
            await deregister(key, node: node)
            throw PoolError.registry(
                "it gave node \(node), but the file is of node \(parcel.node): this host uses another registry than the identity's old host")
        }
        let record = IdentityRecord(
            name: name, nodeID: node, network: parcel.network, sealedKey: keys.seal(key), hostname: parcel.hostname, tags: parcel.tags,
            isPublic: parcel.isPublic, ownerUID: owner, createdAt: Int64(Date().timeIntervalSince1970), autoApprove: parcel.autoApprove)
        var trusted = TrustTable()
        for entry in parcel.trust {
            guard let state = TrustRecord.State(rawValue: entry.state) else { continue }
            trusted[entry.peer] = TrustRecord(
                peerNode: entry.peer, peerKey: entry.peerKey, state: state, reason: entry.reason, updatedAt: entry.updatedAt, mutual: entry.mutual)
        }
        do {
            let changes = Self.staleChanges(of: record, given: RegistryMessage(type: "register_ok")).map { changeMessage(key, node: node, $0.type, $0.fields) }
            for (change, reply) in zip(changes, try await registry.send(batch: changes)) where reply.type != "\(change.type)_ok" {
                throw PoolError.registry("\(change.type): \(reply["error"]?.stringValue ?? reply.type)")
            }
            try store(record, trust: trusted.entries, messages: parcel.messages)
        } catch {
            await deregister(key, node: node)
            throw error
        }
        records[name] = record
        sortedNames.insert(name, at: sortedNames.partitionPoint { $0 >= name })
        namesByNode[node] = name
        unsealed[name] = key
        trusts[name] = trusted
        return record
    }

    /// `record` as a parcel carries it: what the app is and what was approved, not where its
    /// state lives here.
    static func parcelApp(_ record: AppInstallRecord) -> IdentityParcel.App {
        IdentityParcel.App(
            appID: record.appID, version: record.version, manifestVersion: record.manifestVersion, bundleSHA256: record.bundleSHA256,
            publisher: record.publisher, source: record.source, exposes: record.exposes, installedAt: record.installedAt,
            approvedBy: record.approvedBy, approvedAt: record.approvedAt,
            grants: record.grants.map { IdentityParcel.App.Grant(cap: $0.cap, target: $0.target, condition: $0.condition) })
    }

    /// Stores an imported identity with its trust and messages, or nothing of it.
    private func store(_ record: IdentityRecord, trust: [TrustRecord], messages: [IdentityParcel.Message]) throws {
        do { try store.create(record) } catch let error as StoreError where error.isConstraintViolation {
            throw PoolError.exists(record.name)
        }
        do {
            for entry in trust { try store.setTrust(entry, identity: record.name) }
            for message in messages {
                _ = try store.addMessage(
                    InboxMessage(
                        sender: message.sender, type: message.type, data: message.data, messageID: message.messageID, replyTo: message.replyTo,
                        receivedAt: message.receivedAt),
                    identity: record.name)
            }
        } catch {
            _ = try? store.delete(name: record.name)
            throw error
        }
    }
}
