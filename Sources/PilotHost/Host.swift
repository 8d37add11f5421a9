import CLinux
import Dispatch
import FoundationEssentials
import Glibc
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import PilotControl
import PilotCrypto
import PilotMetrics
import PilotNet
import PilotServices
import PilotStore
import PilotWire

/// The composition of a running pilot-host: master key, `host.db`, the identity pool and its
/// registry client, the admin socket and one control socket per identity, heartbeats.
public final class Host: Sendable {
    public let configuration: HostConfiguration
    let logger: Logger
    private let group: any EventLoopGroup
    let pool: IdentityPool
    /// The key identity files for this host are sealed to (`HostKey`, from the master key).
    let hostKey: HostKey
    private let registry: RegistryClient
    /// The admin socket and every identity's socket, watched by one accept thread.
    private let listeners: ControlListeners
    /// The tunnel socket and the identities on it.
    private let presence: Presence
    /// Trust handshakes, relayed ones included.
    private let trust: TrustService
    /// How handshake messages travel (port 444).
    private let handshakes: HandshakeTransport
    /// The commands that use the network.
    private let data: DataCommands
    /// Messages and files peers sent.
    private let mailbox: Mailbox
    /// The app store's commands, and the app service they use.
    private let apps: AppStoreCommands
    private let heartbeat: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)
    /// Polls the registry for relayed handshakes every `handshake-poll` seconds.
    private let handshakePolling: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)
    /// `handshake-poll`, which a reload may change.
    private let handshakeInterval: NIOLockedValueBox<Int>
    /// What makes the poller poll: its ticker and the beacon's pokes (coalesced).
    private let pollTrigger = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    private let ticker: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

    /// Files pilotctl is sending, in chunks.
    private let uploads = Uploads()
    /// When this host was made: the uptime the driver protocol's `info` and `health` report.
    private let started = Date()
    /// What every identity socket's commands use, shared.
    private let identityServices: IdentityCommands.Services
    /// Who may use each identity's socket, asked at every accept and every request.
    private let gates: NIOLockedValueBox<[String: AccessGate]> = NIOLockedValueBox([:])
    /// Sockets passed by systemd, served in place of binding `listen` and `admin.sock`.
    private let activated: ActivatedSockets
    /// The processes leased identities last as long as (`Host+Leases.swift`).
    let leases: ProcessExits
    /// The names of leased identities whose holder ended, for `startEndingLeases`' task to delete.
    let leaseEnds = AsyncStream.makeStream(of: String.self)
    let leaseTask: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)
    /// The Prometheus endpoint and its series; nil when `metrics-listen` is empty.
    private let metrics: (server: MetricsServer, series: HostMetrics)?

    /// Opens the state (creating it on first start) and loads every identity.
    public init(
        configuration: HostConfiguration, group: any EventLoopGroup, logger: Logger, activated: ActivatedSockets = ActivatedSockets()
    ) async throws {
        self.configuration = configuration
        self.activated = activated
        handshakeInterval = NIOLockedValueBox(configuration.handshakePoll)
        self.group = group
        self.logger = logger
        // Checked before anything is bound: a refused metrics address stops the start.
        let metricsListener = try configuration.metricsListener()
        let series = metricsListener.map { _ in HostMetrics(perIdentity: configuration.metricsPerIdentity) }
        let ended = leaseEnds.continuation
        do { leases = try ProcessExits { ended.yield($0) } } catch {
            throw ConfigurationError.invalidValue(key: "lease", value: "", reason: "cannot watch lease holders: \(error)")
        }
        for directory in [configuration.stateDirectory, configuration.runtimeDirectory, configuration.runtimeDirectory + "/id"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        chmod(configuration.stateDirectory, 0o700)
        chmod(configuration.runtimeDirectory, 0o755)
        chmod(configuration.runtimeDirectory + "/id", 0o755)
        let (master, source) = try MasterKey.load(stateDirectory: configuration.stateDirectory)
        logger.info("master key", metadata: ["source": "\(source)"])
        hostKey = try HostKey(masterKey: master)
        let store = try HostStore(path: configuration.stateDirectory + "/host.db")
        let registries = try configuration.registries.map { address in
            do { return try Endpoint(parsing: address) } catch { throw ConfigurationError.invalidValue(key: "registry", value: address, reason: "\(error)") }
        }
        let credential = try AdminToken.load(configuration.registryCredentialFile, key: "registry-credential-file", logger: logger)
        registry = RegistryClient(
            targets: registries, group: group, credential: credential, tls: try configuration.registryTLSSettings(),
            metrics: series?.registryRequests)
        listeners = try ControlListeners(group: group, limits: configuration.connectionLimits, logger: logger)
        pool = IdentityPool(store: store, keys: try IdentityKeys(masterKey: master), registry: registry, listenAddress: configuration.listen)
        do {
            try await pool.load()
        } catch let error as PoolError {
            // A key made a moment ago cannot open what host.db holds: the real one is missing.
            // Left in place, it would make every later start blame a wrong key instead.
            if case .unreadableKey(let name, _) = error, case .created(let path) = source {
                unlink(path)
                throw MasterKeyError.missing(path: path, identity: name)
            }
            throw error
        }
        let fabric = Fabric(
            group: group, directory: RegistryDirectory(registry: registry, pool: pool), busyPoll: .microseconds(Int64(configuration.busyPoll)), logger: logger)
        // Strangers may ask for trust; every identity answers echo.
        try await fabric.setOpenPorts([HandshakeTransport.port])
        try await EchoService().attach(to: fabric)
        let adminToken = try AdminToken.load(configuration.adminTokenFile, logger: logger)
        let spool = InboxSpool(directory: configuration.spoolDirectory, logger: logger)
        do { try spool.prepareRoot() } catch {
            throw ConfigurationError.invalidValue(key: "spool-dir", value: configuration.spoolDirectory, reason: "\(error)")
        }
        mailbox = try Mailbox(path: configuration.stateDirectory + "/host.db", spool: spool) { [pool] name in
            await pool.identity(named: name)?.ownerUID
        }
        apps = AppStoreCommands(
            service: AppServiceClient(path: configuration.appsSocket, group: group),
            installs: try AppInstalls(path: configuration.stateDirectory + "/host.db"), source: configuration.catalogueSource,
            sideload: configuration.appSideload, uploads: uploads, logger: logger)
        handshakes = HandshakeTransport(logger: logger)
        let dataExchange = DataExchangeService(inbox: mailbox, logger: logger)
        let events = EventStreamService(logger: logger)
        let datagrams = DatagramPorts()
        presence = Presence(
            fabric: fabric, pool: pool,
            services: [
                HandshakeTransport.port: { [handshakes] stream, name in handshakes.serve(stream, for: name) },
                DataExchangeService.port: { stream, name in dataExchange.serve(stream, for: name) },
                EventStreamService.port: { stream, name in events.serve(stream, for: name) },
            ],
            datagrams: datagrams, logger: logger)
        trust = TrustService(pool: pool, presence: presence, transport: handshakes, logger: logger)
        data = DataCommands(presence: presence, pool: pool, datagrams: datagrams, adminToken: adminToken, logger: logger)
        identityServices = IdentityCommands.Services(
            pool: pool, presence: presence, trust: trust, dataCommands: data, mailbox: mailbox, uploads: uploads, apps: apps, started: started)
        if let metricsListener, let series {
            series.watch(pool: pool, presence: presence, trust: trust)
            metrics = (MetricsServer(listener: metricsListener, registry: series.registry, logger: logger), series)
        } else {
            metrics = nil
        }
    }

    /// Opens the admin socket and every identity's socket, then returns: the host serves. Its
    /// identities are registered again in the background (they keep their addresses; the
    /// registry still knows them from before), and heartbeats follow every 30 s.
    public func start() async throws {
        let count = await pool.count
        let needed = listeners.descriptorsNeeded(listeners: count)
        let limit = ResourceLimits.raiseOpenFiles(toAtLeast: Self.roundedUp(needed))
        if limit < needed {
            logger.warning("open-file limit below what the identities need; raise LimitNOFILE=", metadata: [
                "limit": "\(limit)", "needed": "\(needed)"])
        }
        await presence.restPrivateIdentities()
        if activated.tunnels.isEmpty {
            do { try await presence.start(listen: configuration.listen) } catch {
                throw ConfigurationError.invalidValue(key: "listen", value: configuration.listen, reason: "cannot bind the tunnel socket: \(error)")
            }
        } else {
            try await presence.start(adopting: activated.tunnels)
        }
        let pollNow = pollTrigger.continuation
        do { try await presence.useBeacons(configuration.beacons) { pollNow.yield() } } catch {
            logger.warning("no beacon: relayed handshakes wait for the next poll", metadata: ["beacon": "\(configuration.beacon)", "error": "\(error)"])
        }
        let adminGroup = configuration.adminGroup.isEmpty ? nil : SystemAccounts.gid(configuration.adminGroup)
        await endLeasesOfGoneHolders()
        let runtimeDirectory = configuration.runtimeDirectory
        let socketPath: @Sendable (String) -> String = { Self.socketPath(of: $0, in: runtimeDirectory) }
        let commands = AdminCommands(pool: pool, socketPath: socketPath) { [self] change in try await identityChanged(change) }
        let adminPolicy: @Sendable () -> AccessPolicy = { AccessPolicy(.admin(adminGroup: adminGroup)) }
        let moves = MoveCommands(
            pool: pool, hostKey: hostKey, presence: presence, exported: ExportedFiles(directory: configuration.stateDirectory + "/exported"),
            apps: apps, socketPath: socketPath,
            identitiesChanged: { [self] change in try await identityChanged(change) }, logger: logger)
        let adminHandler: ControlServer.Handler = { peer, request in
            MoveControl.Command.names.contains(request.command) ? await moves.handle(request) : await commands.handle(peer, request)
        }
        if let admin = activated.admin {
            // Its path, mode and group are the socket unit's.
            try listeners.adopt(descriptor: admin, reserved: listeners.limits.reservedForAdmin, policy: adminPolicy, handler: adminHandler)
        } else {
            try listeners.listen(
                path: configuration.runtimeDirectory + "/admin.sock", mode: adminGroup == nil ? 0o600 : 0o660, owner: 0,
                group: adminGroup, reserved: listeners.limits.reservedForAdmin, policy: adminPolicy, handler: adminHandler)
        }
        let unserved = await openIdentitySockets()
        if !configuration.spoolDirectory.isEmpty { Task { [self] in await prepareSpools() } }
        // Public identities serve their own sockets (the ports they had) from READY on, registry
        // or not: peers' tunnels to them go on, and the registration below carries the address.
        await presence.joinPublicIdentities(registering: false)
        if let metrics {
            do { _ = try await metrics.server.start(on: group) } catch {
                throw ConfigurationError.invalidValue(
                    key: "metrics-listen", value: configuration.metricsListen, reason: "cannot bind the metrics endpoint: \(error)")
            }
        }
        startRegistryUpkeep()
        startHandshakePolling()
        startEndingLeases()
        logger.info("pilot-host serving", metadata: [
            "identities": "\(count - unserved)", "unserved": "\(unserved)", "runtime": "\(configuration.runtimeDirectory)"])
    }

    /// The limit is raised in steps of 1024, not one descriptor per new identity.
    private static func roundedUp(_ needed: Int) -> Int { (needed + 1023) / 1024 * 1024 }

    /// Binds every identity's socket, and removes socket files of identities that are gone
    /// (deleted while the host was down). A socket is a descriptor and a few system calls,
    /// made on every core at once. Returns how many could not be opened; each is logged (the
    /// first few by name; the rest are counted: they fail for the same reason).
    private func openIdentitySockets() async -> Int {
        let records = await pool.all
        let directory = configuration.runtimeDirectory + "/id"
        let current = Set(records.map { "\($0.name).sock" })
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where !current.contains(file) {
            unlink(directory + "/" + file)
        }
        let failures = NIOLockedValueBox<[(name: String, error: ControlFailure)]>([])
        let lanes = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        DispatchQueue.concurrentPerform(iterations: lanes) { lane in
            for index in stride(from: lane, to: records.count, by: lanes) {
                do throws(ControlFailure) {
                    try openSocket(for: records[index])
                } catch {
                    failures.withLockedValue { $0.append((records[index].name, error)) }
                }
            }
        }
        let failed = failures.withLockedValue { $0 }
        for (name, error) in failed.prefix(20) {
            logger.error("identity not served", metadata: ["identity": "\(name)", "error": "\(error)"])
        }
        if failed.count > 20 {
            logger.error("identities not served", metadata: ["count": "\(failed.count)", "logged": "20"])
        }
        return failed.count
    }

    /// Makes every identity's spool (writing one that is new whole), and removes those of
    /// identities deleted while the host was down.
    private func prepareSpools() async {
        let records = await pool.all
        let current = Set(records.map(\.name))
        let directory = configuration.spoolDirectory
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where !entry.hasPrefix(".") && !current.contains(entry) {
            await mailbox.removeSpool(of: entry)
        }
        for record in records {
            do { try await mailbox.prepareSpool(of: record.name, owner: record.ownerUID) } catch {
                logger.warning("identity spool not written", metadata: ["identity": "\(record.name)", "error": "\(error)"])
            }
        }
    }

    /// Registration at start, with the sockets' mappings (`Presence.learnMappings`), then a
    /// heartbeat every 30 s; identities the registry forgot, and those behind a socket whose
    /// mapping changed, are registered again. Runs until `stop()`.
    private func startRegistryUpkeep() {
        let pool = pool
        let logger = logger
        let presence = presence
        let registryAddress = configuration.registry
        let registry = registry
        // Another instance of the overlay's registry: the identities register there at once
        // (same keys, same addresses), rather than at the next heartbeat.
        Task {
            await registry.whenSwitched { target in
                logger.notice("registry switched", metadata: ["registry": "\(target)"])
                do {
                    let (changed, failed) = try await pool.registerAll()
                    if !changed.isEmpty { logger.warning("registry gave new addresses", metadata: ["identities": "\(changed)"]) }
                    for name in changed { await presence.leave(name) }
                    let registered = await pool.count - failed.count
                    logger.notice("identities registered again", metadata: [
                        "registry": "\(target)", "identities": "\(registered)", "failed": "\(failed.count)"])
                } catch {
                    logger.error("registration after a registry switch failed", metadata: ["registry": "\(target)", "error": "\(error)"])
                }
            }
        }
        heartbeat.withLockedValue {
            $0 = Task {
                do {
                    // Registered with the mappings the beacon reports (5 s at most, after READY).
                    await presence.learnMappings()
                    let started = ContinuousClock.now
                    let (changed, failed) = try await pool.registerAll()
                    if !changed.isEmpty { logger.warning("registry gave new addresses", metadata: ["identities": "\(changed)"]) }
                    // Joined under their old addresses: joined again (public ones just below).
                    for name in changed { await presence.leave(name) }
                    for (name, reason) in failed.sorted(by: { $0.key < $1.key }) {
                        logger.error("registration failed", metadata: ["identity": "\(name)", "reason": "\(reason)"])
                    }
                    let registered = await pool.count - failed.count
                    logger.info("identities registered", metadata: [
                        "identities": "\(registered)", "failed": "\(failed.count)",
                        "seconds": "\((started.duration(to: .now).inSeconds * 1000).rounded() / 1000)"])
                    await presence.joinPublicIdentities()
                    await presence.announce(await pool.privateNodes)
                    // The start-up's transient memory (every identity's registration at once)
                    // given back to the system.
                    malloc_trim(0)
                } catch {
                    // The registry may be down: the control sockets serve regardless and the
                    // first heartbeat registers whoever the registry does not know.
                    logger.error("registry unreachable at start", metadata: ["registry": "\(registryAddress)", "error": "\(error)"])
                }
                while !Task.isCancelled {
                    // A cancelled sleep ends the loop: no heartbeat after stop().
                    do { try await Task.sleep(for: .seconds(30)) } catch { break }
                    do {
                        let lost = try await pool.heartbeatAll()
                        await presence.announce(await pool.privateNodes)
                        await presence.followMappings()
                        if !lost.isEmpty { logger.warning("re-registered after the registry forgot them", metadata: ["identities": "\(lost)"]) }
                    } catch {
                        logger.error("heartbeat failed", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Relayed handshakes: every `handshake-poll` seconds, one batched poll for all identities;
    /// what it finds goes to the trust service.
    private func startHandshakePolling() {
        let pool = pool
        let trust = trust
        let logger = logger
        let interval = handshakeInterval
        let (triggers, trigger) = (pollTrigger.stream, pollTrigger.continuation)
        ticker.withLockedValue {
            $0 = Task {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: .seconds(interval.withLockedValue { $0 })) } catch { break }
                    trigger.yield()
                }
            }
        }
        handshakePolling.withLockedValue {
            $0 = Task {
                // A poll at every trigger: the ticker's, every `handshake-poll` seconds, or the
                // beacon's poke (several pokes while a poll runs make one more poll).
                for await _ in triggers {
                    if Task.isCancelled { break }
                    do {
                        for (name, requests, responses) in try await pool.pollHandshakes() {
                            await trust.relayed(name, requests: requests, responses: responses)
                        }
                    } catch {
                        logger.warning("handshake poll failed", metadata: ["error": "\(error)"])
                    }
                    // However often the beacon pokes, polls are spaced by 20 µs per identity
                    // (a poll signs for each), at least 20 ms: polling takes at most half a core.
                    let spacing = max(0.02, Double(await pool.count) * 0.000_02)
                    try? await Task.sleep(for: .seconds(spacing))
                }
            }
        }
    }

    /// Stops serving: ephemeral identities are deregistered and deleted, sockets removed.
    public func stop() async {
        ticker.withLockedValue { $0?.cancel() }
        pollTrigger.continuation.finish()
        if let task = handshakePolling.withLockedValue({ $0 }) {
            task.cancel()
            await task.value
        }
        if let task = heartbeat.withLockedValue({ $0 }) {
            task.cancel()
            await task.value
        }
        leases.stop()
        leaseEnds.continuation.finish()
        if let task = leaseTask.withLockedValue({ $0 }) { await task.value }
        for record in await pool.all where record.isEphemeral {
            try? await pool.delete(name: record.name)
            await apps.forget(identity: record.name)
        }
        listeners.shutdown()
        await presence.stopBeaconWatch()
        await metrics?.server.shutdown()
        // Streams end with a FIN, not by silence: what was written is delivered first.
        let unfinished = await presence.fabric.closeStreams(within: .seconds(2))
        if unfinished > 0 { logger.warning("streams still open at shutdown", metadata: ["count": "\(unfinished)"]) }
        await presence.fabric.shutdown()
        handshakes.finish()
        await registry.disconnect()
    }

    /// One line for `systemctl status`: identities, how many are on the network, tunnels, streams.
    public func statusLine() async -> String {
        let count = await pool.count
        let (joined, tunnels, streams) = await presence.load()
        return "\(count) identities, \(joined) on the network, \(tunnels) tunnels, \(streams) streams"
    }

    /// Runs `body` every `interval` on the event loop that carries the traffic (the watchdog).
    public func onTrafficLoop(every interval: Duration, _ body: @escaping @Sendable () -> Void) -> RepeatedTask {
        presence.fabric.onLoop(every: max(TimeAmount(interval), .milliseconds(1)), body)
    }

    /// Applies what can change while running (`handshake-poll`; the log level is the caller's),
    /// and serves again any identity socket whose file has gone (removed by hand, or a runtime
    /// directory cleaned). Tunnels and streams are untouched. Returns the changed settings that
    /// need a restart.
    public func reload(_ new: HostConfiguration) async -> [String] {
        handshakeInterval.withLockedValue { $0 = new.handshakePoll }
        var restart: [String] = []
        if new.stateDirectory != configuration.stateDirectory { restart.append("state-dir") }
        if new.runtimeDirectory != configuration.runtimeDirectory { restart.append("runtime-dir") }
        if new.registry != configuration.registry { restart.append("registry") }
        if new.beacon != configuration.beacon { restart.append("beacon") }
        if new.listen != configuration.listen, activated.tunnels.isEmpty { restart.append("listen") }
        if new.adminGroup != configuration.adminGroup { restart.append("admin-group") }
        if new.busyPoll != configuration.busyPoll { restart.append("busy-poll") }
        if new.adminTokenFile != configuration.adminTokenFile { restart.append("admin-token-file") }
        if new.controlConnectionsPerUser != configuration.controlConnectionsPerUser { restart.append("control-connections-per-user") }
        if new.registryCredentialFile != configuration.registryCredentialFile { restart.append("registry-credential-file") }
        if new.registryTLS != configuration.registryTLS { restart.append("registry-tls") }
        if new.registryFingerprint != configuration.registryFingerprint { restart.append("registry-fingerprint") }
        if new.appsSocket != configuration.appsSocket { restart.append("apps-socket") }
        if new.metricsListen != configuration.metricsListen { restart.append("metrics-listen") }
        if new.metricsAllowRemote != configuration.metricsAllowRemote { restart.append("metrics-allow-remote") }
        if new.metricsPerIdentity != configuration.metricsPerIdentity { restart.append("metrics-per-identity") }
        apps.reload(source: new.catalogueSource, sideload: new.appSideload)
        var reopened: [String] = []
        for record in await pool.all where !FileManager.default.fileExists(atPath: socketPath(record.name)) {
            do throws(ControlFailure) {
                try openSocket(for: record)
                reopened.append(record.name)
            } catch {
                logger.error("identity not served", metadata: ["identity": "\(record.name)", "error": "\(error)"])
            }
        }
        logger.notice("reloaded", metadata: [
            "handshake-poll": "\(new.handshakePoll)", "reopened": "\(reopened)", "need-restart": "\(restart)"])
        return restart
    }

    /// Makes `name`'s socket and open connections follow a change of its record. A new identity
    /// gets its socket and a new gate. A change of owner closes every connection opened before it
    /// (they were admitted under the old owner) and replaces the socket (atomically, never
    /// missing) with one the new owner owns. A deleted identity's gate shuts, so a connection
    /// opened for it is never served as an identity created again under its name, and its socket
    /// and connections close. Throws when the socket cannot be opened; the caller undoes the
    /// change that asked for it.
    func identityChanged(_ change: AdminCommands.Change) async throws(ControlFailure) {
        switch change {
        case .created(let name):
            guard let record = await pool.identity(named: name) else { return }
            try watchLease(of: record)
            try openSocket(for: record, newGate: true)
            await spool(of: record, replacing: true)
            // The beacon learns at once where a new private identity is, so pokes reach it.
            if !record.isPublic, record.nodeID != 0 { await presence.announce([record.nodeID]) }
            // A public identity must be reachable by strangers from the moment it exists.
            if record.isPublic {
                do { try await presence.join(name) } catch {
                    logger.error("cannot put identity on the network", metadata: ["identity": "\(name)", "error": "\(error)"])
                }
            }
        case .ownerChanged(let name):
            guard let record = await pool.identity(named: name) else { return }
            try openSocket(for: record)
            let closed = listeners.closeConnections(path: socketPath(name))
            await uploads.drop(identity: name)
            await spool(of: record, replacing: true)
            logger.notice("identity given to another owner", metadata: [
                "identity": "\(name)", "owner": "\(record.ownerUID)", "connections-closed": "\(closed)"])
        case .deleted(let name):
            // Created again meanwhile (another admin connection): that shut the old gate already.
            guard await pool.identity(named: name) == nil else { return }
            leases.unwatch(name)
            if let gate = gates.withLockedValue({ $0.removeValue(forKey: name) }) {
                gate.policy = AccessPolicy(.removed(name: name))
            }
            listeners.close(path: socketPath(name))
            let closed = listeners.closeConnections(path: socketPath(name))
            await uploads.drop(identity: name)
            await presence.leave(name)
            await mailbox.removeSpool(of: name)
            await apps.forget(identity: name)
            logger.notice("identity deleted", metadata: ["identity": "\(name)", "connections-closed": "\(closed)"])
        }
    }

    /// Makes `record`'s spool for its owner; with `replacing`, what was there (an identity of the
    /// same name, or the previous owner's) goes first.
    private func spool(of record: IdentityRecord, replacing: Bool) async {
        guard !configuration.spoolDirectory.isEmpty else { return }
        if replacing { await mailbox.removeSpool(of: record.name) }
        do { try await mailbox.prepareSpool(of: record.name, owner: record.ownerUID) } catch {
            logger.warning("identity spool not written", metadata: ["identity": "\(record.name)", "error": "\(error)"])
        }
    }

    private func socketPath(_ name: String) -> String { Self.socketPath(of: name, in: configuration.runtimeDirectory) }

    /// Where identity `name`'s control socket is, under the runtime directory `runtime`: made
    /// to its length (the listener keeps every identity's path; `+` leaves it half as long again).
    static func socketPath(of name: String, in runtime: String) -> String {
        let (directory, suffix) = ("/id/", ".sock")
        var path = ""
        path.reserveCapacity(runtime.utf8.count + directory.utf8.count + name.utf8.count + suffix.utf8.count)
        path += runtime
        path += directory
        path += name
        path += suffix
        return path
    }

    /// Serves `record`'s socket, in place of the one it had, and sets its gate to the record's
    /// owner and groups. A gate is made for an identity that has none, and with `newGate` (a
    /// new identity) in place of one left by a deleted identity of the same name, which shuts.
    private func openSocket(for record: IdentityRecord, newGate: Bool = false) throws(ControlFailure) {
        // One more socket (a replacement briefly holds two), and what is kept free besides.
        let open = listeners.count
        let needed = open + 1 + ControlListeners.reservedForHost + listeners.limits.reservedForAdmin
        let limit = ResourceLimits.raiseOpenFiles(toAtLeast: Self.roundedUp(listeners.descriptorsNeeded(listeners: open + 1)))
        guard limit >= needed else {
            throw ControlFailure(.unavailable, """
                out of open files: \(open) sockets are open and the limit is \(limit) \
                (\(ControlListeners.reservedForHost) are kept for the host itself); raise LimitNOFILE= for pilot-host
                """)
        }
        let name = record.name
        let path = socketPath(name)
        let commands = IdentityCommands(services: identityServices, name: name)
        let groups = Set(record.allowedGIDs)
        let policy = AccessPolicy(.identity(name: name, owner: record.ownerUID, allowedGroups: groups))
        let (gate, replaced) = gates.withLockedValue { gates -> (AccessGate, AccessGate?) in
            if let gate = gates[name], !newGate { return (gate, nil) }
            let gate = AccessGate(policy)
            return (gate, gates.updateValue(gate, forKey: name))
        }
        if let replaced {
            replaced.policy = AccessPolicy(.removed(name: name))
            listeners.closeConnections(path: path)
        }
        do {
            // Owner-only unless groups may use it too; the peer check decides either way.
            try listeners.listen(
                path: path, mode: groups.isEmpty ? 0o600 : 0o666, owner: record.ownerUID,
                policy: { gate.policy }, handler: { peer, request in await commands.handle(peer, request) },
                driver: { peer, connection in IdentityDriverSession(commands: commands, peer: peer, connection: connection) })
        } catch {
            logger.error("cannot open identity socket", metadata: ["identity": "\(name)", "path": "\(path)", "error": "\(error)"])
            throw ControlFailure(.unavailable, "cannot open \(path): \(error)")
        }
        gate.policy = policy
    }

    /// The host and port of `endpoint`, the setting `key`.
    static func split(_ endpoint: String, key: String) throws(ConfigurationError) -> (String, Int) {
        do {
            let parsed = try Endpoint(parsing: endpoint)
            return (parsed.host, Int(parsed.port))
        } catch { throw .invalidValue(key: key, value: endpoint, reason: "\(error)") }
    }
}
