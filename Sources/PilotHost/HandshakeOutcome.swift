/// How one step of a trust handshake went, as the metrics count it
/// (`pilot_host_trust_handshakes_total{outcome}`): a fixed set, whatever peers send.
enum HandshakeOutcome: String, CaseIterable, Sendable {
    /// This identity asked a peer, directly or (`sentRelayed`) through the registry.
    case sent
    case sentRelayed = "sent_relayed"
    /// A peer asked, and the request waits for the owner's answer.
    case received
    /// A peer asked and was trusted at once: an auto-approving identity, or both had asked.
    case autoApproved = "auto_approved"
    case mutual
    /// The owner approved or rejected a peer's request.
    case approved
    case rejected
    /// A peer accepted or rejected this identity's request.
    case accepted
    case refused
    /// Trust revoked, by the owner or by the peer.
    case revoked
    case revokedByPeer = "revoked_by_peer"
    /// A request dropped because too many waited, and messages ignored (bad, stale, replayed,
    /// unasked for).
    case dropped
    case ignored
}
