import NIOCore
import PilotCrypto

/// The session between one local identity and one remote node: the AES-256-GCM key derived
/// from the two X25519 keys, this side's counter, the replay windows of the remote's epochs.
/// Confined to the fabric's event loop.
final class Tunnel {
    let local: UInt32
    let remote: UInt32
    /// The remote's X25519 key the session was derived from: a `PILA` with the same key
    /// does not reset the session (as 1.18 does).
    let remoteExchangeKey: [UInt8]
    let cipher: TunnelCipher
    var window = ReplayWindow()
    /// The remote's nonce prefixes seen on this session (their epochs), to forget on replacement.
    var prefixes: Set<UInt32> = []
    let established: NIODeadline
    var lastReceived: NIODeadline
    var lastSent: NIODeadline
    /// When this side last answered a same-key `PILA` or a `PILK` (at most once a second).
    var lastAnswered: NIODeadline = .uptimeNanoseconds(0)
    /// What this session carried.
    var traffic = TunnelTraffic()

    init(local: UInt32, remote: UInt32, remoteExchangeKey: [UInt8], key: SecretBytes, now: NIODeadline) throws {
        self.local = local
        self.remote = remote
        self.remoteExchangeKey = remoteExchangeKey
        cipher = try TunnelCipher(key: key)
        established = now
        lastReceived = now
        lastSent = now
    }
}
