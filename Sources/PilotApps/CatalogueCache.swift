import Logging
import PilotAppStore
import PilotCrypto
import PilotWire

/// The signed catalogue, fetched from the first configured URL that answers and kept for a
/// minute (installs of several identities in a row fetch it once). A catalogue whose signature
/// does not verify is never kept or used: that URL counts as failed and the next is tried.
actor CatalogueCache {
    /// A verified catalogue and the URL it came from (bundle URLs may be relative to it).
    struct Fetched: Sendable {
        let catalogue: Catalogue
        let url: String
        let fetchedAt: ContinuousClock.Instant
    }

    private let downloader: Downloader
    private let logger: Logger
    private var cached: [AppServiceControl.CatalogueSource: Fetched] = [:]
    /// How long a catalogue is reused.
    static let lifetime = Duration.seconds(60)
    /// The largest catalogue (and signature) accepted.
    static let maxBytes = 16 << 20

    init(downloader: Downloader, logger: Logger) {
        self.downloader = downloader
        self.logger = logger
    }

    /// The catalogue `source` names, verified with its keys.
    func catalogue(_ source: AppServiceControl.CatalogueSource) async throws(ControlFailure) -> Fetched {
        if let kept = cached[source], ContinuousClock.now - kept.fetchedAt < Self.lifetime { return kept }
        var keys: [Ed25519PublicKey] = []
        for text in source.keys {
            do { keys.append(try Ed25519PublicKey(base64: text)) } catch {
                throw ControlFailure(.invalidArgument, "app-catalogue-keys: \(text.prefix(64)) is not a base64 Ed25519 public key")
            }
        }
        guard !source.urls.isEmpty, !keys.isEmpty else {
            throw ControlFailure(.unavailable, "no app catalogue is configured (app-catalogue, app-catalogue-keys)")
        }
        var failures: [String] = []
        for url in source.urls {
            do {
                let where_ = try DownloadSource(parsing: url)
                let bytes = try await downloader.fetch(where_, maxBytes: Self.maxBytes, timeout: .seconds(30))
                let signature = try await downloader.fetch(try where_.resolving(Self.signatureName(of: url)), maxBytes: 4096, timeout: .seconds(30))
                let catalogue: Catalogue
                do { catalogue = try Catalogue(verifying: bytes, signature: signature, trustedKeys: keys) } catch {
                    failures.append("\(url): \(error)")
                    logger.error("catalogue refused", metadata: ["url": "\(url)", "error": "\(error)"])
                    continue
                }
                let fetched = Fetched(catalogue: catalogue, url: url, fetchedAt: .now)
                cached[source] = fetched
                return fetched
            } catch {
                failures.append("\(url): \(error)")
            }
        }
        throw ControlFailure(.unavailable, "no catalogue could be used: " + failures.joined(separator: "; "))
    }

    /// The detached signature's name beside the catalogue: `catalogue.json` → `catalogue.json.sig`.
    static func signatureName(of url: String) -> String {
        let path = url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
        return (path.split(separator: "/").last.map(String.init) ?? "catalogue.json") + ".sig"
    }
}
