/// Several instances sharing one PostgreSQL database behave as one registry: each follows what
/// the others commit (`PostgresChangeFeed`), writes the liveness it sees for their reapers, and
/// reads what the database holds when memory may be behind it (a key, a taken hostname).
extension Registry {
    /// Follows the other instances on `postgres`: each change they commit is read back and put
    /// in memory as a change made here is.
    func follow(_ postgres: PostgresRegistryStore) {
        postgres.listen(
            backOff: PostgresChangeFeed.BackOff(),
            apply: { [weak self] changes in self?.apply(changes) ?? true },
            resynchronise: { [weak self] in self?.reloadEverything() ?? true })
    }

    /// Reads the rows `changes` name and puts them in memory. False when the database failed
    /// meanwhile (then everything is read again later).
    func apply(_ changes: [RegistryChange]) -> Bool {
        guard let postgres = store as? PostgresRegistryStore else { return true }
        var notify: [UInt32] = []
        let applied = lock.withLock {
            do {
                try apply(changes, from: postgres, notify: &notify)
                return true
            } catch {
                databaseErrorCount += 1
                return false
            }
        }
        if let queued = configuration.handshakeQueued { notify.forEach(queued) }
        return applied
    }

    /// `apply`'s reading, with `lock` held; nodes with handshakes waiting go in `notify`.
    private func apply(_ changes: [RegistryChange], from postgres: PostgresRegistryStore, notify: inout [UInt32]) throws {
        // Nodes first, in one query (a host's batch at another instance names hundreds), then
        // what hangs on them.
        let named = changes.compactMap { change -> UInt32? in
            switch change {
            case .node(let id), .retired(let id): id
            default: nil
            }
        }
        if !named.isEmpty { try applyNodes(named, from: postgres) }
        for change in changes { try apply(change, from: postgres, notify: &notify) }
    }

    /// The rows of nodes `ids` in memory, and those without a row (retired) out of it. Called
    /// with `lock` held.
    private func applyNodes(_ ids: [UInt32], from postgres: PostgresRegistryStore) throws {
        let stored = try postgres.storedNodes(ids, now: clock())
        stored.forEach(rememberFromOtherInstance)
        let kept = Set(stored.map(\.id))
        let gone = ids.filter { !kept.contains($0) }.compactMap { nodes[$0] }
        if !gone.isEmpty { forget(gone) }
    }

    /// One change but a node's, with `lock` held; nodes with handshakes waiting now go in
    /// `notify`.
    private func apply(_ change: RegistryChange, from postgres: PostgresRegistryStore, notify: inout [UInt32]) throws {
        switch change {
        case .node, .retired:
            break  // applyNodes
        case .trust(let a, let b):
            if try postgres.isTrusted(a, b) { trust.insert(Self.pair(a, b)) } else { trust.remove(Self.pair(a, b)) }
        case .inbox(let id):
            let inbox = try postgres.inboxes(of: id)
            requests[id] = inbox.requests[id]
            responses[id] = inbox.responses[id]
            if requests[id] != nil || responses[id] != nil { notify.append(id) }
        case .network(let id):
            if let network = try postgres.networks(id).first { networks.replace(network) }
        }
    }

    /// Reads everything again (the notifications of a while are lost), keeping what memory
    /// alone knows: when this instance last heard each node. False when the database failed.
    ///
    /// The reading takes a connection of its own and one snapshot of the database, and holds no
    /// lock while it waits: the registry answers from memory, and refuses writes within its
    /// deadline, however long the database takes. Then the snapshot replaces memory under the
    /// lock, and the rows this instance committed or read on its own meanwhile, which the
    /// snapshot may hold older, are read again. What the others committed meanwhile comes as
    /// their notifications, applied after this.
    func reloadEverything() -> Bool {
        guard let postgres = store as? PostgresRegistryStore else { return true }
        lock.withLock { postgres.recordChanges() }
        let snapshot: (state: RegistryState, highestRetired: UInt32)
        do {
            snapshot = try postgres.snapshot(now: clock())
        } catch {
            lock.withLock {
                _ = postgres.takeRecordedChanges()
                databaseErrorCount += 1
            }
            return false
        }
        var waiting: [UInt32] = []
        let reloaded = lock.withLock {
            let changedMeanwhile = postgres.takeRecordedChanges()
            let heard = nodes.values.filter(\.online).map { ($0.id, $0.lastSeen) }
            replaceState(with: snapshot.state, highestRetired: snapshot.highestRetired)
            for (id, lastSeen) in heard where nodes[id]?.online == true { nodes[id]?.lastSeen = lastSeen }
            do {
                var notify: [UInt32] = []
                try apply(changedMeanwhile, from: postgres, notify: &notify)
            } catch {
                // Memory may lack this instance's own latest changes: read everything again later.
                databaseErrorCount += 1
                return false
            }
            waiting = Array(Set(requests.keys).union(responses.keys))
            return true
        }
        if let queued = configuration.handshakeQueued { waiting.forEach(queued) }
        return reloaded
    }

    /// `stored`, a row another instance wrote, in memory: heard from now if it came online,
    /// else when this instance last heard it. Called with `lock` held.
    func rememberFromOtherInstance(_ stored: NodeRecord) {
        (store as? PostgresRegistryStore)?.recordRead(.node(stored.id))
        var node = stored
        if let known = nodes[node.id], known.online, node.online { node.lastSeen = known.lastSeen }
        remember(node)
    }

    /// The id of the stored node holding `key`, put in memory, when memory did not know it:
    /// another instance registered it and its notification has not come yet. Called with
    /// `lock` held.
    func rememberStored(withKey key: [UInt8]) throws -> UInt32? {
        guard var stored = try store.storedNode(withKey: key) else { return nil }
        stored.lastSeen = clock()
        rememberFromOtherInstance(stored)
        return stored.id
    }

    /// Puts in memory the stored nodes holding `key` or `hostname`, after the database refused
    /// them as taken. Called with `lock` held.
    func rememberStored(holding key: [UInt8], or hostname: String?) throws {
        guard let postgres = store as? PostgresRegistryStore else { return }
        for node in try postgres.storedNodes(holding: key, or: hostname, now: clock()) { rememberFromOtherInstance(node) }
    }

    // MARK: Liveness

    /// Notes that `node` was heard from, for `shareLiveness`. Called with `lock` held.
    func seen(_ node: UInt32) {
        if store.isShared { seenLately.insert(node) }
    }

    /// Writes which nodes this instance heard from since the last time, so the other
    /// instances' reapers leave them online. Every `configuration.livenessWriteInterval`
    /// (`RegistryServer`); when the database refuses, they are written next time.
    public func shareLiveness() {
        lock.withLock {
            guard !seenLately.isEmpty else { return }
            do {
                try store.recordSeen(Array(seenLately))
                seenLately = []
            } catch {
                databaseErrorCount += 1
            }
        }
    }
}
