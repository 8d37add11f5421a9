public import ArgumentParser
import Dispatch
import Foundation
public import Logging
import NIOCore
import NIOPosix
import PilotCrypto
import PilotMetrics
import PilotNet
import PilotRendezvous
import PilotSystemd
import PilotWire

/// pilot-rendezvous: the registry (TCP, optional TLS), the beacon (UDP) and optionally the
/// nameserver and directory (nodes of the overlay) of a Pilot overlay, state under --state-dir.
@main
struct RendezvousCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilot-rendezvous",
        abstract: "Registry, beacon, nameserver and directory for a Pilot Protocol overlay, wire-compatible with the official 1.18 daemon.")

    @Option(help: "Registry TCP address (host:port).")
    var registryAddr = "0.0.0.0:9000"

    @Option(help: "Beacon UDP address (host:port).")
    var beaconAddr = "0.0.0.0:9001"

    @Option(
        help: """
            Beacon address handed to nodes by beacon_list (host:port); default: --beacon-addr, with 0.0.0.0 replaced by 127.0.0.1. \
            With --database also the address announced to the other beacons in the database, which they send to and know \
            this one's datagrams by (needed when --beacon-addr is a wildcard).
            """)
    var advertiseBeacon: String?

    @Option(
        help: """
            The overlay's other beacons (host:port, comma-separated), as they send from: each is told every 10 s which \
            nodes this one knows, and relays and punch requests for their nodes go to them; only their syncs are heeded. \
            With --database the beacons found there are peers too.
            """)
    var beaconPeers: String?

    @Option(
        help: """
            This beacon's id in its syncs to peers; default: a random one (with --database, one no live beacon in the \
            database holds; an id given that a live beacon at another address holds is refused at start).
            """)
    var beaconID: UInt32?

    @Option(help: "UDP address (host:port) of the nameserver, a node of the overlay answering port 53; default: no nameserver.")
    var nameserverAddr: String?

    @Option(help: "Host registered as the nameserver node's endpoint; default: the host of --nameserver-addr, with 0.0.0.0 replaced by 127.0.0.1.")
    var advertiseNameserver: String?

    @Option(help: "Registry hostname of the nameserver node.")
    var nameserverHostname = "nameserver"

    @Flag(help: "Run the directory agent (hostname list-agents), a node of the overlay answering /help and /data on port 1001.")
    var directory = false

    @Option(help: "UDP address (host:port) of the directory agent's node; giving it runs the directory (default with --directory: 0.0.0.0:9003).")
    var directoryAddr: String?

    @Option(help: "Host registered as the directory node's endpoint; default: the host of --directory-addr, with 0.0.0.0 replaced by 127.0.0.1.")
    var advertiseDirectory: String?

    @Option(help: "Registry hostname of the directory node, and the source named in its answers.")
    var directoryHostname = "list-agents"

    @Option(help: "Questions one node may ask the directory per second (burst: five seconds' worth).")
    var directoryQuestionsPerSecond: Double = 2

    @Option(help: "Directory for registry.db (unless --database) and nameserver.key, directory.key.")
    var stateDir = "/var/lib/pilot-rendezvous"

    @Option(
        help: """
            The registry's state in PostgreSQL instead of registry.db: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, \
            or postgres://USER@/DATABASE?host=/socket/dir. Several instances may share one \
            database and answer as one registry; their beacons find each other there and become peers \
            (see --advertise-beacon).
            """)
    var database: String?

    @Option(help: "File whose first line is the database's password (a systemd credential, say): kept out of the command line, which every local user can read.")
    var databasePasswordFile: String?

    @Option(help: "Move the state in this registry.db (SQLite) into the empty --database, then exit (pilot-rendezvous stopped first).")
    var importRegistryDb: String?

    @Flag(help: "Serve the registry over TLS (needs --tls-cert and --tls-key).")
    var tls = false

    @Option(help: "PEM certificate chain for --tls.")
    var tlsCert: String?

    @Option(help: "PEM private key for --tls.")
    var tlsKey: String?

    @Option(help: "New node keys accepted per second from one IP address (burst: ten seconds' worth).")
    var newKeysPerSecond: Double = 100

    @Option(
        help: """
            New node keys accepted per second from all sources together (burst: ten seconds' worth); \
            hosts presenting the host credential are exempt.
            """)
    var allNewKeysPerSecond: Double = 100

    @Option(help: "Days a node may stay offline before it is deleted (a tombstone keeps its id and key hash).")
    var retentionDays: Double = 30

    @Flag(help: "Print the host credential derived from the admin token (for pilot-host's registry-credential-file) and exit.")
    var printHostCredential = false

    @Option(help: "Requests per second one registry connection may make (burst: two seconds' worth).")
    var connectionRequestsPerSecond: Double = 1000

    @Option(
        help: """
            File whose first line is the registry's admin token, which `pilotctl network create` must present \
            (default: $PILOT_ADMIN_TOKEN; with neither, no network can be created).
            """)
    var adminTokenFile: String?

    @Option(help: "Prometheus metrics endpoint (GET /metrics), host:port with an IP address; default: none.")
    var metricsListen: String?

    @Flag(help: "Let --metrics-listen be an address other than loopback.")
    var metricsAllowRemote = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        if tls, tlsCert == nil || tlsKey == nil { throw ValidationError("--tls needs --tls-cert and --tls-key") }
        if !tls, tlsCert != nil || tlsKey != nil { throw ValidationError("--tls-cert/--tls-key need --tls") }
        if !(newKeysPerSecond > 0) { throw ValidationError("--new-keys-per-second must be positive") }
        if !(allNewKeysPerSecond > 0) { throw ValidationError("--all-new-keys-per-second must be positive") }
        if !(retentionDays > 0) { throw ValidationError("--retention-days must be positive") }
        if printHostCredential, try adminToken() == nil {
            throw ValidationError("--print-host-credential needs the admin token (--admin-token-file or $PILOT_ADMIN_TOKEN)")
        }
        if !(connectionRequestsPerSecond > 0) { throw ValidationError("--connection-requests-per-second must be positive") }
        _ = try adminToken()
        _ = try Self.split(registryAddr)
        _ = try Self.split(beaconAddr)
        _ = try beaconPeerAddresses()
        if let nameserverAddr { _ = try Self.split(nameserverAddr) }
        if let directoryAddr { _ = try Self.split(directoryAddr) }
        if !(directoryQuestionsPerSecond > 0) { throw ValidationError("--directory-questions-per-second must be positive") }
        if directoryHostname.isEmpty { throw ValidationError("--directory-hostname must not be empty: askers find the directory by it") }
        _ = try metricsListener()
        if importRegistryDb != nil, database == nil { throw ValidationError("--import-registry-db needs --database: where to move the state") }
        if try postgres() != nil, advertiseBeacon == nil, try Self.isWildcard(Self.split(beaconAddr).0) {
            throw ValidationError(
                "--database with a wildcard --beacon-addr needs --advertise-beacon HOST:PORT: the address the other beacons in the database send to")
        }
        if let advertiseBeacon {
            do { _ = try Endpoint(parsing: advertiseBeacon) } catch { throw ValidationError("--advertise-beacon \(advertiseBeacon): \(error)") }
        }
    }

    /// Where the metrics endpoint listens, or nil for none.
    func metricsListener() throws -> MetricsListener? {
        guard let metricsListen else { return nil }
        do { return try MetricsListener(parsing: metricsListen, allowRemote: metricsAllowRemote) } catch {
            throw ValidationError("--metrics-listen: \("\(error)".replacingOccurrences(of: "(metrics-allow-remote)", with: "(--metrics-allow-remote)"))")
        }
    }

    /// Where --database says the state is; nil: registry.db in --state-dir.
    func postgres() throws -> PostgresLocation? {
        guard let database else {
            if databasePasswordFile != nil { throw ValidationError("--database-password-file needs --database") }
            return nil
        }
        var location: PostgresLocation
        do { location = try PostgresLocation(parsing: database) } catch { throw ValidationError("--database \(error)") }
        if let databasePasswordFile {
            guard location.password == nil else {
                throw ValidationError("--database names a password and --database-password-file gives one: keep the file, and the URL without it")
            }
            do { location.password = try TokenFile.read(databasePasswordFile) } catch {
                throw ValidationError("--database-password-file \(databasePasswordFile): \(error)")
            }
        }
        return location
    }

    /// The admin token: the first line of --admin-token-file, else `PILOT_ADMIN_TOKEN`, else none.
    func adminToken() throws -> String? {
        guard let adminTokenFile else {
            let fromEnvironment = ProcessInfo.processInfo.environment["PILOT_ADMIN_TOKEN"] ?? ""
            return fromEnvironment.isEmpty ? nil : fromEnvironment
        }
        do { return try TokenFile.read(adminTokenFile) } catch {
            throw ValidationError("--admin-token-file \(adminTokenFile): \(error)")
        }
    }

    /// The peers of `--beacon-peers`, resolved.
    func beaconPeerAddresses() throws -> [SocketAddress] {
        try (beaconPeers ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { text in
            do {
                let endpoint = try Endpoint(parsing: text)
                return try SocketAddress.makeAddressResolvingHost(endpoint.host, port: Int(endpoint.port))
            } catch { throw ValidationError("--beacon-peers \(text): \(error)") }
        }
    }

    /// Whether `host` binds every address (0.0.0.0, ::), so it tells nobody where to send.
    static func isWildcard(_ host: String) -> Bool {
        ["0.0.0.0", "::", "[::]", ""].contains(host)
    }

    /// A listen address: `host:port`, `[v6]:port`, or `:port` for every IPv4 address.
    static func split(_ text: String) throws -> (String, Int) {
        do {
            let endpoint = try Endpoint(parsing: text, defaultHost: "0.0.0.0")
            return (endpoint.host, Int(endpoint.port))
        } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        if printHostCredential, let token = try adminToken() {
            FileHandle.standardOutput.write(Data((Registry.hostCredential(adminToken: token) + "\n").utf8))
            return
        }
        let level = SharedLogLevel(logLevel)
        LoggingSystem.bootstrap { label in level.handler(label: label) }
        let logger = Logger(label: "pilot-rendezvous")
        if let importRegistryDb, let location = try postgres() {
            do {
                let summary = try RegistryImport.run(registryDB: importRegistryDb, into: location, logger: logger)
                FileHandle.standardOutput.write(Data("imported \(importRegistryDb) into \(location): \(summary)\n".utf8))
                return
            } catch {
                throw StartFailure(description: "--import-registry-db \(importRegistryDb): \(error)")
            }
        }
        let (registryHost, registryPort) = try Self.split(registryAddr)
        let (beaconHost, beaconPort) = try Self.split(beaconAddr)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let metricsListener = try metricsListener()
        let metrics = metricsListener.map { _ in RendezvousMetrics() }

        var beaconConfiguration = BeaconServer.Configuration(host: beaconHost, port: beaconPort)
        beaconConfiguration.peers = try beaconPeerAddresses()
        if let beaconID { beaconConfiguration.beaconID = beaconID }
        let beacon = BeaconServer(configuration: beaconConfiguration, logger: logger)
        let beaconAddress = try await beacon.start(on: group)
        let advertised = advertiseBeacon
            ?? "\(advertisedHost(bound: beaconHost)):\(beaconAddress.port ?? beaconPort)"
        // With a database, the beacons of the instances sharing it are each other's peers.
        var roster: BeaconRoster?
        if let location = try postgres() {
            let configuration = BeaconRoster.Configuration(
                address: advertiseBeacon ?? "\(beaconAddress.ipAddress ?? beaconHost):\(beaconAddress.port ?? beaconPort)",
                beaconID: beaconID)
            let announced = BeaconRoster(location: location, configuration: configuration, beacon: beacon, logger: logger)
            do { try announced.start() } catch {
                throw StartFailure(description: "--database: cannot announce the beacon in \(location): \(error)")
            }
            roster = announced
        }

        var registryConfiguration = Registry.Configuration()
        registryConfiguration.beaconAddresses = [advertised]
        registryConfiguration.registrationsPerSecond = newKeysPerSecond
        registryConfiguration.handshakeQueued = { node in beacon.notify(node: node) }
        // A resolve gives where the beacon sees a node's tunnel socket, when it is from the IP the
        // node registered from (see `Registry.endpoint(of:)`).
        registryConfiguration.observedEndpoint = { node in beacon.observedEndpoint(of: node) }
        registryConfiguration.adminToken = try adminToken()
        registryConfiguration.hostCredential = registryConfiguration.adminToken.map { Registry.hostCredential(adminToken: $0) }
        registryConfiguration.newKeysPerSecond = allNewKeysPerSecond
        registryConfiguration.retention = retentionDays * 86400
        let registry: Registry
        var postgresStore: PostgresRegistryStore?
        if let location = try postgres() {
            // The nameserver's and directory's keys are still kept in --state-dir.
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
            let store: PostgresRegistryStore
            do {
                store = try PostgresRegistryStore(location: location, logger: logger)
            } catch {
                throw StartFailure(description: "--database: cannot use \(location): \(error)")
            }
            registry = try Registry(postgres: store, configuration: registryConfiguration)
            postgresStore = store
        } else {
            registry = try Registry(stateDirectory: stateDir, configuration: registryConfiguration)
        }
        beacon.hideEndpoints { node in registry.isRelayOnly(node) }
        var serverConfiguration = RegistryServer.Configuration(
            host: registryHost, port: registryPort, tlsCertificatePath: tlsCert, tlsKeyPath: tlsKey)
        serverConfiguration.requestsPerSecond = connectionRequestsPerSecond
        serverConfiguration.metrics = metrics?.registryRequests
        let server = RegistryServer(registry: registry, configuration: serverConfiguration, logger: logger)
        let registryAddress = try await server.start(on: group)
        // What clients pin: logged (journal) and printed, so the operator need not compute it.
        let fingerprint = try tlsCert.map { try RegistryServer.fingerprint(ofCertificateAt: $0) }
        if let fingerprint {
            logger.notice("registry TLS certificate", metadata: ["fingerprint": "\(fingerprint)", "certificate": "\(tlsCert ?? "")"])
        }

        var metricsServer: MetricsServer?
        var metricsLine = ""
        if let metricsListener, let metrics {
            metrics.watch(registry, beacon: beacon)
            let server = MetricsServer(listener: metricsListener, registry: metrics.registry, logger: logger)
            let address = try await server.start(on: group)
            metricsServer = server
            metricsLine = "metrics \(address.ipAddress ?? metricsListener.endpoint.host):\(address.port ?? 0)\n"
        }

        var nameserver: Nameserver?
        var nameserverLine = ""
        if let nameserverAddr {
            let (host, port) = try Self.split(nameserverAddr)
            var configuration = Nameserver.Configuration(host: host, port: port, stateDirectory: stateDir)
            configuration.advertiseHost = advertiseNameserver
            configuration.hostname = nameserverHostname.isEmpty ? nil : nameserverHostname
            let service = Nameserver(registry: registry, configuration: configuration, logger: logger)
            let (socket, address) = try await service.start(on: group)
            nameserver = service
            nameserverLine = "nameserver \(socket.ipAddress ?? host):\(socket.port ?? port) \(address)\n"
        }

        var directoryAgent: DirectoryAgent?
        var directoryLine = ""
        if directory || directoryAddr != nil {
            let (host, port) = try Self.split(directoryAddr ?? "0.0.0.0:9003")
            var configuration = DirectoryAgent.Configuration(host: host, port: port, stateDirectory: stateDir)
            configuration.advertiseHost = advertiseDirectory
            configuration.hostname = directoryHostname
            configuration.questionsPerSecond = directoryQuestionsPerSecond
            let agent = try DirectoryAgent(registry: registry, configuration: configuration, logger: logger)
            let (socket, address) = try await agent.start(on: group)
            directoryAgent = agent
            directoryLine = "directory \(socket.ipAddress ?? host):\(socket.port ?? port) \(address)\n"
        }

        logger.info(
            "pilot-rendezvous serving",
            metadata: [
                "registry": "\(registryAddress)", "beacon": "\(beaconAddress)", "tls": "\(tls)",
                "state": "\(registry.databasePath)", "nodes": "\(registry.nodeCount)", "admin-token": "\(registryConfiguration.adminToken != nil)",
            ])
        // One line each on stdout, for scripts that start us on port 0.
        let registryLine = "registry \(registryAddress.ipAddress ?? registryHost):\(registryAddress.port ?? registryPort)"
        let beaconLine = "beacon \(beaconAddress.ipAddress ?? beaconHost):\(beaconAddress.port ?? beaconPort)"
        let fingerprintLine = fingerprint.map { "registry-fingerprint \($0)\n" } ?? ""
        FileHandle.standardOutput.write(Data((registryLine + "\n" + beaconLine + "\n" + nameserverLine + directoryLine + fingerprintLine + metricsLine).utf8))

        Systemd.notify("READY=1\nSTATUS=\(registry.nodeCount) nodes")
        let watchdog = Systemd.watchdogInterval.map { interval in
            group.next().scheduleRepeatedTask(initialDelay: .zero, delay: max(TimeAmount(interval), .milliseconds(1))) { _ in
                // On an event loop: the count only when the registry is not busy on its database.
                Systemd.notify("WATCHDOG=1" + (registry.nodeCountIfIdle.map { "\nSTATUS=\($0) nodes" } ?? ""))
            }
        }
        await Self.waitForTermination()
        Systemd.notify("STOPPING=1")
        watchdog?.cancel()
        logger.info("shutting down")
        await nameserver?.shutdown()
        await directoryAgent?.shutdown()
        await metricsServer?.shutdown()
        try await server.shutdown()
        postgresStore?.stopListening()
        roster?.shutdown()
        try await beacon.shutdown()
        try await group.shutdownGracefully()
    }

    /// Returns on SIGTERM or SIGINT.
    static func waitForTermination() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let queue = DispatchQueue(label: "signals")
            let once = Once()
            for signo in [SIGTERM, SIGINT] {
                signal(signo, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
                source.setEventHandler { if once.fire() { continuation.resume() } }
                source.resume()
                once.keep(source)
            }
        }
    }
}

/// Why the rendezvous could not start, as printed before it exits 1.
private struct StartFailure: Error, CustomStringConvertible {
    let description: String
}

/// Resumes a continuation once, keeping the signal sources alive meanwhile.
private final class Once: @unchecked Sendable {
    // @unchecked: mutated only on the "signals" queue and during setup before any signal.
    private var fired = false
    private var sources: [any DispatchSourceSignal] = []

    func fire() -> Bool {
        defer { fired = true }
        return !fired
    }

    func keep(_ source: any DispatchSourceSignal) { sources.append(source) }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
