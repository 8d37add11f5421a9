import Glibc
import Logging
import PilotAppStore
import PilotCrypto
import PilotWire

/// `prepare`: an app's bundle from the catalogue into the store, checked all the way: the
/// catalogue's signature, the bundle's hash against the catalogue before unpacking, the manifest
/// (schema, the publisher's signature, the catalogue's pin of that publisher for the id) and the
/// binary's hash against the manifest. A bundle that fails after unpacking leaves the store.
struct BundlePreparer: Sendable {
    let layout: AppStoreLayout
    let bundles: BundleStore
    let catalogues: CatalogueCache
    let downloader: Downloader
    let logger: Logger

    /// The largest bundle fetched, as the official store allows.
    static let maxBundleBytes = 128 << 20
    /// The largest manifest read.
    static let maxManifestBytes = 1 << 20

    func prepare(_ command: AppServiceControl.Prepare) async throws(ControlFailure) -> AppPlan {
        let fetched = try await catalogues.catalogue(command.source)
        let entry: Catalogue.Entry
        do { entry = try fetched.catalogue.entry(id: command.app) } catch { throw ControlFailure(.notFound, error.description) }
        if let version = command.version, version != entry.version {
            throw ControlFailure(.notFound, "the catalogue offers \(entry.id) \(entry.version) only, not \(version)")
        }
        guard let bundle = entry.bundle(for: Catalogue.hostPlatform) else {
            throw ControlFailure(.notFound, "the catalogue has no bundle of \(entry.id) for \(Catalogue.hostPlatform)")
        }
        let directory: String
        if let present = bundles.directory(for: bundle.sha256) {
            directory = present
        } else {
            directory = try await fetchAndUnpack(bundle, catalogueURL: fetched.url, app: entry.id)
        }
        let manifest: Manifest
        do {
            manifest = try Self.verifiedManifest(in: directory, app: entry.id, pinnedPublisher: entry.publisher, requireHelp: true)
        } catch {
            // The catalogue vouched for these bytes, but they are not a valid app: nothing keeps them.
            try? bundles.remove(sha256: bundle.sha256)
            logger.error("bundle refused", metadata: ["app": "\(entry.id)", "bundle": "\(bundle.sha256)", "error": "\(error)"])
            throw error
        }
        return AppPlan(
            app: manifest.id, version: manifest.appVersion, manifestVersion: manifest.manifestVersion, bundleSHA256: bundle.sha256,
            publisher: manifest.store.publisher, description: entry.description, runtime: manifest.binary.runtime, exposes: manifest.exposes,
            grants: manifest.grants.map(Self.grant), installedVersion: nil, needsApproval: true)
    }

    private func fetchAndUnpack(_ bundle: Catalogue.Bundle, catalogueURL: String, app: String) async throws(ControlFailure) -> String {
        guard AppStoreLayout.makeDirectories(layout.downloads, mode: 0o700) else {
            throw ControlFailure(.internalError, "cannot make \(layout.downloads): \(String(cString: strerror(errno)))")
        }
        let file = layout.downloads + "/\(bundle.sha256)-\(UInt64.random(in: 0...UInt64.max)).tar.gz"
        defer { unlink(file) }
        do {
            let source = try DownloadSource(parsing: catalogueURL).resolving(bundle.url)
            try await downloader.fetch(source, to: file, maxBytes: Self.maxBundleBytes, timeout: .seconds(600))
        } catch {
            throw ControlFailure(.connectionFailed, "\(app): the bundle could not be fetched: \(error)")
        }
        do {
            let directory = try bundles.unpack(bundleAt: file, expectedSHA256: bundle.sha256)
            logger.notice("bundle unpacked", metadata: ["app": "\(app)", "bundle": "\(bundle.sha256)"])
            return directory
        } catch {
            throw ControlFailure(.invalidArgument, "\(app): the bundle was refused: \(error)")
        }
    }

    /// Bundles staged for a sideload, at most this many at once, each at most this large.
    static let maxStaged = 8
    static let maxSideloadBytes = 128 << 20

    /// Adds a piece to the staged sideload bundle `token` (`downloads/<token>.sideload`); pieces
    /// come in order.
    func stage(_ command: AppServiceControl.Stage) throws(ControlFailure) {
        guard AppStoreLayout.isSafeName(command.token), command.token.utf8.count >= 16 else {
            throw ControlFailure(.invalidArgument, "stage: a token of 16 to 128 letters and digits")
        }
        guard let piece = try? Base64.decode(command.data) else { throw ControlFailure(.invalidArgument, "stage: data must be base64") }
        guard AppStoreLayout.makeDirectories(layout.downloads, mode: 0o700) else {
            throw ControlFailure(.internalError, "cannot make \(layout.downloads): \(String(cString: strerror(errno)))")
        }
        let path = layout.downloads + "/\(command.token).sideload"
        if command.offset == 0 {
            let staged = (AppStoreLayout.names(in: layout.downloads) ?? []).filter { $0.hasSuffix(".sideload") }
            guard staged.count < Self.maxStaged else { throw ControlFailure(.unavailable, "\(Self.maxStaged) sideloads are being staged: try again") }
        }
        let file = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard file >= 0 else { throw ControlFailure(.internalError, "cannot stage \(path): \(String(cString: strerror(errno)))") }
        defer { close(file) }
        var status = stat()
        guard fstat(file, &status) == 0, Int(status.st_size) == command.offset else {
            unlink(path)
            throw ControlFailure(.invalidArgument, "stage: pieces out of order; the staged bundle was dropped")
        }
        guard command.offset + piece.count <= Self.maxSideloadBytes else {
            unlink(path)
            throw ControlFailure(.invalidArgument, "a sideloaded bundle may hold at most \(Self.maxSideloadBytes) bytes")
        }
        let written = piece.withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
        guard written == piece.count else {
            unlink(path)
            throw ControlFailure(.internalError, "cannot stage \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// The staged bundle into the store, checked under the sideload policy.
    func prepareLocal(_ command: AppServiceControl.PrepareLocal) throws(ControlFailure) -> AppPlan {
        guard AppStoreLayout.isSafeName(command.token) else { throw ControlFailure(.invalidArgument, "prepare-local: a bad token") }
        let path = layout.downloads + "/\(command.token).sideload"
        defer { unlink(path) }
        guard let bytes = AppStoreLayout.readRegularFile(path, limit: Self.maxSideloadBytes) else {
            throw ControlFailure(.notFound, "no staged bundle \(command.token)")
        }
        let hash = Hex.lowercase(Sodium.sha256(bytes))
        let directory: String
        do { directory = try bundles.unpack(bundleAt: path, expectedSHA256: hash) } catch {
            throw ControlFailure(.invalidArgument, "the sideloaded bundle was refused: \(error)")
        }
        let manifest: Manifest
        do throws(ControlFailure) {
            guard let text = AppStoreLayout.readRegularFile(directory + "/manifest.json", limit: Self.maxManifestBytes) else {
                throw ControlFailure(.invalidArgument, "the bundle has no readable manifest.json")
            }
            manifest = try Self.verifiedManifest(in: directory, app: (try? Manifest(parsing: text))?.id ?? "", pinnedPublisher: "", requireHelp: false, sideloaded: true)
        } catch {
            try? bundles.remove(sha256: hash)
            throw error
        }
        return AppPlan(
            app: manifest.id, version: manifest.appVersion, manifestVersion: manifest.manifestVersion, bundleSHA256: hash,
            publisher: manifest.store.publisher, description: "sideloaded", runtime: manifest.binary.runtime, exposes: manifest.exposes,
            grants: manifest.grants.map(Self.grant), installedVersion: nil, needsApproval: true)
    }

    /// The manifest in `directory`, checked: schema, the id asked for, the publisher's
    /// signature, the pinned publisher, and the binary's hash (read from the store, links refused).
    /// A sideloaded app has no signature to check: the sideload policy bounds its grants instead.
    static func verifiedManifest(
        in directory: String, app: String, pinnedPublisher: String, requireHelp: Bool, sideloaded: Bool = false
    ) throws(ControlFailure) -> Manifest {
        guard let bytes = AppStoreLayout.readRegularFile(directory + "/manifest.json", limit: maxManifestBytes) else {
            throw ControlFailure(.invalidArgument, "\(app): the bundle has no readable manifest.json (a regular file of at most 1 MiB)")
        }
        let manifest: Manifest
        do {
            manifest = try Manifest(parsing: bytes)
            try manifest.validate(requireHelp: requireHelp)
            guard manifest.id == app else {
                throw AppStoreError.malformed(document: "manifest.json", reason: "its id is \(manifest.id), the catalogue entry is \(app)")
            }
            if sideloaded {
                try manifest.checkSideloadPolicy()
            } else {
                try ManifestSignature.verify(manifest)
                try ManifestSignature.verifyPin(manifest, pinnedPublisher: pinnedPublisher)
            }
        } catch {
            throw ControlFailure(.invalidArgument, "\(error)")
        }
        do {
            _ = try VerifiedBinary.open(
                storeDirectory: directory, relativePath: manifest.binary.path, expectedSHA256: manifest.binary.sha256, maxBytes: 64 << 20)
        } catch {
            throw ControlFailure(.invalidArgument, "\(app): \(error)")
        }
        return manifest
    }

    static func grant(_ grant: Manifest.Grant) -> AppGrant {
        AppGrant(cap: grant.cap, target: grant.target, condition: grant.condition.map(conditionJSON))
    }

    static func conditionJSON(_ condition: Manifest.Condition) -> JSON {
        var members: [String: JSON] = [:]
        switch condition {
        case let .leaf(kind, params):
            members["kind"] = .string(kind)
            if !params.isEmpty { members["params"] = .object(params) }
        case let .composite(op, compose):
            members["op"] = .string(op)
            members["compose"] = .array(compose.map(conditionJSON))
        case let .mixed(kind, params, op, compose):
            members = ["kind": .string(kind), "params": .object(params), "op": .string(op), "compose": .array(compose.map(conditionJSON))]
        }
        return .object(members)
    }
}
