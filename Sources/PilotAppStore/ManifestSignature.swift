public import PilotCrypto
import PilotWire

/// The publisher's Ed25519 signature of a manifest, computed as the official store computes
/// it: over `publisher:id:manifest_version:binary.sha256:hex(sha256(grants as Go JSON))`. The
/// signature binds the binary and the grants to the publisher; `exposes`, `app_version` and
/// the rest are not signed (the official store's choice), so callers never trust them for
/// authority beyond what the grants allow.
public enum ManifestSignature {
    /// The bytes that are signed.
    public static func payload(of manifest: Manifest) -> [UInt8] {
        let grantsHash = Sodium.sha256(GoJSON.encode(grants: manifest.grants))
        let text = "\(manifest.store.publisher):\(manifest.id):\(manifest.manifestVersion):\(manifest.binary.sha256):"
            + Hex.lowercase(grantsHash)
        return Array(text.utf8)
    }

    /// The publisher key named in `store.publisher` (`ed25519:<base64 of 32 bytes>`).
    public static func publisherKey(_ publisher: String) throws(AppStoreError) -> Ed25519PublicKey {
        guard publisher.hasPrefix("ed25519:") else {
            throw .malformed(document: "store.publisher", reason: "must be \"ed25519:<base64>\"")
        }
        do { return try Ed25519PublicKey(base64: String(publisher.dropFirst("ed25519:".count))) } catch {
            throw .malformed(document: "store.publisher", reason: "not a base64 Ed25519 public key")
        }
    }

    /// Checks `store.signature` with the key in `store.publisher`.
    public static func verify(_ manifest: Manifest) throws(AppStoreError) {
        let key = try publisherKey(manifest.store.publisher)
        var text = Substring(manifest.store.signature)
        if text.hasPrefix("ed25519:") { text = text.dropFirst("ed25519:".count) }
        guard let signature = try? Base64.decode(text), signature.count == Ed25519PublicKey.signatureSize,
            key.isValidSignature(signature, for: payload(of: manifest))
        else { throw .badSignature(id: manifest.id) }
    }

    /// Checks that the manifest's publisher is the key the signed catalogue pins for its id:
    /// the trust anchor of a catalogue install. An unpinned id fails closed.
    public static func verifyPin(_ manifest: Manifest, pinnedPublisher: String?) throws(AppStoreError) {
        guard let pinnedPublisher, !pinnedPublisher.isEmpty else {
            throw .publisherNotPinned(id: manifest.id, publisher: manifest.store.publisher, pinned: nil)
        }
        let ours = try publisherKey(manifest.store.publisher)
        let pinned: Ed25519PublicKey
        do {
            pinned = try publisherKey(pinnedPublisher.hasPrefix("ed25519:") ? pinnedPublisher : "ed25519:" + pinnedPublisher)
        } catch {
            throw .publisherNotPinned(id: manifest.id, publisher: manifest.store.publisher, pinned: pinnedPublisher)
        }
        guard ours == pinned else {
            throw .publisherNotPinned(id: manifest.id, publisher: manifest.store.publisher, pinned: pinnedPublisher)
        }
    }

    /// Signs `manifest` with `key`: sets `store.publisher` to the key and `store.signature` to
    /// the base64 signature, as `pilotctl appstore sign` does.
    public static func sign(_ manifest: inout Manifest, with key: Ed25519PrivateKey) {
        manifest.store.publisher = "ed25519:" + key.publicKey.base64
        manifest.store.signature = Base64.encode(key.sign(payload(of: manifest)))
    }
}
