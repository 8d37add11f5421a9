public import PilotCrypto
import PilotWire

/// The official app catalogue (`catalogue.json`, versions 1 and 2): which apps exist, where
/// their bundles are, their SHA-256 and the publisher key pinned for each id. It is trusted
/// only through its detached signature (`catalogue.json.sig`: base64 Ed25519 over the exact
/// bytes), checked against the keys the host's configuration names; fail-closed.
public struct Catalogue: Hashable, Sendable {
    /// 1 or 2; 3 and later are refused, as the official client refuses them.
    public var version: Int
    /// When the catalogue was published (RFC 3339 text, as written).
    public var updatedAt: String
    public var apps: [Entry]

    /// One app in the catalogue.
    public struct Entry: Hashable, Sendable {
        public var id: String
        public var version: String
        public var description: String
        /// The default bundle, and per-platform ones (`linux/amd64` …) in version 2.
        public var bundle: Bundle?
        public var platformBundles: [String: Bundle]
        /// The publisher key pinned for this id: the manifest's `store.publisher` must match.
        public var publisher: String
        public var displayName: String
        public var vendor: String
        public var categories: [String]
        public var bundleSize: Int
        public var sourceURL: String
        public var license: String
        public var metadataURL: String
        public var metadataSHA256: String
        /// A tombstone: the app moved to another id.
        public var renamedTo: String
        /// Not listed, not installable by id (tombstones, withdrawn apps).
        public var hidden: Bool

        /// The bundle for `platform` (Go's `os/arch`, e.g. `linux/amd64`), else the default one.
        public func bundle(for platform: String) -> Bundle? { platformBundles[platform] ?? bundle }
    }

    /// A bundle's address and hash.
    public struct Bundle: Hashable, Sendable {
        public var url: String
        /// 64 lowercase hex digits.
        public var sha256: String

        public init(url: String, sha256: String) {
            self.url = url
            self.sha256 = sha256
        }
    }

    /// This machine's platform in the catalogue's `os/arch` words.
    public static var hostPlatform: String {
        #if arch(x86_64)
            "linux/amd64"
        #elseif arch(arm64)
            "linux/arm64"
        #else
            "linux/unknown"
        #endif
    }

    /// Checks `signature` (the text of `catalogue.json.sig`) over the exact `bytes` with any
    /// of `trustedKeys`, then decodes. Nothing is decoded from an unverified catalogue.
    public init(verifying bytes: [UInt8], signature: [UInt8], trustedKeys: [Ed25519PublicKey]) throws(AppStoreError) {
        guard !trustedKeys.isEmpty else { throw .untrustedCatalogue(reason: "no catalogue key is configured") }
        let text = String(decoding: signature, as: UTF8.self).trimmingWhitespace
        guard let signatureBytes = try? Base64.decode(text), signatureBytes.count == Ed25519PublicKey.signatureSize else {
            throw .untrustedCatalogue(reason: "catalogue.json.sig is not a base64 Ed25519 signature")
        }
        guard trustedKeys.contains(where: { $0.isValidSignature(signatureBytes, for: bytes) }) else {
            throw .untrustedCatalogue(reason: "the signature verifies with none of the \(trustedKeys.count) trusted catalogue key(s)")
        }
        try self.init(parsing: bytes)
    }

    /// Decodes without checking a signature: for the publisher's own tools and tests only.
    public init(parsing bytes: [UInt8]) throws(AppStoreError) {
        let json: JSON
        do { json = try JSON(parsing: bytes) } catch { throw .malformed(document: "catalogue.json", reason: "\(error)") }
        guard case .object = json else { throw .malformed(document: "catalogue.json", reason: "expected a JSON object") }
        let root = try JSONFields(json, document: "catalogue.json")
        version = try root.integer("version")
        guard version == 1 || version == 2 else {
            throw .malformed(document: "catalogue.json", reason: "version \(version) is not supported (1 or 2)")
        }
        updatedAt = try root.string("updated_at")
        apps = try root.objects("apps") { (fields: JSONFields) throws(AppStoreError) -> Entry in try Entry(fields) }
        var seen = Set<String>()
        for entry in apps {
            guard seen.insert(entry.id).inserted else {
                throw .malformed(document: "catalogue.json", reason: "app \(entry.id) is listed twice")
            }
        }
    }

    /// The installable entry for `id`: not hidden. A tombstone's error names the new id.
    public func entry(id: String) throws(AppStoreError) -> Entry {
        guard let entry = apps.first(where: { $0.id == id }) else { throw .unknownApp(id: id) }
        if !entry.renamedTo.isEmpty {
            throw .malformed(document: "catalogue.json", reason: "app \(id) was renamed to \(entry.renamedTo)")
        }
        guard !entry.hidden else { throw .unknownApp(id: id) }
        return entry
    }

    /// Listed entries whose id, name, description, vendor or categories contain `word`
    /// (case-insensitive); all listed entries without a word.
    public func search(_ word: String?) -> [Entry] {
        let listed = apps.filter { !$0.hidden && $0.renamedTo.isEmpty }
        guard let word, !word.isEmpty else { return listed }
        let needle = word.lowercased()
        return listed.filter { entry in
            ([entry.id, entry.displayName, entry.description, entry.vendor] + entry.categories).contains {
                $0.lowercased().contains(needle)
            }
        }
    }
}

extension Catalogue.Entry {
    init(_ fields: JSONFields) throws(AppStoreError) {
        id = try fields.string("id")
        guard Manifest.isReverseDNS(id) else {
            throw .malformed(document: fields.document, reason: "id \"\(id)\" must be reverse-DNS-shaped")
        }
        version = try fields.string("version")
        description = try fields.string("description")
        let url = try fields.string("bundle_url")
        let sha = try fields.string("bundle_sha256")
        bundle = url.isEmpty && sha.isEmpty ? nil : try Self.bundle(url: url, sha256: sha, document: fields.document)
        var platforms: [String: Catalogue.Bundle] = [:]
        let bundles = try fields.object("bundles")
        for (platform, value) in bundles.members {
            let bundleFields = try JSONFields(value, document: "\(fields.document) bundles[\(platform)]")
            platforms[platform] = try Self.bundle(
                url: try bundleFields.string("bundle_url"), sha256: try bundleFields.string("bundle_sha256"),
                document: bundleFields.document)
        }
        platformBundles = platforms
        publisher = try fields.string("publisher")
        displayName = try fields.string("display_name")
        vendor = try fields.string("vendor")
        categories = try fields.strings("categories")
        bundleSize = try fields.integer("bundle_size")
        sourceURL = try fields.string("source_url")
        license = try fields.string("license")
        metadataURL = try fields.string("metadata_url")
        metadataSHA256 = try fields.string("metadata_sha256")
        renamedTo = try fields.string("renamed_to")
        hidden = fields.members["hidden"]?.boolValue ?? false
        if renamedTo.isEmpty, !hidden, bundle == nil, platformBundles.isEmpty {
            throw .malformed(document: fields.document, reason: "app \(id) has no bundle_url/bundle_sha256")
        }
    }

    private static func bundle(url: String, sha256: String, document: String) throws(AppStoreError) -> Catalogue.Bundle {
        guard !url.isEmpty else { throw .malformed(document: document, reason: "bundle_url is empty") }
        let hash = sha256.lowercased()
        guard Hex.isLowercase(hash, bytes: 32) else {
            throw .malformed(document: document, reason: "bundle_sha256 must be 64 hex digits")
        }
        return Catalogue.Bundle(url: url, sha256: hash)
    }
}
