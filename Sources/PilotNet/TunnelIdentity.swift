public import PilotCrypto
public import PilotWire

/// What the data plane holds of one local identity: its address, its own X25519 tunnel key (one
/// per identity, never shared by the host: docs/ARCHITECTURE.md, "One socket, many identities",
/// and docs/PROTOCOL.md §6), and its key-exchange frames, signed once.
public final class TunnelIdentity: Sendable {
    /// The identity's overlay address.
    public let address: Address
    /// Its node id, what tunnels and the port table key it by.
    public var node: UInt32 { address.node }
    let exchangeKey: X25519KeyPair
    /// `PILA`: node, X25519 key, Ed25519 key, signature over "auth" ‖ node ‖ X25519 key.
    let authenticatedExchange: [UInt8]
    /// `PILK`: node and X25519 key; 1.18 reads it as "send me your PILA".
    let keyRequest: [UInt8]

    /// A fresh X25519 key for `address`, its `PILA` signed by `signingKey` (the identity's
    /// registered Ed25519 key: the receiver checks the two against the registry).
    public convenience init(address: Address, signingKey: Ed25519PrivateKey) throws {
        try self.init(address: address, exchangeKey: try X25519KeyPair(), signingKey: signingKey)
    }

    /// The same address and X25519 key, its `PILA` signed by `signingKey` instead (a key
    /// rotation): sessions keyed with the X25519 key go on, and the next exchanges carry the
    /// new key.
    public func resigned(by signingKey: Ed25519PrivateKey) throws -> TunnelIdentity {
        try TunnelIdentity(address: address, exchangeKey: exchangeKey, signingKey: signingKey)
    }

    private init(address: Address, exchangeKey: X25519KeyPair, signingKey: Ed25519PrivateKey) throws {
        self.address = address
        self.exchangeKey = exchangeKey
        let signature = signingKey.sign(AuthenticatedKeyExchange.signedMessage(node: address.node, x25519: exchangeKey.publicKey))
        authenticatedExchange = TunnelFrame.authenticatedKeyExchange(
            try AuthenticatedKeyExchange(
                node: address.node, x25519: exchangeKey.publicKey, ed25519: signingKey.publicKey.bytes, signature: signature)
        ).encoded()
        keyRequest = TunnelFrame.keyExchange(try KeyExchange(node: address.node, x25519: exchangeKey.publicKey)).encoded()
    }
}
