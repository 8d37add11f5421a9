import FoundationEssentials
import Glibc
import Logging
import NIOConcurrencyHelpers
import PilotAppStore
import PilotControl
import PilotStore
import PilotWire

/// The app store's commands on an identity's socket. The host decides (who installed what, the
/// grants the owner approved, which methods an app exposes, whether the caller may use the
/// identity at all: the socket's gate, asked before every request); the app service does the
/// work that needs the network, the store or a running app.
final class AppStoreCommands: Sendable {
    let service: AppServiceClient
    let installs: AppInstalls
    private let source: NIOLockedValueBox<AppServiceControl.CatalogueSource>
    private let sideload: NIOLockedValueBox<Bool>
    private let uploads: Uploads
    let logger: Logger
    /// Calls waiting on apps, per identity: one tenant's slow app cannot take every slot.
    private let calls = NIOLockedValueBox<[String: Int]>([:])
    /// The most calls one identity may have waiting.
    static let callsPerIdentity = 16

    init(
        service: AppServiceClient, installs: AppInstalls, source: AppServiceControl.CatalogueSource, sideload: Bool, uploads: Uploads,
        logger: Logger
    ) {
        self.service = service
        self.installs = installs
        self.source = NIOLockedValueBox(source)
        self.sideload = NIOLockedValueBox(sideload)
        self.uploads = uploads
        self.logger = logger
    }

    /// A reload's settings.
    func reload(source new: AppServiceControl.CatalogueSource, sideload allowed: Bool) {
        source.withLockedValue { $0 = new }
        sideload.withLockedValue { $0 = allowed }
    }

    /// Answers `command` for identity `name` (at `address`), asked by `peer`.
    func answer(_ command: IdentitySocketCommand, identity name: String, address: String, peer: PeerCredentials) async throws(ControlFailure) -> JSON? {
        switch command {
        case .appCatalogue(let command):
            var catalogue = try await service.send(AppServiceControl.Catalogue(source: try configuredSource()), timeout: .seconds(60))
            let installed = Set(try await records(of: name).map(\.appID))
            catalogue.apps = catalogue.apps.filter { entry in
                guard let word = command.search?.lowercased(), !word.isEmpty else { return true }
                return entry.contains { key, value in
                    ["id", "display_name", "description", "vendor", "categories"].contains(key) && value.encodedString().lowercased().contains(word)
                }
            }.map { entry in
                var entry = entry
                entry["installed"] = .bool(installed.contains(entry["id"]?.stringValue ?? ""))
                return entry
            }
            return catalogue.json
        case .appPlan(let command):
            return try await plan(command.app, version: command.version, identity: name).json
        case .appInstall(let command):
            return try await install(command, identity: name, peer: peer).json
        case .appSideload(let command):
            return try await sideload(command, identity: name, peer: peer).json
        case .appList:
            var apps: [InstalledApp] = []
            for record in try await records(of: name) { apps.append(await describe(record, identity: name)) }
            return InstalledApps(apps: apps).json
        case .appOutdated:
            let catalogue = try await service.send(AppServiceControl.Catalogue(source: try configuredSource()), timeout: .seconds(60))
            let versions = Dictionary(catalogue.apps.compactMap { entry in entry["id"]?.stringValue.map { ($0, entry["version"]?.stringValue ?? "") } }) { first, _ in first }
            var outdated: [InstalledApp] = []
            for record in try await records(of: name) where record.source == "catalogue" {
                guard let available = versions[record.appID], available != record.version else { continue }
                var app = await describe(record, identity: name)
                app.available = available
                outdated.append(app)
            }
            return InstalledApps(apps: outdated).json
        case .appStatus(let command):
            return await describe(try await installed(command.app, identity: name), identity: name).json
        case .appRestart(let command):
            let record = try await installed(command.app, identity: name)
            _ = try await service.send(AppServiceControl.Restart(identity: name, app: record.appID), timeout: .seconds(30))
            logger.notice("app restarted", metadata: ["identity": "\(name)", "app": "\(record.appID)", "uid": "\(peer.uid)"])
            return await describe(record, identity: name).json
        case .appUninstall(let command):
            let record = try await installed(command.app, identity: name)
            _ = try await service.send(AppServiceControl.Remove(identity: name, app: record.appID), timeout: .seconds(30))
            do { try await installs.remove(record.appID, of: name) } catch { throw Self.storeFailure(error) }
            await collectBundles()
            logger.notice("app uninstalled", metadata: ["identity": "\(name)", "app": "\(record.appID)", "uid": "\(peer.uid)"])
            var app = await describe(record, identity: name)
            app.state = "removed"
            return app.json
        case .appCall(let command):
            return try await call(command, identity: name, address: address).json
        default:
            return nil
        }
    }

    // MARK: Install

    private func plan(_ app: String, version: String?, identity: String) async throws(ControlFailure) -> AppPlan {
        var plan = try await service.send(AppServiceControl.Prepare(source: try configuredSource(), app: app, version: version), timeout: .seconds(300))
        let current = try await records(of: identity).first { $0.appID == plan.app }
        plan.installedVersion = current?.version
        plan.needsApproval = current.map { Self.needsApproval(plan, over: $0) } ?? true
        return plan
    }

    private func install(_ command: AppStoreControl.Install, identity: String, peer: PeerCredentials) async throws(ControlFailure) -> InstalledApp {
        let plan = try await plan(command.app, version: nil, identity: identity)
        guard plan.bundleSHA256 == command.bundleSHA256.lowercased() else {
            throw ControlFailure(
                .invalidArgument,
                "the catalogue now offers \(plan.app) \(plan.version) as bundle \(plan.bundleSHA256.prefix(12))…, not the one approved "
                    + "(\(command.bundleSHA256.prefix(12))…): plan and approve again")
        }
        let current = try await records(of: identity).first { $0.appID == plan.app }
        if let current, Self.isOlder(plan.version, than: current.version) {
            throw ControlFailure(.invalidArgument, "\(plan.app) \(current.version) is installed; \(plan.version) would be a downgrade")
        }
        guard command.approve || !plan.needsApproval else {
            throw ControlFailure(.permissionDenied, "\(plan.app) asks for grants that were not approved: install it with --yes after reading them")
        }
        let now = Int64(Date().timeIntervalSince1970)
        let approval = plan.needsApproval || current == nil ? (peer.uid, now) : (current?.approvedBy ?? peer.uid, current?.approvedAt ?? now)
        let record = Self.record(of: plan, source: "catalogue", identity: identity, approval: approval)
        do { try await installs.install(record, identity: identity) } catch { throw Self.storeFailure(error) }
        if current != nil {
            // The running process is the old version: the next call starts the new one, verified.
            _ = try? await service.send(AppServiceControl.Restart(identity: identity, app: plan.app), timeout: .seconds(30))
            await collectBundles()
        }
        logger.notice(
            "app installed",
            metadata: [
                "identity": "\(identity)", "app": "\(plan.app)", "version": "\(plan.version)",
                "bundle": "\(plan.bundleSHA256)", "grants": "\(plan.grants.count)", "approved_by": "\(approval.0)",
            ])
        return await describe(record, identity: identity)
    }

    /// A bundle pilotctl packed from a local directory: staged at the service in pieces, checked
    /// under the sideload policy, recorded with source `sideload`.
    private func sideload(_ command: AppStoreControl.Sideload, identity: String, peer: PeerCredentials) async throws(ControlFailure) -> InstalledApp {
        guard sideload.withLockedValue({ $0 }) else {
            throw ControlFailure(.permissionDenied, "sideloading is off on this host (app-sideload = yes in pilot-host.conf allows it)")
        }
        guard command.approve else { throw ControlFailure(.permissionDenied, "a sideloaded app's grants need your approval (--yes)") }
        let bytes = try await uploads.take(identity: identity, id: command.upload)
        let token = Hex.lowercase((0..<16).map { _ in UInt8.random(in: 0...255) })
        var offset = 0
        repeat {
            let piece = bytes[offset..<min(bytes.count, offset + (512 << 10))]
            _ = try await service.send(AppServiceControl.Stage(token: token, offset: offset, data: Base64.encode(piece)), timeout: .seconds(30))
            offset += piece.count
        } while offset < bytes.count
        let plan = try await service.send(AppServiceControl.PrepareLocal(token: token), timeout: .seconds(120))
        let current = try await records(of: identity).first { $0.appID == plan.app }
        if let current, current.source != "sideload" {
            throw ControlFailure(.alreadyExists, "\(plan.app) is installed from the catalogue: uninstall it before sideloading another")
        }
        let record = Self.record(of: plan, source: "sideload", identity: identity, approval: (peer.uid, Int64(Date().timeIntervalSince1970)))
        do { try await installs.install(record, identity: identity) } catch { throw Self.storeFailure(error) }
        if current != nil {
            _ = try? await service.send(AppServiceControl.Restart(identity: identity, app: plan.app), timeout: .seconds(30))
            await collectBundles()
        }
        logger.notice(
            "app sideloaded",
            metadata: ["identity": "\(identity)", "app": "\(plan.app)", "version": "\(plan.version)", "bundle": "\(plan.bundleSHA256)", "approved_by": "\(peer.uid)"])
        return await describe(record, identity: identity)
    }

    /// The row of `plan` installed for `identity`, approved by `approval` (uid, Unix seconds).
    static func record(of plan: AppPlan, source: String, identity: String, approval: (UInt32, Int64)) -> AppInstallRecord {
        AppInstallRecord(
            appID: plan.app, version: plan.version, manifestVersion: plan.manifestVersion, bundleSHA256: plan.bundleSHA256,
            publisher: plan.publisher, source: source, exposes: plan.exposes, stateDirectory: stateDirectory(of: plan.app, identity: identity),
            installedAt: Int64(Date().timeIntervalSince1970), approvedBy: approval.0, approvedAt: approval.1,
            grants: plan.grants.map { AppInstallRecord.Grant(cap: $0.cap, target: $0.target, condition: $0.condition?.encodedString()) })
    }

    /// Where `app`'s state lives for `identity`, under the app service's root.
    static func stateDirectory(of app: String, identity: String) -> String { "state/\(identity)/\(app)" }

    /// Whether installing `plan` over `current` needs the owner again: a higher manifest
    /// version, or grants other than those approved.
    static func needsApproval(_ plan: AppPlan, over current: AppInstallRecord) -> Bool {
        plan.manifestVersion > current.manifestVersion || grants(of: current) != plan.grants
    }

    static func grants(of record: AppInstallRecord) -> [AppGrant] {
        record.grants.map { grant in
            AppGrant(cap: grant.cap, target: grant.target, condition: grant.condition.flatMap { try? JSON(parsing: $0) })
        }
    }

    /// Semantic version order of the x.y.z parts (a pre-release sorts before its release).
    static func isOlder(_ version: String, than other: String) -> Bool {
        func parts(_ text: String) -> ([Int], Bool) {
            let core = text.split(separator: "-", maxSplits: 1).first ?? ""
            return (core.split(separator: ".").map { Int($0) ?? 0 }, text.contains("-"))
        }
        let (a, aPre) = parts(version)
        let (b, bPre) = parts(other)
        if a != b { return a.lexicographicallyPrecedes(b) }
        return aPre && !bPre
    }

    /// After `identity` was deleted (its rows went with it): its apps stop and their state goes.
    /// Where no app service is set up (no socket), there is nothing to remove. A service that is
    /// set up but does not answer keeps that state: the warning names the identity.
    func forget(identity: String) async {
        guard access(service.path, F_OK) == 0 else {
            logger.debug("no app service: no apps to remove", metadata: ["identity": "\(identity)"])
            return
        }
        do {
            _ = try await service.send(AppServiceControl.Forget(identity: identity), timeout: .seconds(5))
            await collectBundles()
        } catch {
            logger.warning("apps of a deleted identity not removed", metadata: ["identity": "\(identity)", "error": "\(error.message)"])
        }
    }

    /// Deletes the bundles no identity uses any more.
    func collectBundles() async {
        guard let keep = try? await installs.bundles() else { return }
        _ = try? await service.send(AppServiceControl.Collect(keep: keep.sorted()), timeout: .seconds(60))
    }

    // MARK: Calls

    private func call(_ command: AppStoreControl.Call, identity: String, address: String) async throws(ControlFailure) -> AppCallReply {
        let record = try await installed(command.app, identity: identity)
        guard record.exposes.contains(command.method) else {
            throw ControlFailure(.notFound, "method not found: \(command.method.prefix(128)) (\(record.appID) exposes \(record.exposes.joined(separator: ", ")))")
        }
        let admitted = calls.withLockedValue { calls -> Bool in
            guard calls[identity, default: 0] < Self.callsPerIdentity else { return false }
            calls[identity, default: 0] += 1
            return true
        }
        guard admitted else {
            throw ControlFailure(.unavailable, "\(identity) has \(Self.callsPerIdentity) app calls waiting: try again when one ends")
        }
        defer { calls.withLockedValue { $0[identity, default: 1] -= 1 } }
        let timeout = command.timeout ?? AppStoreControl.Call.defaultTimeout
        let neighbours = try await records(of: identity).filter { $0.appID != record.appID }.map {
            Self.installation(of: $0, identity: identity, address: address)
        }
        let call = AppServiceControl.Call(
            installation: Self.installation(of: record, identity: identity, address: address), method: command.method,
            payload: command.payload, timeout: timeout, neighbours: neighbours)
        return try await service.send(call, timeout: .milliseconds(timeout) + .seconds(15))
    }

    // MARK: Records

    /// What the service needs of an install to run it, or to let another app call it.
    static func installation(of record: AppInstallRecord, identity: String, address: String) -> AppServiceControl.Installation {
        AppServiceControl.Installation(
            identity: identity, address: address, app: record.appID, bundleSHA256: record.bundleSHA256, publisher: record.publisher,
            grants: grants(of: record), sideloaded: record.source == "sideload", exposes: record.exposes)
    }

    func configuredSource() throws(ControlFailure) -> AppServiceControl.CatalogueSource {
        let source = source.withLockedValue { $0 }
        guard !source.urls.isEmpty, !source.keys.isEmpty else {
            throw ControlFailure(.unavailable, "no app catalogue is configured: set app-catalogue and app-catalogue-keys in pilot-host.conf")
        }
        return source
    }

    private func records(of identity: String) async throws(ControlFailure) -> [AppInstallRecord] {
        do { return try await installs.apps(of: identity) } catch { throw Self.storeFailure(error) }
    }

    private func installed(_ app: String, identity: String) async throws(ControlFailure) -> AppInstallRecord {
        let record: AppInstallRecord?
        do { record = try await installs.app(app, of: identity) } catch { throw Self.storeFailure(error) }
        guard let record else { throw ControlFailure(.notFound, "\(identity) has no app \(app.prefix(128)) installed") }
        return record
    }

    /// The install and, if the service answers, its process.
    private func describe(_ record: AppInstallRecord, identity: String) async -> InstalledApp {
        var app = InstalledApp(
            app: record.appID, version: record.version, manifestVersion: record.manifestVersion, bundleSHA256: record.bundleSHA256,
            publisher: record.publisher, source: record.source, installedAt: record.installedAt, approvedBy: record.approvedBy,
            approvedAt: record.approvedAt, exposes: record.exposes, grants: Self.grants(of: record), state: "unknown")
        do {
            let status = try await service.send(AppServiceControl.Status(identity: identity, app: record.appID), timeout: .seconds(10))
            app.state = status.state
            app.pid = status.pid
            app.restarts = status.restarts
            app.reason = status.reason
        } catch {
            app.reason = error.message
        }
        return app
    }

    private static func storeFailure(_ error: any Error) -> ControlFailure {
        ControlFailure(.internalError, "host.db: \(error)")
    }
}
