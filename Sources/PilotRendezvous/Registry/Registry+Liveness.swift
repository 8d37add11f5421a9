import Foundation
import PilotCrypto
import PilotWire

/// Liveness: nodes that stop sending heartbeats go offline, and come back.
extension Registry {
    /// Marks nodes without a heartbeat for `livenessTimeout` offline and frees their hostnames
    /// (key, id, trust pairs and inboxes are kept), retires nodes offline for longer than
    /// `retention`, and forgets refilled per-source buckets. Returns how many went offline.
    @discardableResult
    public func reap() -> Int {
        lock.withLock {
            let now = clock()
            var silent: [NodeRecord] = []
            for var node in nodes.values where node.online && now - node.lastSeen > configuration.livenessTimeout {
                goOffline(&node, keepingHostname: true)
                silent.append(node)
            }
            // All or none, in one transaction: when the store refuses, they stay online in
            // memory as on disk, and the next reap tries again. A shared store keeps those
            // another instance saw lately, and leaves the round to an instance reaping already.
            var count = 0
            do {
                if !silent.isEmpty {
                    try store.transaction {
                        let confirmed = Set(try store.stillSilent(silent.map(\.id), timeout: configuration.livenessTimeout) ?? [])
                        silent.removeAll { !confirmed.contains($0.id) }
                        // Shared, the rows are taken as the database has them now (locked by
                        // `stillSilent` until the commit), not as this instance last heard of
                        // them: a change another instance made meanwhile (a new hostname, a new
                        // key) is kept, only the node's going offline is written.
                        if let postgres = store as? PostgresRegistryStore, !silent.isEmpty {
                            let heardHere = Dictionary(silent.map { ($0.id, $0.lastSeen) }, uniquingKeysWith: { first, _ in first })
                            silent = try postgres.storedNodes(silent.map(\.id), now: now).map { stored in
                                var node = stored
                                node.lastSeen = heardHere[node.id] ?? now
                                goOffline(&node, keepingHostname: true)
                                return node
                            }
                        }
                        for node in silent { try store.save(node) }
                    }
                }
                silent.forEach(remember)
                count = silent.count
            } catch {
                // Kept online, as the store has them (or the database could not say who is
                // silent); the next reap tries again.
                databaseErrorCount += 1
            }
            retireExpired()
            pruneRegistrationBuckets(now: now)
            legacyChangeBuckets = legacyChangeBuckets.filter { !$0.value.isFull(now: now) }
            return count
        }
    }

    /// Offline, its hostname free for others; with `keepingHostname` (the reaper, not a
    /// goodbye) the node may take the name back when it returns, if nobody claimed it. Changes
    /// the record only: `remember` puts it in the indexes once it is stored.
    func goOffline(_ node: inout NodeRecord, keepingHostname: Bool) {
        node.online = false
        node.offlineSince = Int64(wallClock())
        if keepingHostname, let hostname = node.hostname { node.reclaimableHostname = hostname }
        node.hostname = nil
    }

    /// Online again, with the hostname the reaper took if nobody claimed it meanwhile. Changes
    /// the record only: `remember` puts it in the indexes once it is stored.
    func comeBack(_ node: inout NodeRecord) {
        node.online = true
        node.offlineSince = nil
        guard let hostname = node.reclaimableHostname else { return }
        node.reclaimableHostname = nil
        if byReclaimable[hostname] == node.id, node.hostname == nil, byHostname[hostname] == nil { node.hostname = hostname }
    }
}
