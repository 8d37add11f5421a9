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
            var count = 0
            for (id, var node) in nodes where node.online && now - node.lastSeen > configuration.livenessTimeout {
                goOffline(&node, keepingHostname: true)
                try? store.save(node)
                nodes[id] = node
                count += 1
            }
            retireExpired()
            pruneRegistrationBuckets(now: now)
            legacyChangeBuckets = legacyChangeBuckets.filter { !$0.value.isFull(now: now) }
            return count
        }
    }

    /// Offline, its hostname free for others; with `keepingHostname` (the reaper, not a
    /// goodbye) the node may take the name back when it returns, if nobody claimed it.
    func goOffline(_ node: inout NodeRecord, keepingHostname: Bool) {
        node.online = false
        node.offlineSince = Int64(wallClock())
        if let hostname = node.hostname, byHostname[hostname] == node.id { byHostname[hostname] = nil }
        if keepingHostname, let hostname = node.hostname {
            node.reclaimableHostname = hostname
            byReclaimable[hostname] = node.id
        }
        node.hostname = nil
    }

    /// Online again, with the hostname the reaper took if nobody claimed it meanwhile.
    func comeBack(_ node: inout NodeRecord) {
        node.online = true
        node.offlineSince = nil
        guard let hostname = node.reclaimableHostname else { return }
        node.reclaimableHostname = nil
        guard byReclaimable[hostname] == node.id else { return }
        byReclaimable[hostname] = nil
        if node.hostname == nil, byHostname[hostname] == nil {
            node.hostname = hostname
            byHostname[hostname] = node.id
        }
    }
}
