/// Why an app store document (manifest, catalogue, envelope, key file) was refused. Each case
/// names the document and says what is wrong, in words a publisher or operator can act on.
public enum AppStoreError: Error, Hashable, Sendable {
    /// The bytes are not JSON, or a field has the wrong JSON type.
    case malformed(document: String, reason: String)
    /// The manifest breaks the schema; every problem found is listed.
    case invalidManifest(id: String, problems: [String])
    /// The manifest's `store.signature` does not verify with its `store.publisher` key over
    /// the signed fields (publisher, id, manifest version, binary hash, grants).
    case badSignature(id: String)
    /// The manifest's publisher is not the key the signed catalogue pins for this id.
    case publisherNotPinned(id: String, publisher: String, pinned: String?)
    /// A sideloaded manifest asks for more than the sideload policy allows.
    case sideloadRefused(id: String, reason: String)
    /// The catalogue's detached signature is missing, malformed, or made by no trusted key.
    case untrustedCatalogue(reason: String)
    /// The catalogue names no app with this id (or only a hidden, renamed entry).
    case unknownApp(id: String)
    /// A publisher key file is not 64 bytes of hex (seed ‖ public key) or does not match.
    case badKeyFile(path: String, reason: String)
    /// An IPC frame broke the framing rules (zero length, over the limit, not an envelope).
    case badFrame(reason: String)
}

extension AppStoreError: CustomStringConvertible {
    /// One line for logs and error answers.
    public var description: String {
        switch self {
        case let .malformed(document, reason): "\(document): \(reason)"
        case let .invalidManifest(id, problems):
            "manifest \(id.isEmpty ? "(no id)" : id) is invalid: " + problems.joined(separator: "; ")
        case let .badSignature(id):
            "manifest \(id): store.signature does not verify with store.publisher over the signed fields"
                + " (publisher, id, manifest_version, binary.sha256, grants)"
        case let .publisherNotPinned(id, publisher, pinned):
            if let pinned {
                "manifest \(id): publisher \(publisher) is not the key the catalogue pins for it (\(pinned))"
            } else {
                "manifest \(id): the signed catalogue pins no publisher for it"
            }
        case let .sideloadRefused(id, reason): "sideloaded \(id) refused: \(reason)"
        case let .untrustedCatalogue(reason): "catalogue refused: \(reason)"
        case let .unknownApp(id): "the catalogue has no app \(id)"
        case let .badKeyFile(path, reason): "publisher key \(path): \(reason)"
        case let .badFrame(reason): "app IPC frame refused: \(reason)"
        }
    }
}
