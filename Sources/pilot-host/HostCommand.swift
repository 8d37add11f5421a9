import ArgumentParser
import Dispatch
import FoundationEssentials
import Logging
import NIOCore
import NIOPosix
import PilotHost
import PilotSystemd

/// pilot-host: many Pilot Protocol identities in one process.
@main
struct HostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilot-host", abstract: "Hosts many Pilot Protocol identities in one process.")

    @Option(help: "Config file (key = value lines); default /etc/pilot-host/pilot-host.conf if it exists.")
    var config: String?
    @Option(help: "State directory (host.db, master key).") var stateDir: String?
    @Option(help: "Runtime directory (admin.sock, id/NAME.sock).") var runtimeDir: String?
    @Option(help: "Registry address, host:port.") var registry: String?
    @Option(help: "Beacon address, host:port.") var beacon: String?
    @Option(help: "Shared tunnel UDP address, host:port.") var listen: String?
    @Option(help: "Group whose members may use the admin socket.") var adminGroup: String?
    @Option(help: "trace, debug, info, notice, warning, error, critical.") var logLevel: String?
    @Option(help: "Seconds between polls for relayed handshakes.") var handshakePoll: String?
    @Option(help: "Microseconds the tunnel loop busy-polls after traffic before sleeping (default 50; 0: off).") var busyPoll: String?
    @Option(help: "A file whose first line is the admin token broadcasts must carry.") var adminTokenFile: String?
    @Option(help: "Control connections one local user may hold open (default 64).") var controlConnectionsPerUser: String?
    @Option(help: "A file whose first line is the registry's host credential (pilot-rendezvous --print-host-credential).")
    var registryCredentialFile: String?
    @Option(help: "yes: the registry connection is TLS.") var registryTls: String?
    @Option(help: "SHA-256 (hex) of the registry certificate's DER, pinned (needs --registry-tls yes).") var registryFingerprint: String?
    @Option(help: "Where each identity's inbox is copied for the official pilotctl (HOME=DIR/NAME); empty: none.") var spoolDir: String?
    @Option(help: "Event-loop threads (0: one per core).") var eventLoopThreads: String?
    @Option(help: "yes (default): map code a page at a time as it is used, without fault-around.") var mapCodeOnDemand: String?
    @Option(help: "The app service's socket (default RUNTIME/apps.sock).") var appsSocket: String?
    @Option(help: "The app catalogue's URL(s), comma-separated: https://, http:// on loopback, file:///.") var appCatalogue: String?
    @Option(help: "The Ed25519 key(s), base64 and comma-separated, one of which must sign the catalogue.") var appCatalogueKeys: String?
    @Option(help: "yes: owners may install apps from local directories (unsigned, under the sideload policy).") var appSideload: String?
    @Option(help: "Prometheus metrics endpoint (GET /metrics), host:port with an IP address; default: none.") var metricsListen: String?
    @Option(help: "yes: metrics-listen may be an address other than loopback.") var metricsAllowRemote: String?
    @Option(help: "Series of their own for the N identities that carried the most bytes (0 to 1000; default 0: none).") var metricsPerIdentity: String?

    func run() async throws {
        let file = config ?? "/etc/pilot-host/pilot-host.conf"
        var settings = try settings(file: file)
        let logLevel = SharedLogLevel(Logger.Level(rawValue: settings.logLevel) ?? .info)
        LoggingSystem.bootstrap { label in logLevel.handler(label: label) }
        let logger = Logger(label: "pilot-host")
        CodePages.settle(onDemand: settings.mapCodeOnDemand, logger: logger)
        // Watched from the start: SIGHUP's default action would end the process.
        let incoming = signals([SIGTERM, SIGINT, SIGHUP])
        // Taken first: the variables are unset so that no child process inherits them.
        let activated = try ActivatedSockets(Systemd.listenedSockets())
        let group = MultiThreadedEventLoopGroup(numberOfThreads: settings.eventLoopThreads == 0 ? System.coreCount : settings.eventLoopThreads)
        let host = try await Host(configuration: settings, group: group, logger: logger, activated: activated)
        try await host.start()
        // Every identity is loaded and its socket open: ready.
        Systemd.notify("READY=1\nSTATUS=\(await host.statusLine())")
        let watchdog = Systemd.watchdogInterval.map { interval in
            host.onTrafficLoop(every: interval) { Systemd.notify("WATCHDOG=1") }
        }
        let status = Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(10)) } catch { break }
                Systemd.notify("STATUS=\(await host.statusLine())")
            }
        }
        for await signo in incoming {
            guard signo == SIGHUP else { break }
            Systemd.notify("RELOADING=1\nSTATUS=reloading")
            do {
                settings = try self.settings(file: file)
                logLevel.value = Logger.Level(rawValue: settings.logLevel) ?? .info
                let restart = await host.reload(settings)
                if !restart.isEmpty { logger.warning("changed settings take effect at the next restart", metadata: ["settings": "\(restart)"]) }
            } catch {
                logger.error("reload failed; running on with the settings in use", metadata: ["error": "\(error)"])
            }
            Systemd.notify("READY=1\nSTATUS=\(await host.statusLine())")
        }
        Systemd.notify("STOPPING=1\nSTATUS=stopping")
        logger.info("shutting down")
        status.cancel()
        watchdog?.cancel()
        await host.stop()
        try await group.shutdownGracefully()
    }

    /// Defaults, then `file` (when it exists or was named), then the command line.
    private func settings(file: String) throws -> HostConfiguration {
        var settings = HostConfiguration()
        if config != nil || FileManager.default.fileExists(atPath: file) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read config file \(file)")
            }
            try settings.apply(file: text, source: file)
        }
        for (key, value) in [
            ("state-dir", stateDir), ("runtime-dir", runtimeDir), ("registry", registry), ("beacon", beacon),
            ("listen", listen), ("admin-group", adminGroup), ("log-level", logLevel),
            ("handshake-poll", handshakePoll), ("busy-poll", busyPoll),
            ("admin-token-file", adminTokenFile), ("control-connections-per-user", controlConnectionsPerUser),
            ("registry-credential-file", registryCredentialFile), ("registry-tls", registryTls), ("registry-fingerprint", registryFingerprint),
            ("spool-dir", spoolDir), ("event-loop-threads", eventLoopThreads), ("map-code-on-demand", mapCodeOnDemand), ("apps-socket", appsSocket),
            ("app-catalogue", appCatalogue), ("app-catalogue-keys", appCatalogueKeys), ("app-sideload", appSideload),
            ("metrics-listen", metricsListen), ("metrics-allow-remote", metricsAllowRemote),
            ("metrics-per-identity", metricsPerIdentity),
        ] {
            if let value { try settings.set(key, value) }
        }
        return settings
    }
}
