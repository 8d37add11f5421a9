import FoundationEssentials
import Logging
import PilotControl
import PilotCrypto
import PilotNet
import PilotServices
import PilotStore
import PilotWire

/// Trust handshakes of every identity (port 444, docs/PROTOCOL.md §10), with their state in
/// `host.db`. Being on the network is not being trusted: an accept counts only when this
/// identity asked, and a message must come from the node its tunnel authenticated.
actor TrustService {
    private let pool: IdentityPool
    private let presence: Presence
    private let transport: HandshakeTransport
    private let logger: Logger
    /// SHA-256 of messages seen in the last 10 minutes: a replayed message is ignored.
    private var seen: [[UInt8]: Date] = [:]
    private(set) var ignored = 0
    /// Handshake steps by how they went, for the metrics.
    private(set) var outcomes: [HandshakeOutcome: Int] = [:]

    static let maxReason = 512
    /// Requests waiting for an identity's answer at most; more from new askers are dropped.
    static let maxPending = 1024

    /// The trust of `pool`'s identities: messages go through `transport` on streams `presence`
    /// dials, and what arrives on `transport` is judged here until the transport finishes.
    init(pool: IdentityPool, presence: Presence, transport: HandshakeTransport, logger: Logger) {
        self.pool = pool
        self.presence = presence
        self.transport = transport
        self.logger = logger
        Task { [weak self, arrivals = transport.arrivals] in
            // Up to `concurrentMessages` messages are judged at once: each may wait on the
            // registry and on a stream to the peer, and one slow peer must not hold up the
            // rest. An arrival is taken only when there is room, so what waits beyond stays in
            // the transport's bounded queue.
            await withTaskGroup(of: Void.self) { group in
                var running = 0
                var waiting = arrivals.makeAsyncIterator()
                while true {
                    if running == Self.concurrentMessages {
                        await group.next()
                        running -= 1
                    }
                    guard let arrival = await waiting.next(), let self else { return }
                    group.addTask { await self.received(arrival.bytes, for: arrival.identity, from: arrival.node) }
                    running += 1
                }
            }
        }
    }

    /// Handshake messages judged at once.
    static let concurrentMessages = 64

    /// Sends `message` from `name` to `peer`'s port 444 (see `HandshakeTransport.send`).
    private func send(_ name: String, _ peer: UInt32, _ message: HandshakeMessage) async throws {
        try await transport.send(message, from: name, to: peer) { [presence] in
            try await presence.dial(from: name, to: Address(node: peer), port: HandshakeTransport.port)
        }
    }

    /// `name` has business with `peer`, or no longer has.
    private func relate(_ name: String, _ peer: UInt32, _ related: Bool) async {
        await presence.relate(name, peer: peer, related)
    }

    // MARK: Commands of the identity's owner

    /// `handshake PEER REASON`: asks `peer` for trust.
    func request(_ name: String, peer: UInt32, reason: String) async throws -> TrustChange {
        guard reason.utf8.count <= Self.maxReason else {
            throw ControlFailure(.invalidArgument, "handshake: the reason is longer than \(Self.maxReason) bytes")
        }
        let record = try await identity(name)
        guard peer != record.nodeID else { throw ControlFailure(.invalidArgument, "handshake: an identity cannot trust itself") }
        if await pool.trust(of: name, peer: peer)?.state == .trusted {
            return TrustChange(status: "already trusted", nodeID: peer)
        }
        if let pending = await pool.trust(of: name, peer: peer), pending.state == .pendingIn {
            // The peer asked first: asking back is approving.
            return try await approve(name, peer: peer)
        }
        try await pool.setTrust(TrustRecord(peerNode: peer, state: .pendingOut, reason: reason, updatedAt: Self.now), for: name)
        await relate(name, peer, true)
        do {
            try await send(name, peer, try await message(.request, from: name, to: peer, justification: reason))
        } catch {
            // Not reachable directly (a private node that does not trust us yet, or offline):
            // the registry keeps the request until the peer polls for it.
            do {
                try await pool.requestHandshake(name, to: peer, justification: reason)
            } catch let relayError {
                throw ControlFailure(.connectionFailed, "handshake: cannot reach node \(peer) (\(error)), nor through the registry (\(relayError))")
            }
            count(.sentRelayed)
            return TrustChange(status: "sent", nodeID: peer, relayed: true)
        }
        count(.sent)
        return TrustChange(status: "sent", nodeID: peer)
    }

    func approve(_ name: String, peer: UInt32) async throws -> TrustChange {
        guard var entry = await pool.trust(of: name, peer: peer), entry.state == .pendingIn else {
            throw ControlFailure(.notFound, "no pending handshake from node \(peer)")
        }
        entry.state = .trusted
        entry.updatedAt = Self.now
        try await pool.setTrust(entry, for: name)
        await relate(name, peer, true)
        await report(name, peer: peer, trusted: true)
        await answer(name, peer: peer, accept: true)
        count(.approved)
        return TrustChange(status: "approved", nodeID: peer)
    }

    func reject(_ name: String, peer: UInt32, reason: String) async throws -> TrustChange {
        guard let entry = await pool.trust(of: name, peer: peer), entry.state == .pendingIn else {
            throw ControlFailure(.notFound, "no pending handshake from node \(peer)")
        }
        try await pool.removeTrust(peer: entry.peerNode, for: name)
        await relate(name, peer, false)
        await answer(name, peer: peer, accept: false, reason: reason)
        count(.rejected)
        return TrustChange(status: "rejected", nodeID: peer)
    }

    /// `untrust PEER`: revokes a trust.
    func revoke(_ name: String, peer: UInt32) async throws -> TrustChange {
        guard let entry = await pool.trust(of: name, peer: peer), entry.state == .trusted else {
            throw ControlFailure(.notFound, "node \(peer) is not trusted")
        }
        try await pool.removeTrust(peer: entry.peerNode, for: name)
        // Told over the tunnel while it is still there, then the tunnel is let go.
        do { try await send(name, peer, try await message(.revoke, from: name, to: peer)) } catch {
            logger.info("revoke not delivered directly; the registry tells the peer", metadata: ["identity": "\(name)", "peer": "\(peer)", "error": "\(error)"])
        }
        await relate(name, peer, false)
        await report(name, peer: peer, trusted: false)
        count(.revoked)
        return TrustChange(status: "revoked", nodeID: peer)
    }

    func pending(_ name: String) async -> PendingTrust {
        let entries = await pool.trust(of: name).filter { $0.state == .pendingIn }
        return PendingTrust(pending: entries.map { entry in
            PendingTrust.Request(
                nodeID: entry.peerNode, publicKey: entry.peerKey.map(Base64.encode) ?? "", justification: entry.reason,
                receivedAt: entry.updatedAt)
        })
    }

    /// Whether `maxPending` requests wait for `name`'s answer already.
    private func tooManyWaiting(_ name: String) async -> Bool {
        await pool.trust(of: name).lazy.filter { $0.state == .pendingIn }.count >= Self.maxPending
    }

    /// A page of `pending`, by node id.
    func pending(_ name: String, page: ListPage) async -> PendingTrust {
        let all = await pending(name).pending
        let (rows, next) = Paging.page(all, key: { Int64($0.nodeID) }, json: PendingTrust.row, page: page)
        return PendingTrust(pending: rows, next: next)
    }

    /// A page of `trusted`, by node id.
    func trusted(_ name: String, page: ListPage) async -> TrustedPeers {
        let all = await trusted(name).trusted
        let (rows, next) = Paging.page(all, key: { Int64($0.nodeID) }, json: TrustedPeers.row, page: page)
        return TrustedPeers(trusted: rows, total: all.count, next: next)
    }

    func trusted(_ name: String) async -> TrustedPeers {
        let entries = await pool.trust(of: name).filter { $0.state == .trusted }
        return TrustedPeers(trusted: entries.map { entry in
            TrustedPeers.Peer(
                nodeID: entry.peerNode, publicKey: entry.peerKey.map(Base64.encode) ?? "", approvedAt: entry.updatedAt, mutual: entry.mutual)
        })
    }

    /// An answer to a request, both ways 1.18 may be waiting for it: through the registry
    /// (for a request it relayed) and directly (best effort).
    /// The two go at once: neither waits on the other's round trip (a direct send to a peer
    /// that cannot be reached waits out its dial).
    private func answer(_ name: String, peer: UInt32, accept: Bool, reason: String = "") async {
        async let relayed: Void = respondThroughRegistry(name, peer: peer, accept: accept)
        let kind: HandshakeMessage.Kind = accept ? .accept : .reject
        try? await send(name, peer, try await message(kind, from: name, to: peer, reason: String(reason.prefix(Self.maxReason))))
        await relayed
    }

    private func respondThroughRegistry(_ name: String, peer: UInt32, accept: Bool) async {
        do { try await pool.respondHandshake(name, to: peer, accept: accept) } catch {
            logger.info("registry did not take the handshake answer", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "error": "\(error)"])
        }
    }

    // MARK: Relayed through the registry

    /// What a poll of the registry found for `name`: requests from nodes that could not reach it,
    /// and answers to requests it relayed. The registry checked each sender's signature.
    func relayed(_ name: String, requests: [JSON], responses: [JSON]) async {
        guard let record = await pool.identity(named: name) else { return }
        for request in requests {
            guard let node = request["from_node_id"]?.integerValue, let peer = UInt32(exactly: node), peer != record.nodeID else { continue }
            let justification = String((request["justification"]?.stringValue ?? "").prefix(Self.maxReason))
            let state = await pool.trust(of: name, peer: peer)?.state
            do {
                if state == .trusted {
                    await answer(name, peer: peer, accept: true)
                } else if state == .pendingOut || record.autoApprove {
                    try await pool.setTrust(
                        TrustRecord(peerNode: peer, state: .trusted, reason: justification, updatedAt: Self.now, mutual: state == .pendingOut), for: name)
                    await relate(name, peer, true)
                    await report(name, peer: peer, trusted: true)
                    await answer(name, peer: peer, accept: true)
                    count(state == .pendingOut ? .mutual : .autoApproved)
                } else if state != .pendingIn, await tooManyWaiting(name) {
                    count(.dropped)
                    logger.warning("handshake request dropped: too many waiting", metadata: [
                        "PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "waiting": "\(Self.maxPending)"])
                } else {
                    try await pool.setTrust(TrustRecord(peerNode: peer, state: .pendingIn, reason: justification, updatedAt: Self.now), for: name)
                    await relate(name, peer, true)
                    count(.received)
                    logger.notice("handshake request (relayed)", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)"])
                }
            } catch {
                logger.error("cannot store a trust change", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "error": "\(error)"])
            }
        }
        for response in responses {
            guard let node = response["from_node_id"]?.integerValue, let peer = UInt32(exactly: node),
                await pool.trust(of: name, peer: peer)?.state == .pendingOut
            else { continue }
            let accepted = response["accept"]?.boolValue == true
            do {
                try await pool.setTrust(
                    TrustRecord(peerNode: peer, state: accepted ? .trusted : .rejected, updatedAt: Self.now, mutual: accepted), for: name)
                await relate(name, peer, accepted)
                if accepted { await report(name, peer: peer, trusted: true) }
                count(accepted ? .accepted : .refused)
            } catch {
                logger.error("cannot store a trust change", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "error": "\(error)"])
            }
        }
    }

    // MARK: Messages from peers

    /// One message that arrived on `name`'s port 444 from node `source` (authenticated by the
    /// tunnel). Bad, stale, replayed or unasked-for messages are ignored and counted.
    func received(_ bytes: [UInt8], for name: String, from source: UInt32) async {
        guard let message = try? HandshakeMessage(decoding: bytes), message.node == source,
            let record = await pool.identity(named: name)
        else { return ignore("malformed, or not from the node that sent it", name) }
        let now = Date()
        let age = now.timeIntervalSince1970 - Double(message.timestamp)
        guard age <= 300, age >= -30 else { return ignore("timestamp out of range", name) }
        seen = seen.filter { now.timeIntervalSince($0.value) < 600 }
        let digest = Sodium.sha256(bytes)
        guard seen.updateValue(now, forKey: digest) == nil else { return ignore("replayed", name) }
        var key: [UInt8]?
        if !message.publicKey.isEmpty {
            guard let publicKey = try? Ed25519PublicKey(base64: message.publicKey),
                let signature = try? Base64.decode(message.signature),
                publicKey.isValidSignature(signature, for: Array(message.signedText(receiver: record.nodeID).utf8))
            else { return ignore("bad signature", name) }
            key = publicKey.bytes
        }
        let peer = message.node
        let entry = await pool.trust(of: name, peer: peer)
        do {
            switch message.kind {
            case .request:
                switch entry?.state {
                case .trusted:
                    try? await send(name, peer, try await self.message(.accept, from: name, to: peer))
                case .pendingOut:
                    // Both asked: mutual trust.
                    try await pool.setTrust(TrustRecord(peerNode: peer, peerKey: key, state: .trusted, updatedAt: Self.now, mutual: true), for: name)
                    await relate(name, peer, true)
                    await report(name, peer: peer, trusted: true)
                    count(.mutual)
                    try? await send(name, peer, try await self.message(.accept, from: name, to: peer))
                case .none where record.autoApprove, .pendingIn where record.autoApprove, .rejected where record.autoApprove,
                    .revoked where record.autoApprove:
                    // A service identity: whoever asks is trusted at once.
                    try await pool.setTrust(
                        TrustRecord(peerNode: peer, peerKey: key, state: .trusted, reason: String(message.justification.prefix(Self.maxReason)), updatedAt: Self.now),
                        for: name)
                    await relate(name, peer, true)
                    // The asker reached us over a tunnel, so the answer needs no resolve (which,
                    // for a private asker, the report would have to precede): the registry
                    // learns of the trust while the answer is under way.
                    async let reported: Void = report(name, peer: peer, trusted: true)
                    await answer(name, peer: peer, accept: true)
                    await reported
                    count(.autoApproved)
                    logger.notice("trusted (auto-approve)", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)"])
                default:
                    // A flood of strangers' requests is bounded: past `maxPending` waiting, a
                    // new asker's request is dropped (one already waiting may ask again).
                    if entry?.state != .pendingIn, await tooManyWaiting(name) {
                        count(.dropped)
                        logger.warning("handshake request dropped: too many waiting", metadata: [
                            "PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "waiting": "\(Self.maxPending)"])
                        return
                    }
                    try await pool.setTrust(
                        TrustRecord(peerNode: peer, peerKey: key, state: .pendingIn, reason: String(message.justification.prefix(Self.maxReason)), updatedAt: Self.now),
                        for: name)
                    await relate(name, peer, true)
                    count(.received)
                    logger.notice("handshake request", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)"])
                }
            case .accept:
                guard entry?.state == .pendingOut else { return ignore("accept nobody asked for", name) }
                try await pool.setTrust(TrustRecord(peerNode: peer, peerKey: key, state: .trusted, updatedAt: Self.now, mutual: true), for: name)
                await relate(name, peer, true)
                await report(name, peer: peer, trusted: true)
                count(.accepted)
                logger.notice("trusted", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)"])
            case .reject:
                guard entry?.state == .pendingOut else { return ignore("reject nobody asked for", name) }
                try await pool.setTrust(
                    TrustRecord(peerNode: peer, peerKey: key, state: .rejected, reason: String(message.reason.prefix(Self.maxReason)), updatedAt: Self.now),
                    for: name)
                await relate(name, peer, false)
                count(.refused)
            case .revoke:
                guard let entry else { return }
                try await pool.removeTrust(peer: peer, for: name)
                await relate(name, peer, false)
                if entry.state == .trusted { await report(name, peer: peer, trusted: false) }
                count(.revokedByPeer)
            }
        } catch {
            logger.error("cannot store a trust change", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "error": "\(error)"])
        }
    }

    // MARK: Helpers

    private func ignore(_ why: String, _ name: String) {
        ignored += 1
        count(.ignored)
        logger.info("handshake message ignored", metadata: ["PILOT_IDENTITY": "\(name)", "reason": "\(why)"])
    }

    private func count(_ outcome: HandshakeOutcome) {
        outcomes[outcome, default: 0] += 1
    }

    private func identity(_ name: String) async throws -> IdentityRecord {
        guard let record = await pool.identity(named: name) else { throw PoolError.notFound(name) }
        return record
    }

    private func message(_ kind: HandshakeMessage.Kind, from name: String, to peer: UInt32, justification: String = "", reason: String = "") async throws -> HandshakeMessage {
        let record = try await identity(name)
        let key = try await pool.signingKey(of: name)
        var message = HandshakeMessage(
            kind: kind, node: record.nodeID, publicKey: key.publicKey.base64, justification: justification, reason: reason,
            timestamp: Self.now)
        message.signature = Base64.encode(key.sign(message.signedText(receiver: peer)))
        return message
    }

    /// Tells the registry, so `resolve` follows trust; a failure is logged (the trust stands).
    private func report(_ name: String, peer: UInt32, trusted: Bool) async {
        do { try await pool.reportTrust(name, peer: peer, trusted: trusted) } catch {
            logger.warning("registry did not record the trust change", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(peer)", "error": "\(error)"])
        }
    }

    private static var now: Int64 { Int64(Date().timeIntervalSince1970) }
}
