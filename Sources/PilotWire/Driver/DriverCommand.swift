/// The command byte of a driver frame: what the official daemon's Unix socket carries between
/// an SDK (or `pilotctl`) and the daemon (`docs/PROTOCOL.md §12.3`).
///
/// Replies are matched to requests by this byte alone, as the protocol has no request id. Codes
/// 0x1D/0x1E (SetTaskExec) were removed in 1.18 and 0x27, 0x28 and 0x2C are not used, so they
/// have no case; the 1.18 daemon answers them with `unknown command: 0xNN`.
public enum DriverCommand: UInt8, Sendable, CaseIterable {
    /// Request: listen on a port.
    case bind = 0x01
    /// Reply to `bind`: the port.
    case bindOK = 0x02
    /// Request: open a stream to an address and port.
    case dial = 0x03
    /// Reply to `dial`: the new connection's id.
    case dialOK = 0x04
    /// Push: a bound port accepted a connection.
    case accept = 0x05
    /// Request: stream data on a connection; never answered.
    case send = 0x06
    /// Push: stream data received on a connection.
    case recv = 0x07
    /// Request: close a connection.
    case close = 0x08
    /// Reply to `close`, and the push that says the remote end closed a connection.
    case closeOK = 0x09
    /// Reply to any request that failed: a code and a message.
    case error = 0x0A
    /// Request: send a datagram; never answered.
    case sendTo = 0x0B
    /// Push: a datagram arrived; sent to every client of the socket.
    case recvFrom = 0x0C
    /// Request: the daemon's status.
    case info = 0x0D
    /// Reply to `info`: JSON.
    case infoOK = 0x0E
    /// Request: a trust handshake operation, chosen by a sub-command byte.
    case handshake = 0x0F
    /// Reply to `handshake`: JSON.
    case handshakeOK = 0x10
    /// Request: look a hostname up at the registry.
    case resolveHostname = 0x11
    /// Reply to `resolveHostname`: JSON.
    case resolveHostnameOK = 0x12
    /// Request: set or clear this node's hostname.
    case setHostname = 0x13
    /// Reply to `setHostname`: JSON.
    case setHostnameOK = 0x14
    /// Request: make this node public or private.
    case setVisibility = 0x15
    /// Reply to `setVisibility`: JSON.
    case setVisibilityOK = 0x16
    /// Request: remove this node from the registry.
    case deregister = 0x17
    /// Reply to `deregister`: JSON.
    case deregisterOK = 0x18
    /// Request: set this node's tags.
    case setTags = 0x19
    /// Reply to `setTags`: JSON.
    case setTagsOK = 0x1A
    /// Request: set or clear the webhook URL.
    case setWebhook = 0x1B
    /// Reply to `setWebhook`: JSON.
    case setWebhookOK = 0x1C
    /// Request: a network operation, chosen by a sub-command byte.
    case network = 0x1F
    /// Reply to `network`: JSON.
    case networkOK = 0x20
    /// Request: a cheap liveness check.
    case health = 0x21
    /// Reply to `health`: JSON.
    case healthOK = 0x22
    /// Request: a managed-network operation, chosen by a sub-command byte.
    case managed = 0x23
    /// Reply to `managed`: JSON.
    case managedOK = 0x24
    /// Request: replace this node's identity key.
    case rotateKey = 0x25
    /// Reply to `rotateKey`: JSON.
    case rotateKeyOK = 0x26
    /// Request: send a datagram to every member of a network (admin token).
    case broadcast = 0x29
    /// Reply to `broadcast`: empty.
    case broadcastOK = 0x2A
    /// Request: abandon every dial this client has in flight; never answered.
    case cancel = 0x2B
    /// Request: drop the tunnel to a peer and look for a direct path again.
    case preferDirect = 0x2D
    /// Reply to `preferDirect`: JSON.
    case preferDirectOK = 0x2E
    /// Request: attach a verified-address badge (JSON).
    case submitBadge = 0x2F
    /// Reply to `submitBadge`: JSON.
    case submitBadgeOK = 0x30
    /// Request: record a recovery commitment (JSON).
    case enrollRecovery = 0x31
    /// Reply to `enrollRecovery`: JSON.
    case enrollRecoveryOK = 0x32
    /// Request: sign a request-signature envelope (JSON).
    case signEnvelope = 0x33
    /// Reply to `signEnvelope`: JSON.
    case signEnvelopeOK = 0x34
    /// Request: check a peer's request-signature envelope (JSON).
    case verifyEnvelope = 0x35
    /// Reply to `verifyEnvelope`: JSON.
    case verifyEnvelopeOK = 0x36
    /// Request: stop listening on a port this client bound.
    case unbind = 0x37
    /// Reply to `unbind`: the port.
    case unbindOK = 0x38
    /// Request: send a datagram and say whether it left.
    case sendToConfirm = 0x39
    /// Reply to `sendToConfirm`: empty.
    case sendToConfirmOK = 0x3A

    /// The command's name for logs and messages, upper camel case: `Info`, `BindOK`.
    public var name: String {
        let caseName = String(describing: self)
        return caseName.prefix(1).uppercased() + caseName.dropFirst()
    }
}
