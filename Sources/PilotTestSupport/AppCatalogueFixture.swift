import Foundation
public import PilotAppStore
public import PilotCrypto
import PilotWire

/// A catalogue made for a test, as a publisher makes one: bundles (tar.gz) with signed
/// manifests, the catalogue and its detached signature. Hostile variants (a path escaping the
/// bundle, a link, a grant changed after signing, a bundle whose hash is not the catalogue's)
/// are made on purpose. Tarballs are written with Python's `tarfile`, which writes any member
/// asked for, so the reader under test meets what an attacker could send.
public final class AppCatalogueFixture {
    /// One tar member.
    public struct Member {
        public enum Kind: String { case file, directory, symlink, hardlink, fifo, characterDevice, blockDevice }
        public var name: String
        public var kind: Kind
        public var data: [UInt8]
        public var mode: Int
        public var link: String

        public init(_ name: String, _ kind: Kind = .file, data: [UInt8] = [], mode: Int = 0o644, link: String = "") {
            (self.name, self.kind, self.data, self.mode, self.link) = (name, kind, data, mode, link)
        }
    }

    public let directory: String
    public let publisher: Ed25519PrivateKey
    public let catalogueKey: Ed25519PrivateKey
    private var entries: [JSON] = []

    public init(directory: String) throws {
        self.directory = directory
        publisher = try Ed25519PrivateKey()
        catalogueKey = try Ed25519PrivateKey()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// The catalogue's URL and the key that signs it, for pilot-host's settings.
    public var catalogueURL: String { "file://" + directory + "/catalogue.json" }
    public var catalogueKeyText: String { catalogueKey.publicKey.base64 }

    /// A manifest for `id` whose binary is `binary`, signed by `signer` (the publisher by default).
    public func manifest(
        id: String, version: String = "1.0.0", manifestVersion: Int = 1, binaryPath: String = "bin/app", binary: [UInt8],
        exposes: [String], grants: [Manifest.Grant], signer: Ed25519PrivateKey? = nil
    ) -> Manifest {
        var manifest = Manifest(
            id: id, appVersion: version, manifestVersion: manifestVersion,
            binary: .init(runtime: "go", path: binaryPath, sha256: Hex.lowercase(Sodium.sha256(binary))), exposes: exposes, grants: grants,
            protection: "shareable", store: .init(publisher: "", signature: ""))
        ManifestSignature.sign(&manifest, with: signer ?? publisher)
        return manifest
    }

    /// The manifest's JSON as a publisher writes it.
    public static func json(of manifest: Manifest) -> [UInt8] {
        var grants: [JSON] = []
        for grant in manifest.grants { grants.append(["cap": .string(grant.cap), "target": .string(grant.target)]) }
        let object: JSON = [
            "id": .string(manifest.id), "app_version": .string(manifest.appVersion),
            "manifest_version": .integer(Int64(manifest.manifestVersion)),
            "binary": ["runtime": .string(manifest.binary.runtime), "path": .string(manifest.binary.path), "sha256": .string(manifest.binary.sha256)],
            "exposes": .array(manifest.exposes.map(JSON.string)), "grants": .array(grants), "protection": .string(manifest.protection),
            "store": ["publisher": .string(manifest.store.publisher), "signature": .string(manifest.store.signature)],
        ]
        return Array(object.prettyEncoded(escapeHTML: true).utf8)
    }

    /// Writes a bundle of `members` as `name`.tar.gz and lists it in the catalogue for `id`,
    /// with the bundle's real hash unless `listedHash` says otherwise, pinned to `pinned`
    /// (the publisher by default). Returns the bundle's hash.
    @discardableResult
    public func addBundle(
        id: String, version: String = "1.0.0", members: [Member], listedHash: String? = nil, pinned: Ed25519PublicKey? = nil
    ) throws -> String {
        let file = "\(id)-\(version).tar.gz"
        try Self.writeTarball(members, to: directory + "/" + file)
        let hash = Hex.lowercase(Sodium.sha256(Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file)))))
        entries.removeAll { $0["id"]?.stringValue == id }
        entries.append([
            "id": .string(id), "version": .string(version), "description": "a test app", "categories": ["test"],
            "publisher": .string(PublisherKey.publisher(pinned ?? publisher.publicKey)), "bundle_url": .string(file),
            "bundle_sha256": .string(listedHash ?? hash),
        ])
        return hash
    }

    /// The members of a well-made bundle: its manifest and its binary (executable).
    public static func members(_ manifest: Manifest, binary: [UInt8]) -> [Member] {
        [Member("manifest.json", data: json(of: manifest)), Member("bin", .directory, mode: 0o755), Member(manifest.binary.path, data: binary, mode: 0o755)]
    }

    /// Writes catalogue.json and its signature (by the catalogue key unless `signer` is given).
    public func writeCatalogue(signer: Ed25519PrivateKey? = nil) throws {
        let bytes = JSON.object(["version": 2, "updated_at": "2026-12-05T00:00:00Z", "apps": .array(entries)]).prettyEncoded()
        try Data(bytes.utf8).write(to: URL(fileURLWithPath: directory + "/catalogue.json"))
        let signature = Base64.encode((signer ?? catalogueKey).sign(Array(bytes.utf8)))
        try Data(signature.utf8).write(to: URL(fileURLWithPath: directory + "/catalogue.json.sig"))
    }

    private static let tarWriter = """
        import base64, io, json, sys, tarfile
        spec = json.load(open(sys.argv[1]))
        with tarfile.open(sys.argv[2], "w:gz", format=tarfile.GNU_FORMAT) as tar:
            for m in spec:
                info = tarfile.TarInfo(m["name"])
                info.mode = m["mode"]
                info.mtime = 0
                data = base64.b64decode(m["data"])
                kinds = {"file": tarfile.REGTYPE, "directory": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                         "characterDevice": tarfile.CHRTYPE, "blockDevice": tarfile.BLKTYPE}
                info.type = kinds[m["kind"]]
                info.linkname = m["link"]
                if m["kind"] == "file":
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.addfile(info)
        """

    /// A gzip-compressed tar of `members`, exactly as listed.
    public static func writeTarball(_ members: [Member], to path: String) throws {
        let spec = JSON.array(members.map { member in
            [
                "name": .string(member.name), "kind": .string(member.kind.rawValue), "data": .string(Base64.encode(member.data)),
                "mode": .integer(Int64(member.mode)), "link": .string(member.link),
            ]
        })
        let specPath = path + ".spec.json"
        let scriptPath = path + ".writer.py"
        try Data(spec.encoded()).write(to: URL(fileURLWithPath: specPath))
        try Data(tarWriter.utf8).write(to: URL(fileURLWithPath: scriptPath))
        defer {
            try? FileManager.default.removeItem(atPath: specPath)
            try? FileManager.default.removeItem(atPath: scriptPath)
        }
        let result = ChildProcess.run("/usr/bin/python3", [scriptPath, specPath, path])
        guard result.status == 0 else { throw SocketError(description: "python3 tarfile failed: \(result.output)") }
    }
}
