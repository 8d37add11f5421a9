import Foundation
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import PilotControl
import PilotCrypto
import PilotStore
import PilotWire

/// The composition of a running pilot-host: master key, `host.db`, the identity pool and its
/// registry client, the admin socket and one control socket per identity, heartbeats.
public final class Host: Sendable {
    public let configuration: HostConfiguration
    private let logger: Logger
    private let group: any EventLoopGroup
    private let pool: IdentityPool
    private let registry: RegistryClient
    private let admin: NIOLockedValueBox<ControlServer?> = NIOLockedValueBox(nil)
    private let sockets: NIOLockedValueBox<[String: ControlServer]> = NIOLockedValueBox([:])
    private let heartbeat: NIOLockedValueBox<Task<Void, Never>?> = NIOLockedValueBox(nil)

    /// Opens the state (creating it on first start) and loads every identity.
    public init(configuration: HostConfiguration, group: any EventLoopGroup, logger: Logger) async throws {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        for directory in [configuration.stateDirectory, configuration.runtimeDirectory, configuration.runtimeDirectory + "/id"] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        chmod(configuration.stateDirectory, 0o700)
        chmod(configuration.runtimeDirectory, 0o755)
        chmod(configuration.runtimeDirectory + "/id", 0o755)
        let (master, source) = try MasterKey.load(stateDirectory: configuration.stateDirectory)
        logger.info("master key", metadata: ["source": "\(source)"])
        let store = try HostStore(path: configuration.stateDirectory + "/host.db")
        let (registryHost, registryPort) = try Self.split(configuration.registry)
        registry = RegistryClient(host: registryHost, port: registryPort, group: group)
        pool = IdentityPool(store: store, keys: try IdentityKeys(masterKey: master), registry: registry, listenAddress: configuration.listen)
        try await pool.load()
    }

    /// Registers every identity, opens the admin socket and every identity's socket, starts
    /// heartbeats. Returns when all of it serves.
    public func start() async throws {
        do {
            let (changed, failed) = try await pool.registerAll()
            if !changed.isEmpty { logger.warning("registry gave new addresses", metadata: ["identities": "\(changed)"]) }
            for (name, reason) in failed { logger.error("registration failed", metadata: ["identity": "\(name)", "reason": "\(reason)"]) }
        } catch {
            // The registry may be down; the host still serves its control sockets and retries.
            logger.error("registry unreachable at start", metadata: ["registry": "\(configuration.registry)", "error": "\(error)"])
        }
        let adminGroup = configuration.adminGroup.isEmpty ? nil : SystemAccounts.gid(configuration.adminGroup)
        let commands = AdminCommands(pool: pool) { [self] name in await refreshSocket(name) }
        let adminServer = ControlServer(
            path: configuration.runtimeDirectory + "/admin.sock", policy: { AccessPolicy(.admin(adminGroup: adminGroup)) },
            logger: logger, handler: { peer, request in await commands.handle(peer, request) })
        try await adminServer.start(on: group, mode: adminGroup == nil ? 0o600 : 0o660)
        if let adminGroup { chown(adminServer.path, 0, adminGroup) }
        admin.withLockedValue { $0 = adminServer }
        for name in await pool.names { await refreshSocket(name) }
        let pool = pool
        let logger = logger
        heartbeat.withLockedValue {
            $0 = Task {
                while !Task.isCancelled {
                    // A cancelled sleep ends the loop: no heartbeat after stop().
                    do { try await Task.sleep(for: .seconds(30)) } catch { break }
                    do {
                        let lost = try await pool.heartbeatAll()
                        if !lost.isEmpty { logger.warning("re-registered after the registry forgot them", metadata: ["identities": "\(lost)"]) }
                    } catch {
                        logger.error("heartbeat failed", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        let count = await pool.names.count
        logger.info("pilot-host serving", metadata: ["identities": "\(count)", "runtime": "\(configuration.runtimeDirectory)"])
    }

    /// Stops serving: ephemeral identities are deregistered and deleted, sockets removed.
    public func stop() async {
        if let task = heartbeat.withLockedValue({ $0 }) {
            task.cancel()
            await task.value
        }
        for record in await pool.all where record.isEphemeral {
            try? await pool.delete(name: record.name)
        }
        await admin.withLockedValue({ $0 })?.stop()
        for server in sockets.withLockedValue({ Array($0.values) }) { await server.stop() }
        await registry.disconnect()
    }

    /// Makes `name`'s socket match its record: created for a new identity, re-owned after
    /// set-owner, removed after delete.
    func refreshSocket(_ name: String) async {
        if let old = sockets.withLockedValue({ $0.removeValue(forKey: name) }) { await old.stop() }
        guard let identity = await pool.identity(named: name) else { return }
        let record = identity.record
        let path = configuration.runtimeDirectory + "/id/\(name).sock"
        let commands = IdentityCommands(pool: pool, name: name)
        let server = ControlServer(
            path: path,
            policy: { AccessPolicy(.identity(name: name, owner: record.ownerUID, allowedGroups: Set(record.allowedGIDs))) },
            logger: logger
        ) { _, request in
            await commands.handle(request)
        }
        do {
            // Owner-only unless groups may use it too; the peer check decides either way.
            try await server.start(on: group, mode: record.allowedGIDs.isEmpty ? 0o600 : 0o666)
            chown(path, record.ownerUID, UInt32.max)
            sockets.withLockedValue { $0[name] = server }
        } catch {
            logger.error("cannot open identity socket", metadata: ["identity": "\(name)", "path": "\(path)", "error": "\(error)"])
        }
    }

    static func split(_ endpoint: String) throws -> (String, Int) {
        guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
            throw ConfigurationError.invalidValue(key: "registry", value: endpoint, reason: "must be host:port")
        }
        return (String(endpoint[..<colon]), port)
    }
}
