import FoundationEssentials
import PilotCrypto
import PilotWire

/// The numbers that only go up, which the registry holds each identity to: the nonces of
/// changes signed over their values (`SignedChange`) and the sequences of registrations
/// (`RegisterSequence`), both microseconds since 1970 or one more than the last.
extension IdentityPool {
    /// A number above every one this pool handed out before, and above `lastNonce` as an
    /// imported identity raised it (`IdentityPool+Move.swift`).
    func nextNonce() -> Int64 {
        lastNonce = max(lastNonce + 1, Int64(Date().timeIntervalSince1970 * 1_000_000))
        return lastNonce
    }

    /// What `register` carries besides 1.18's fields: a fresh sequence and its signature over
    /// the key and `listenAddress` as the request sends them.
    func sequenceFields(_ key: Ed25519PrivateKey, listenAddress: String) -> [String: JSON] {
        let sequence = nextNonce()
        let text = RegisterSequence.text(publicKey: key.publicKey.base64, listenAddress: listenAddress, sequence: sequence)
        return [RegisterSequence.field: .integer(sequence), RegisterSequence.signatureField: .string(Base64.encode(key.sign(text)))]
    }

    /// The last number handed out; an identity moved here raises it to what its old host used,
    /// so that a host whose clock is behind still registers it with a newer sequence.
    func raiseNonce(to floor: Int64) { lastNonce = max(lastNonce, floor) }
}
