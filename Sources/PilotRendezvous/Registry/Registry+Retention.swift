/// Retention: a node offline for longer than `configuration.retention` is deleted, with what
/// hangs on it; its tombstone (id, SHA-256 of its key) stays in `registry.db`, so the id is never
/// handed out again and the key, signing, gets it back.
extension Registry {
    /// Nodes retired so far by this process.
    public var retiredCount: Int { lock.withLock { retired } }

    /// Retires every node offline since before the cutoff, in one transaction; on a disk error
    /// nothing changes and the next reap tries again. Called with `lock` held.
    func retireExpired() {
        let cutoff = Int64(wallClock() - configuration.retention)
        let expired = nodes.values.filter { !$0.online && ($0.offlineSince ?? Int64.max) < cutoff }
        guard !expired.isEmpty else { return }
        do {
            try store.transaction { for node in expired { try store.retire(node) } }
        } catch {
            databaseErrorCount += 1
            return  // the disk refused: keep them all, try again at the next reap
        }
        forget(expired)
        retired += expired.count
    }

    /// Takes retired `nodes` out of memory, with what hangs on them (retired here, or by
    /// another instance sharing the database). Called with `lock` held.
    func forget(_ nodes: [NodeRecord]) {
        let gone = Set(nodes.map(\.id))
        for node in nodes {
            byKey[node.publicKey] = nil
            if let hostname = node.hostname, byHostname[hostname] == node.id { byHostname[hostname] = nil }
            legacyChangeBuckets[node.id] = nil
            if let hostname = node.reclaimableHostname, byReclaimable[hostname] == node.id { byReclaimable[hostname] = nil }
            requests[node.id] = nil
            responses[node.id] = nil
            self.nodes[node.id] = nil
            networks.removeEverywhere(node.id)
        }
        if !trust.isEmpty { trust = trust.filter { !gone.contains(UInt32(truncatingIfNeeded: $0 >> 32)) && !gone.contains(UInt32(truncatingIfNeeded: $0)) } }
        for (id, waiting) in requests { requests[id] = waiting.filter { !gone.contains($0.from) } }
        for (id, answered) in responses { responses[id] = answered.filter { !gone.contains($0.from) } }
    }
}
