import NIOCore

extension Fabric {
    /// `key`'s reader caught up after its window was narrowed: the peer hears the window is
    /// open (else a sender facing a shut window would wait for its next probe).
    func reopenWindow(_ key: StreamConnection.Key) {
        loop.execute { [self] in
            let state = state.value
            guard let entry = state.streams.entries[key], let handle = entry.handle else { return }
            entry.connection.readerBacklog = readerBacklog(key, handle)
            self.handle(entry.connection.windowUpdate(), for: key)
        }
    }

    /// Queues `bytes` handed over by `handle` (it counted them), on the loop, without waiting.
    func streamWriteNow(_ key: StreamConnection.Key, _ bytes: [UInt8], from handle: StreamHandle) {
        loop.execute { [self] in
            guard let entry = state.value.streams.entries[key], !entry.connection.isClosed else {
                handle.returnHandedOver(bytes.count)
                return
            }
            self.handle(entry.connection.write(bytes, now: .now()), for: key)
            // Handed over and now held: one update, so no writer sees the bytes in neither.
            noteUnacknowledged(key, handedOver: bytes.count)
        }
    }

    /// Tells `key`'s handle how much its connection holds unacknowledged, so that its writer
    /// knows whether it may hand over more without asking.
    func noteUnacknowledged(_ key: StreamConnection.Key, handedOver: Int = 0) {
        guard let entry = state.value.streams.entries[key], let handle = entry.handle else { return }
        let unacknowledged = entry.connection.unacknowledgedBytes
        handle.noteUnacknowledged(unacknowledged, handedOver: handedOver)
    }

    /// Queues `bytes`; returns once less than `PortTable.writeLimit` waits to be acknowledged,
    /// so a fast writer is held back instead of queueing without bound.
    func streamWrite(_ key: StreamConnection.Key, _ bytes: [UInt8]) async throws {
        let drained = try await loop.submit { [self] () throws -> EventLoopFuture<Void>? in
            let streams = state.value.streams
            guard let entry = streams.entries[key], !entry.connection.isClosed else { throw StreamError("stream is closed") }
            handle(entry.connection.write(bytes, now: .now()), for: key)
            noteUnacknowledged(key)
            guard var current = streams.entries[key], current.connection.unacknowledgedBytes > PortTable.writeLimit else { return nil }
            let promise = loop.makePromise(of: Void.self)
            current.writers.append(PortTable.Waiter(unacknowledged: PortTable.writeLimit / 2, promise: promise))
            streams.entries[key] = current
            return promise.futureResult
        }.get()
        try await drained?.get()
    }

    /// Returns once `key`'s peer has acknowledged everything written to it.
    func streamFlush(_ key: StreamConnection.Key) async throws {
        let flushed = try await loop.submit { [self] () throws -> EventLoopFuture<Void>? in
            let streams = state.value.streams
            guard var entry = streams.entries[key], !entry.connection.isClosed else { throw StreamError("stream is closed") }
            guard entry.connection.unacknowledgedBytes > 0 else {
                // Nothing is waiting: all was acknowledged, or the peer finished first.
                let lost = entry.connection.unacknowledgedAtPeerFin
                if lost > 0 { throw StreamError.peerFinished(unacknowledged: lost) }
                return nil
            }
            let promise = loop.makePromise(of: Void.self)
            entry.writers.append(PortTable.Waiter(unacknowledged: 0, promise: promise))
            streams.entries[key] = entry
            return promise.futureResult
        }.get()
        try await flushed?.get()
    }

    /// `streamAbort` without waiting (from a handle whose reader is gone).
    func abortSoon(_ key: StreamConnection.Key) {
        loop.execute { [self] in reset(key) }
    }

    func streamAbort(_ key: StreamConnection.Key) async {
        _ = try? await loop.submit { [self] in reset(key) }.get()
    }

    /// On the loop: ends `key` with a reset.
    func reset(_ key: StreamConnection.Key) {
        guard let entry = state.value.streams.entries[key] else { return }
        handle(entry.connection.reset(), for: key)
    }

    /// Lets waiting writers of `key` go on once its queue has drained far enough for each.
    func releaseWriters(_ key: StreamConnection.Key) {
        let streams = state.value.streams
        guard var entry = streams.entries[key], !entry.writers.isEmpty else { return }
        let unacknowledged = entry.connection.unacknowledgedBytes
        let released = entry.writers.filter { unacknowledged <= $0.unacknowledged }
        guard !released.isEmpty else { return }
        entry.writers.removeAll { unacknowledged <= $0.unacknowledged }
        streams.entries[key] = entry
        // The peer finished with bytes of ours unacknowledged: they were not all received.
        let lost = entry.connection.unacknowledgedAtPeerFin
        for writer in released {
            if writer.unacknowledged == 0, lost > 0 {
                writer.promise.fail(StreamError.peerFinished(unacknowledged: lost))
            } else {
                writer.promise.succeed()
            }
        }
    }

    /// Closes identity `node`'s stream whose `id` is `id` (a FIN, as its owner's close would);
    /// false if it has none.
    public func closeStream(of node: UInt32, id: Int) async -> Bool {
        (try? await loop.submit { [self] () -> Bool in
            guard let (key, entry) = state.value.streams.entries.first(where: { $0.key.local.node == node && $0.value.connection.id == id }) else {
                return false
            }
            entry.handle?.markClosed()
            handle(entry.connection.close(now: .now()), for: key)
            return true
        }.get()) ?? false
    }

    func streamClose(_ key: StreamConnection.Key) async throws {
        try await loop.submit { [self] in
            guard let entry = state.value.streams.entries[key] else { return }
            entry.handle?.markClosed()
            handle(entry.connection.close(now: .now()), for: key)
        }.get()
    }
}
