import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import PilotHost

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

    func run() async throws {
        var settings = HostConfiguration()
        let file = config ?? "/etc/pilot-host/pilot-host.conf"
        if config != nil || FileManager.default.fileExists(atPath: file) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read config file \(file)")
            }
            try settings.apply(file: text, source: file)
        }
        for (key, value) in [
            ("state-dir", stateDir), ("runtime-dir", runtimeDir), ("registry", registry), ("beacon", beacon),
            ("listen", listen), ("admin-group", adminGroup), ("log-level", logLevel),
            ("handshake-poll", handshakePoll),
        ] {
            if let value { try settings.set(key, value) }
        }
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "pilot-host")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let host = try await Host(configuration: settings, group: group, logger: logger)
        try await host.start()
        await waitForTermination()
        logger.info("shutting down")
        await host.stop()
        try await group.shutdownGracefully()
    }
}

/// Returns on SIGTERM or SIGINT.
func waitForTermination() async {
    let sources = SignalSources()
    let signals = AsyncStream<Int32> { continuation in
        for signo in [SIGTERM, SIGINT] {
            sources.watch(signo) { continuation.yield(signo) }
        }
    }
    for await _ in signals { break }
    sources.cancel()
}

/// Keeps the dispatch signal sources alive while they are watched.
private final class SignalSources: @unchecked Sendable {
    // @unchecked: `sources` is only touched on the "signals" queue's setup path and in cancel,
    // which runs after the stream has ended.
    private let queue = DispatchQueue(label: "signals")
    private var sources: [any DispatchSourceSignal] = []

    func watch(_ signo: Int32, _ handler: @escaping @Sendable () -> Void) {
        signal(signo, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
        source.setEventHandler(handler: handler)
        source.resume()
        sources.append(source)
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
