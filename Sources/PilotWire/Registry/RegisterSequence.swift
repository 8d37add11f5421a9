/// pilot-rendezvous's extension to 1.18's `register`: a signed registration sequence, so that a
/// captured registration cannot be replayed to move a node back to where it was registered
/// before (an identity moved to another host, docs/PROTOCOL.md §8.6).
///
/// 1.18 signs `register:<listen_addr>:<public_key>`, which names no time: the same message is
/// valid forever, from any address. In this form the request also carries `sequence` (an
/// integer above any the node registered with before; pilot-host uses microseconds since 1970)
/// and `sequence_signature` over `text(...)`. A registry that takes the form says
/// `"signed_values": 1` in `register_ok`; once a node registered with a sequence, that registry
/// refuses its registrations that carry none or a sequence not above the last.
public enum RegisterSequence {
    /// The request field of the sequence.
    public static let field = "sequence"
    /// The request field of its signature.
    public static let signatureField = "sequence_signature"

    /// `register-sequence:<public_key>:<listen_addr>:<sequence>`: the key and the address as
    /// sent in the same request, the sequence in decimal.
    public static func text(publicKey: String, listenAddress: String, sequence: Int64) -> String {
        "register-sequence:\(publicKey):\(listenAddress):\(sequence)"
    }
}
