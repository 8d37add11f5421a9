import Glibc
import Logging
import NIOCore
import PilotAppStore
import PilotControl
import PilotWire

/// Runs installed apps, one process per identity and app, each in its sandbox:
///
/// - **Started on first call, stopped when idle.** A host with thousands of identities would
///   otherwise hold thousands of processes for apps that are seldom called; a start costs the
///   verification and a sandbox (tens of milliseconds), paid again after `idleTimeout`.
/// - **Verified at every start**, crash restarts included: the manifest's schema, signature and
///   pinned publisher, the approved grants against the signed ones, and the binary's hash over
///   the very bytes that are then executed (`VerifiedBinary`). A failed verification suspends
///   the app at once.
/// - **Crashes**: restarted after 1, 2, 4 … 30 s while the app is in use; more than 5 crashes in
///   60 s suspend it. A suspension is kept on disk (out of the app's reach) until `restart`.
actor AppSupervisor {
    struct Settings: Sendable {
        /// The `pilot-app-launch` executable.
        var launcher: String
        var bwrap = "/usr/bin/bwrap"
        /// The uid and gid apps run as when the service runs as root (else the service's own).
        var appUser: (uid: UInt32, gid: UInt32)?
        /// A running app not called for this long is stopped.
        var idleTimeout = Duration.seconds(300)
        /// How long a started app has to open its socket.
        var readyTimeout = Duration.seconds(5)
        /// The largest binary an app may have.
        var maxBinaryBytes = 256 << 20
    }

    /// O_PATH (<fcntl.h>, declared only under _GNU_SOURCE).
    private static let pathOnly: Int32 = 0o10000000
    private let layout: AppStoreLayout
    private let bundles: BundleStore
    private let settings: Settings
    private let group: any EventLoopGroup
    private let logger: Logger
    private var instances: [String: AppInstance] = [:]
    /// Each identity's installed apps, as its last call listed them: what its apps' brokers
    /// may reach.
    private var neighbours: [String: [String: AppServiceControl.Installation]] = [:]
    private var byPID: [Int32: AppInstance] = [:]
    private var sweeper: Task<Void, Never>?

    init(layout: AppStoreLayout, bundles: BundleStore, settings: Settings, group: any EventLoopGroup, logger: Logger) {
        self.layout = layout
        self.bundles = bundles
        self.settings = settings
        self.group = group
        self.logger = logger
    }

    /// Starts the idle sweep.
    func start() {
        sweeper = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                await self?.stopIdle()
            }
        }
    }

    // MARK: Calls

    /// Sends `command`'s request to the app (starting it first if needed) and returns its reply.
    func call(_ command: AppServiceControl.Call) async throws(ControlFailure) -> AppCallReply {
        let identity = command.installation.identity
        neighbours[identity] = Dictionary((command.neighbours + [command.installation]).map { ($0.app, $0) }) { _, last in last }
        return try await send(to: command.installation, method: command.method, payload: command.payload, timeout: command.timeout, from: nil)
    }

    /// An app's request on its broker: another app of the same identity, checked, then called
    /// with the caller named in `app_id`.
    func bridge(from name: String, _ request: AppEnvelope) async -> AppEnvelope {
        func refuse(_ reason: String) -> AppEnvelope { AppEnvelope(kind: .error, requestID: request.requestID, error: reason) }
        guard let caller = instances[name], let callerInstallation = caller.installation else { return refuse("the calling app is not running") }
        let target = request.appID
        guard let installation = neighbours[caller.identity]?[target] else {
            return refuse("app not installed: \(target.prefix(128)) (for \(caller.identity))")
        }
        guard installation.exposes.contains(request.method) else { return refuse("method not found: \(request.method.prefix(128))") }
        let wanted = target + "." + request.method
        guard callerInstallation.grants.contains(where: { $0.cap == "ipc.call" && Manifest.pattern($0.target, covers: wanted) }) else {
            logger.warning("app call refused", metadata: ["identity": "\(caller.identity)", "app": "\(caller.app)", "target": "\(wanted)"])
            return refuse("permission denied: \(caller.app) holds no ipc.call grant for \(wanted)")
        }
        do {
            let reply = try await send(to: installation, method: request.method, payload: request.payload ?? .object([:]), timeout: 30_000, from: caller.app)
            return AppEnvelope(kind: .reply, requestID: request.requestID, payload: reply.reply)
        } catch {
            return refuse(error.message)
        }
    }

    private func send(
        to installation: AppServiceControl.Installation, method: String, payload: JSON, timeout: Int, from caller: String?
    ) async throws(ControlFailure) -> AppCallReply {
        let instance = try instance(installation.identity, installation.app)
        instance.installation = installation
        instance.lastUsed = .now
        try await started(instance)
        var request = AppEnvelope.request(method: method, payload: payload)
        if let caller { request.appID = caller }
        let body: [UInt8]
        // A socket address holds 107 bytes: a longer path is reached through the state
        // directory's descriptor.
        var path = socketPath(of: instance)
        var directory: Int32 = -1
        if path.utf8.count > 100 {
            directory = open(instance.stateDirectory, Self.pathOnly | O_DIRECTORY | O_CLOEXEC)
            path = "/proc/self/fd/\(directory)/app.sock"
        }
        defer { if directory >= 0 { close(directory) } }
        do {
            body = try await FrameExchange.exchange(
                path: path, body: request.encoded(), maxReply: AppEnvelope.maxFrameSize, timeout: .milliseconds(timeout), group: group)
        } catch {
            if case .timedOut = error {
                throw ControlFailure(.timeout, "\(instance.app) did not answer \(method) within \(timeout) ms")
            }
            throw ControlFailure(.connectionFailed, "\(instance.app): \(error)")
        }
        instance.lastUsed = .now
        let reply: AppEnvelope
        do { reply = try AppEnvelope(decoding: body) } catch {
            throw ControlFailure(.connectionFailed, "\(instance.app) sent a bad reply: \(error)")
        }
        guard reply.requestID == request.requestID else {
            throw ControlFailure(.connectionFailed, "\(instance.app) answered request \(reply.requestID.prefix(16)), not \(request.requestID)")
        }
        switch reply.kind {
        case .reply: return AppCallReply(app: instance.app, method: method, reply: reply.payload ?? .null)
        case .error:
            let code: ControlErrorCode = reply.error.hasPrefix("method not found") ? .notFound : .invalidArgument
            throw ControlFailure(code, "\(instance.app): \(reply.error.prefix(4096))")
        case .request: throw ControlFailure(.connectionFailed, "\(instance.app) answered with a request")
        }
    }

    // MARK: Lifecycle commands

    func status(identity: String, app: String) throws(ControlFailure) -> AppProcessStatus {
        let instance = try instance(identity, app)
        var reason: String?
        if case .suspended(let why) = instance.state { reason = why } else { reason = instance.lastExit }
        return AppProcessStatus(state: instance.state.name, pid: instance.process.map { Int($0.pid) }, restarts: instance.restarts, reason: reason)
    }

    /// Clears a suspension and stops the process; the next call starts it, verified.
    func restart(identity: String, app: String) throws(ControlFailure) -> AppProcessStatus {
        let instance = try instance(identity, app)
        if let file = layout.suspensionFile(identity: identity, app: app) { unlink(file) }
        instance.crashes.removeAll()
        stop(instance)
        instance.state = .stopped
        logger.notice("app restarted", metadata: ["identity": "\(identity)", "app": "\(app)"])
        return try status(identity: identity, app: app)
    }

    /// Stops the app and deletes its state.
    func remove(identity: String, app: String) throws(ControlFailure) -> AppProcessStatus {
        let instance = try instance(identity, app)
        stop(instance)
        instance.state = .stopped
        instances[key(identity, app)] = nil
        AppStoreLayout.removeTree(instance.stateDirectory)
        if let file = layout.suspensionFile(identity: identity, app: app) { unlink(file) }
        logger.notice("app removed", metadata: ["identity": "\(identity)", "app": "\(app)"])
        return AppProcessStatus(state: "removed")
    }

    /// Stops every app of a deleted identity and deletes their state.
    func forget(identity: String) throws(ControlFailure) {
        guard let directory = layout.identityDirectory(identity) else {
            throw ControlFailure(.invalidArgument, "forget: \(identity.prefix(64)) is not a valid identity name")
        }
        for (name, instance) in instances where instance.identity == identity {
            stop(instance)
            instances[name] = nil
        }
        AppStoreLayout.removeTree(directory)
        AppStoreLayout.removeTree(layout.root + "/suspended/\(identity)")
        logger.notice("apps of a deleted identity removed", metadata: ["identity": "\(identity)"])
    }

    /// Deletes the store's bundles that nobody keeps and no running app uses.
    func collect(keep: Set<String>) -> [String] {
        let inUse = Set(instances.values.compactMap { $0.process == nil ? nil : $0.installation?.bundleSHA256 })
        var removed: [String] = []
        for bundle in bundles.listed() where !keep.contains(bundle) && !inUse.contains(bundle) {
            if (try? bundles.remove(sha256: bundle)) != nil { removed.append(bundle) }
        }
        return removed
    }

    /// A child ended (from the reaper).
    func exited(pid: Int32, status: Int32) {
        guard let instance = byPID.removeValue(forKey: pid) else { return }
        instance.process?.markEnded()
        instance.process = nil
        instance.broker?.close()
        instance.broker = nil
        let how = ChildReaper.describe(status)
        instance.lastExit = how
        let metadata: Logger.Metadata = ["identity": "\(instance.identity)", "app": "\(instance.app)", "pid": "\(pid)", "status": "\(how)"]
        if instance.stopping {
            instance.stopping = false
            if instance.state == .running || instance.state == .starting { instance.state = .stopped }
            logger.info("app stopped", metadata: metadata)
            return
        }
        if case .suspended = instance.state { return }
        let now = ContinuousClock.now
        instance.crashes = instance.crashes.filter { now - $0 < .seconds(60) } + [now]
        instance.state = .stopped
        logger.warning("app crashed", metadata: metadata)
        if instance.crashes.count > 5 {
            suspend(instance, "crashed \(instance.crashes.count) times within 60 s (last: \(how))")
            return
        }
        guard now - instance.lastUsed < settings.idleTimeout else { return }
        let delay = AppInstance.backOff(after: instance.crashes.count)
        instance.restart?.cancel()
        let name = key(instance.identity, instance.app)
        instance.restart = Task { [weak self] in
            try? await Task.sleep(for: delay)
            guard !Task.isCancelled else { return }
            await self?.restartAfterCrash(named: name)
        }
    }

    // MARK: Starting

    private func restartAfterCrash(named name: String) async {
        guard let instance = instances[name], instance.state == .stopped, instance.process == nil else { return }
        instance.restarts += 1
        do { try await started(instance) } catch {
            logger.warning("app restart failed", metadata: ["identity": "\(instance.identity)", "app": "\(instance.app)", "error": "\(error)"])
        }
    }

    /// Returns once the app runs and has made its socket, starting it if needed.
    private func started(_ instance: AppInstance) async throws(ControlFailure) {
        switch instance.state {
        case .running: return
        case .suspended(let reason):
            throw ControlFailure(.unavailable, "\(instance.app) is suspended: \(reason); after fixing it: pilotctl appstore restart \(instance.app)")
        case .starting, .stopped:
            let task: Task<Void, any Error>
            if let running = instance.starting {
                task = running
            } else {
                let name = key(instance.identity, instance.app)
                task = Task { try await self.launch(named: name) }
                instance.starting = task
            }
            do { try await task.value } catch let failure as ControlFailure { throw failure } catch {
                throw ControlFailure(.internalError, "\(instance.app): \(error)")
            }
        }
    }

    /// Verifies and spawns the app, then waits until it has made its socket.
    private func launch(named name: String) async throws {
        guard let instance = instances[name] else { throw ControlFailure(.notFound, "\(name) was removed") }
        defer { instance.starting = nil }
        guard let installation = instance.installation else {
            throw ControlFailure(.unavailable, "\(instance.app) has not been called since the app service started")
        }
        instance.state = .starting
        let binary: VerifiedBinary
        let manifest: Manifest
        do {
            guard let directory = bundles.directory(for: installation.bundleSHA256) else {
                throw ControlFailure(.notFound, "bundle \(installation.bundleSHA256) is not in the store: install the app again")
            }
            manifest = try BundlePreparer.verifiedManifest(
                in: directory, app: installation.app, pinnedPublisher: installation.publisher, requireHelp: false,
                sideloaded: installation.sideloaded)
            guard manifest.grants.map(BundlePreparer.grant) == installation.grants else {
                throw ControlFailure(.permissionDenied, "the manifest's grants are not the ones its owner approved")
            }
            do {
                binary = try VerifiedBinary.open(
                    storeDirectory: directory, relativePath: manifest.binary.path, expectedSHA256: manifest.binary.sha256,
                    maxBytes: settings.maxBinaryBytes)
            } catch {
                throw ControlFailure(.permissionDenied, "\(error)")
            }
        } catch let failure as ControlFailure {
            suspend(instance, "verification failed: \(failure.message)")
            throw ControlFailure(.unavailable, "\(instance.app) is suspended: verification failed: \(failure.message)")
        }
        try prepareStateDirectory(instance)
        let broker: AppBroker
        do {
            guard AppStoreLayout.makeDirectories(layout.root + "/broker", mode: 0o711) else {
                throw ControlFailure(.internalError, "cannot make \(layout.root)/broker")
            }
            let brokerPath = layout.root + "/broker/\(Hex.lowercase((0..<8).map { _ in UInt8.random(in: 0...255) })).sock"
            broker = try await AppBroker.open(path: brokerPath, group: group) { [weak self] request in
                await self?.bridge(from: name, request) ?? AppEnvelope(kind: .error, requestID: request.requestID, error: "the app service is stopping")
            }
        } catch {
            instance.state = .stopped
            throw ControlFailure(.internalError, "\(instance.app): its broker could not open: \(error)")
        }
        var policy = SandboxPolicy(
            storeDirectory: bundles.directory(for: installation.bundleSHA256) ?? "", stateDirectory: instance.stateDirectory,
            network: installation.grants.contains { $0.cap == "net.dial" },
            execAllowList: installation.grants.filter { $0.cap == "proc.exec" }.map { $0.target.hasPrefix("/") ? $0.target : "/usr/bin/" + $0.target },
            environment: ["PILOT_APP_ID": manifest.id, "PILOT_IDENTITY": instance.identity, "PILOT_ADDR": installation.address]
                .merging(installation.sideloaded ? ["PILOT_SIDELOAD": "1"] : [:]) { $1 })
        policy.brokerSocket = broker.path
        let argv = [
            "/app/" + manifest.binary.path, "--addr", installation.address, "--db", "/app/data.db", "--socket", "/app/app.sock",
            "--identity", "/app/identity.json", "--manifest", "/app/manifest.json", "--cap-state", "/app/cap-state.jsonl",
        ]
        let process: SandboxedProcess
        do {
            process = try AppSandbox.spawn(
                binary: binary, argv: argv, policy: policy, runAs: settings.appUser, launcherPath: settings.launcher, bwrapPath: settings.bwrap)
        } catch {
            broker.close()
            instance.state = .stopped
            throw ControlFailure(.internalError, "\(instance.app) could not be started: \(error)")
        }
        instance.process = process
        instance.broker = broker
        instance.stopping = false
        byPID[process.pid] = instance
        let appLogger = Self.logger(logger, instance)
        AppOutput.attach(descriptor: process.takeStandardOutput(), stream: "stdout", logger: appLogger, group: group)
        AppOutput.attach(descriptor: process.takeStandardError(), stream: "stderr", logger: appLogger, group: group)
        appLogger.notice("app started", metadata: ["pid": "\(process.pid)", "bundle": "\(installation.bundleSHA256)"])
        let deadline = ContinuousClock.now + settings.readyTimeout
        while ContinuousClock.now < deadline {
            guard instance.process != nil else {
                throw ControlFailure(.unavailable, "\(instance.app) ended as it started (\(instance.lastExit ?? "no status"))")
            }
            if Self.socketExists(socketPath(of: instance)) {
                instance.state = .running
                return
            }
            try? await Task.sleep(for: .milliseconds(25))
        }
        stop(instance)
        throw ControlFailure(.timeout, "\(instance.app) did not open its socket within \(settings.readyTimeout)")
    }

    private func prepareStateDirectory(_ instance: AppInstance) throws(ControlFailure) {
        let directory = instance.stateDirectory
        // The apps' user passes through the parents (0711: no listing) into its own (0700).
        let parent = String(directory[..<(directory.lastIndex(of: "/") ?? directory.endIndex)])
        guard AppStoreLayout.makeDirectories(parent, mode: 0o711), mkdir(directory, 0o700) == 0 || errno == EEXIST else {
            throw ControlFailure(.internalError, "cannot make \(directory): \(String(cString: strerror(errno)))")
        }
        if let user = settings.appUser, getuid() == 0 {
            _ = chown(directory, user.uid, user.gid)
        }
        unlink(directory + "/app.sock")  // a socket left by an earlier run would look ready
    }

    // MARK: Stopping

    private func stop(_ instance: AppInstance) {
        instance.restart?.cancel()
        instance.restart = nil
        if let process = instance.process {
            instance.stopping = true
            process.terminate()
        }
    }

    private func suspend(_ instance: AppInstance, _ reason: String) {
        stop(instance)
        instance.state = .suspended(reason)
        if let file = layout.suspensionFile(identity: instance.identity, app: instance.app) {
            let directory = String(file[..<(file.lastIndex(of: "/") ?? file.endIndex)])
            if AppStoreLayout.makeDirectories(directory, mode: 0o700) {
                let descriptor = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
                if descriptor >= 0 {
                    _ = Array(reason.utf8).withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                    close(descriptor)
                }
            }
        }
        logger.error("app suspended", metadata: ["identity": "\(instance.identity)", "app": "\(instance.app)", "reason": "\(reason)"])
    }

    private func stopIdle() {
        let now = ContinuousClock.now
        for instance in instances.values where instance.state == .running && now - instance.lastUsed > settings.idleTimeout {
            logger.info("idle app stopped", metadata: ["identity": "\(instance.identity)", "app": "\(instance.app)"])
            stop(instance)
        }
    }

    /// Stops every app (the service is ending).
    func stopAll() {
        sweeper?.cancel()
        for instance in instances.values { stop(instance) }
    }

    // MARK: Helpers

    private func key(_ identity: String, _ app: String) -> String { identity + "/" + app }

    private func instance(_ identity: String, _ app: String) throws(ControlFailure) -> AppInstance {
        if let known = instances[key(identity, app)] { return known }
        guard let directory = layout.stateDirectory(identity: identity, app: app) else {
            throw ControlFailure(.invalidArgument, "\(identity.prefix(64))/\(app.prefix(128)) is not a valid identity and app")
        }
        let instance = AppInstance(identity: identity, app: app, stateDirectory: directory)
        if let file = layout.suspensionFile(identity: identity, app: app), let reason = AppStoreLayout.readRegularFile(file, limit: 4096) {
            instance.state = .suspended(String(decoding: reason, as: UTF8.self))
        }
        instances[key(identity, app)] = instance
        return instance
    }

    /// The app's socket (its `/app/app.sock`).
    private func socketPath(of instance: AppInstance) -> String {
        instance.stateDirectory + "/app.sock"
    }

    /// Whether the app has made its socket: its readiness, as the official supervisor judges it
    /// (a connection to find out would reach the app as an empty request).
    static func socketExists(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFSOCK
    }

    private static func logger(_ base: Logger, _ instance: AppInstance) -> Logger {
        var logger = base
        logger[metadataKey: "identity"] = "\(instance.identity)"
        logger[metadataKey: "app"] = "\(instance.app)"
        return logger
    }
}
