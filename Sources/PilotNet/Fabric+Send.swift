import Glibc
public import NIOCore
public import PilotWire

extension Fabric {
    /// Sends `packet` (its source is the sending identity) to node `remote`, over its session or
    /// after a key exchange with `endpoint` (or where `remote` was last seen).
    public func send(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil) async throws {
        try await loop.submit { [self] in try route(packet, to: remote, endpoint: endpoint) }.get()
    }

    /// On the loop: `packet` to node `remote`. An identity of this fabric gets it directly (it
    /// never leaves the process, so there is nothing to encrypt), on the next turn of the loop
    /// so no caller is re-entered; any other node through its tunnel.
    func route(_ packet: Packet, to remote: UInt32, endpoint: SocketAddress? = nil) throws {
        let state = state.value
        if state.table.identity(remote) != nil {
            guard state.table.identity(packet.source.node) != nil else {
                throw TunnelError.sourceNotLocal(packet.source)
            }
            state.localPackets += 1
            loop.execute { [self] in deliver(packet, to: remote) }
            return
        }
        perform(try state.table.send(packet, to: remote, endpoint: endpoint, now: .now()))
    }

    /// Datagrams queued while a batch of reads is handled go out together when the batch ends
    /// (`readComplete`); any others (a user's, a timer's) go out at once, without waiting for
    /// another turn of the loop.
    func flushUnlessReading() {
        let state = state.value
        guard !state.outgoing.isEmpty, !state.reading else { return }
        flushNow()
    }

    func flushNow() {
        let state = state.value
        let waiting = state.outgoing
        state.outgoing = [:]
        var sent = 0
        for (socket, var datagrams) in waiting {
            guard let descriptor = state.descriptors[socket] else { continue }
            let outcome = state.sender.send(datagrams, on: descriptor)
            sent += outcome.sent
            for failure in outcome.failed { state.sendErrors[failure.errno, default: 0] += 1 }
            if let blocked = outcome.blockedFrom {
                // The send buffer is full: the rest waits for the next flush (at most a tick),
                // the oldest dropped beyond a bound, as the network would.
                datagrams.removeFirst(blocked)
                let excess = datagrams.count - Self.sendBacklogLimit
                if excess > 0 {
                    datagrams.removeFirst(excess)
                    state.sendBacklogDropped += excess
                }
                state.outgoing[socket] = datagrams
            }
            if !outcome.failed.isEmpty { warnAboutSendErrors(example: outcome.failed[0]) }
        }
        if sent > 0 { keepPolling() }
    }

    static let sendBacklogLimit = 8192

    /// Says, at most every 10 s, that the kernel refuses datagrams (an endpoint without a
    /// route, a firewall rule): the socket serves on, but the operator should know.
    func warnAboutSendErrors(example: (errno: Int32, endpoint: SocketAddress)) {
        let state = state.value
        let now = NIODeadline.now()
        if let last = state.lastSendWarning, now - last < .seconds(10) { return }
        state.lastSendWarning = now
        let counts = state.sendErrors.sorted { $0.key < $1.key }.map { "\(String(cString: strerror($0.key))): \($0.value)" }
        logger.warning("datagrams refused by the kernel; the socket serves on", metadata: [
            "example": "\(example.endpoint): \(String(cString: strerror(example.errno)))", "totals": "\(counts.joined(separator: ", "))",
        ])
    }

    /// Datagrams went out: with busy polling, the loop looks at its sockets for a while yet,
    /// for the answer. (A batch of reads that sent nothing does not count as a burst: a resting
    /// loop's probes would otherwise fall, one in two, where no answer is awaited.)
    func keepPolling() {
        guard let poll = state.value.busyPoll, poll.extend() else { return }
        loop.execute { [self] in pollOnce() }
    }

    func pollOnce() {
        guard !state.value.stopped, let poll = state.value.busyPoll, poll.look() else { return }
        loop.execute { [self] in pollOnce() }
    }

    /// Sends `messages` to the beacon at `endpoint` from socket `socket` (0: the shared one),
    /// in one batch.
    public func sendBeacon(_ messages: [BeaconMessage], to endpoint: SocketAddress, socket: Int = 0) async throws {
        let datagrams = try messages.map { try $0.encoded() }
        try await loop.submit { [self] in
            self.perform(TunnelActions(contentsOf: datagrams.map { .send($0, to: endpoint, socket: socket) }))
        }.get()
    }
}
