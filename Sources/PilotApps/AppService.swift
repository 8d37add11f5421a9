public import Logging
public import NIOCore
import PilotAppStore
public import PilotControl
public import PilotWire

/// The app service: answers pilot-host's requests on its socket. It fetches and verifies
/// catalogues and bundles (`BundlePreparer`), and runs apps (`AppSupervisor`).
public final class AppService: Sendable {
    /// What the service is set up with.
    public struct Settings: Sendable {
        /// The service's root (store, state, suspensions, downloads).
        public var root: String
        /// The `pilot-app-launch` executable.
        public var launcher: String
        public var bwrap: String
        /// Apps run as this uid and gid when the service runs as root.
        public var appUser: (uid: UInt32, gid: UInt32)?
        public var idleTimeout: Duration

        public init(root: String, launcher: String, bwrap: String = "/usr/bin/bwrap", appUser: (uid: UInt32, gid: UInt32)?, idleTimeout: Duration) {
            self.root = root
            self.launcher = launcher
            self.bwrap = bwrap
            self.appUser = appUser
            self.idleTimeout = idleTimeout
        }
    }

    private let preparer: BundlePreparer
    private let supervisor: AppSupervisor
    private let downloader: Downloader
    private let reaper: ChildReaper
    private let logger: Logger

    public init(settings: Settings, group: any EventLoopGroup, logger: Logger) throws {
        let layout = AppStoreLayout(root: settings.root)
        guard AppStoreLayout.makeDirectories(layout.store, mode: 0o755) else {
            throw ControlFailure(.internalError, "cannot make \(layout.store)")
        }
        let bundles = BundleStore(root: layout.store)
        // The service is the store's only writer, and nothing unpacks yet: what a crash left goes.
        bundles.sweepStaging()
        let downloader = Downloader(group: group)
        self.downloader = downloader
        self.logger = logger
        preparer = BundlePreparer(
            layout: layout, bundles: bundles, catalogues: CatalogueCache(downloader: downloader, logger: logger), downloader: downloader,
            logger: logger)
        let supervisor = AppSupervisor(
            layout: layout, bundles: bundles,
            settings: AppSupervisor.Settings(
                launcher: settings.launcher, bwrap: settings.bwrap, appUser: settings.appUser, idleTimeout: settings.idleTimeout),
            group: group, logger: logger)
        self.supervisor = supervisor
        reaper = try ChildReaper { pid, status in Task { await supervisor.exited(pid: pid, status: status) } }
    }

    /// Starts the supervisor's idle sweep.
    public func start() async { await supervisor.start() }

    /// Stops every app and the downloader.
    public func stop() async {
        await supervisor.stopAll()
        await downloader.shutdown()
    }

    /// Answers one request from the host.
    public func handle(_ peer: PeerCredentials, _ request: ControlRequest) async -> ControlReply {
        do {
            return .ok(try await answer(request))
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch {
            return .error(ControlFailure(.internalError, "\(error)"))
        }
    }

    private func answer(_ request: ControlRequest) async throws -> JSON {
        let fields = request.fields
        switch request.command {
        case AppServiceControl.Catalogue.name:
            let command = try AppServiceControl.Catalogue(fields: fields)
            let fetched = try await preparer.catalogues.catalogue(command.source)
            return AppCatalogue(apps: fetched.catalogue.search(nil).map(Self.describe), updatedAt: fetched.catalogue.updatedAt).json
        case AppServiceControl.Prepare.name:
            return try await preparer.prepare(AppServiceControl.Prepare(fields: fields)).json
        case AppServiceControl.Stage.name:
            try preparer.stage(AppServiceControl.Stage(fields: fields))
            return [:]
        case AppServiceControl.PrepareLocal.name:
            return try preparer.prepareLocal(AppServiceControl.PrepareLocal(fields: fields)).json
        case AppServiceControl.Call.name:
            return try await supervisor.call(AppServiceControl.Call(fields: fields)).json
        case AppServiceControl.Status.name:
            let command = try AppServiceControl.Status(fields: fields)
            return try await supervisor.status(identity: command.identity, app: command.app).json
        case AppServiceControl.Restart.name:
            let command = try AppServiceControl.Restart(fields: fields)
            return try await supervisor.restart(identity: command.identity, app: command.app).json
        case AppServiceControl.Remove.name:
            let command = try AppServiceControl.Remove(fields: fields)
            return try await supervisor.remove(identity: command.identity, app: command.app).json
        case AppServiceControl.Forget.name:
            let command = try AppServiceControl.Forget(fields: fields)
            try await supervisor.forget(identity: command.identity)
            return ["identity": .string(command.identity)]
        case AppServiceControl.Collect.name:
            let command = try AppServiceControl.Collect(fields: fields)
            let removed = await supervisor.collect(keep: Set(command.keep))
            if !removed.isEmpty { logger.notice("unused bundles removed", metadata: ["bundles": "\(removed)"]) }
            return ["removed": .array(removed.map(JSON.string))]
        default:
            throw ControlFailure(.invalidArgument, "unknown command: \(request.command.prefix(64))")
        }
    }

    /// A catalogue entry as `appstore catalogue` lists it.
    static func describe(_ entry: Catalogue.Entry) -> [String: JSON] {
        var members: [String: JSON] = [
            "id": .string(entry.id), "version": .string(entry.version), "description": .string(entry.description),
            "publisher": .string(entry.publisher), "categories": .array(entry.categories.map(JSON.string)),
        ]
        if !entry.displayName.isEmpty { members["display_name"] = .string(entry.displayName) }
        if !entry.vendor.isEmpty { members["vendor"] = .string(entry.vendor) }
        if !entry.license.isEmpty { members["license"] = .string(entry.license) }
        if !entry.sourceURL.isEmpty { members["source_url"] = .string(entry.sourceURL) }
        if entry.bundleSize > 0 { members["bundle_size"] = .integer(Int64(entry.bundleSize)) }
        return members
    }
}
