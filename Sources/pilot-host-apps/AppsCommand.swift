import ArgumentParser
import FoundationEssentials
import Glibc
import Logging
import NIOCore
import NIOPosix
import PilotApps
import PilotControl
import PilotSystemd

/// pilot-host-apps: the app service. Fetches, verifies and unpacks app bundles, and runs each
/// identity's installed apps sandboxed (bubblewrap, Landlock, seccomp); pilot-host alone talks
/// to it, on its socket.
@main
struct AppsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilot-host-apps", abstract: "Runs pilot-host's installed apps, each in a sandbox.")

    @Option(help: "State directory (store/, state/, suspended/).") var stateDir = "/var/lib/pilot-host-apps"
    @Option(help: "The socket pilot-host connects to (unless systemd passes it).") var socket = "/run/pilot-host/apps.sock"
    @Option(help: "The user (name or uid) whose pilot-host may use the socket; root always may.") var hostUser = "pilot-host"
    @Option(help: "When run as root: the user (name or uid) apps run as.") var appUser = "pilot-apps"
    @Option(help: "Seconds an app may stay idle before it is stopped.") var idleSeconds = 300
    @Option(help: "The pilot-app-launch executable (default: beside this one, else PREFIX/libexec/pilot-host/).") var launcher: String?
    @Option(help: "The bubblewrap executable.") var bwrap = "/usr/bin/bwrap"
    @Option(help: "trace, debug, info, notice, warning, error, critical.") var logLevel = "info"

    func run() async throws {
        let level = SharedLogLevel(Logger.Level(rawValue: logLevel) ?? .info)
        LoggingSystem.bootstrap { label in level.handler(label: label) }
        let logger = Logger(label: "pilot-host-apps")
        let incoming = signals([SIGTERM, SIGINT])
        let passed = Systemd.listenedSockets()
        let hostUID = try Self.user(hostUser, role: "--host-user").uid
        var runAs: (uid: UInt32, gid: UInt32)?
        if getuid() == 0 {
            let user = try Self.user(appUser, fallback: "nobody", role: "--app-user")
            guard user.uid != 0 else { throw ValidationError("--app-user must not be root: apps never run with root's rights") }
            runAs = user
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let service = try AppService(
            settings: AppService.Settings(
                root: stateDir, launcher: launcher ?? Self.launcherPath(), bwrap: bwrap, appUser: runAs,
                idleTimeout: .seconds(max(idleSeconds, 1))),
            group: group, logger: logger)
        await service.start()
        let listeners: ControlListeners
        do {
            // pilot-host is one user with up to 256 requests in flight (AppServiceClient).
            listeners = try ControlListeners(group: group, limits: ConnectionLimits(perUser: 512), logger: logger)
            let policy = AccessPolicy(.service(name: "the app service", client: hostUID))
            if let socket = passed.first(where: { $0.isStream && $0.family == AF_UNIX }) {
                try listeners.adopt(descriptor: socket.descriptor, policy: { policy }, handler: service.handle)
            } else {
                let directory = String(socket[..<(socket.lastIndex(of: "/") ?? socket.endIndex)])
                guard AppStoreLayout.makeDirectories(directory, mode: 0o755) else {
                    throw ValidationError("cannot make \(directory): \(String(cString: strerror(errno)))")
                }
                // Root hands the socket to the host's user; otherwise it is open to all and the
                // policy (the peer's uid, at accept and before every request) decides.
                let root = getuid() == 0
                try listeners.listen(
                    path: socket, mode: root ? 0o600 : 0o666, owner: root ? hostUID : nil, policy: { policy }, handler: service.handle)
            }
        } catch {
            await service.stop()
            throw error
        }
        logger.notice("serving", metadata: ["socket": "\(socket)", "host_uid": "\(hostUID)", "apps_run_as": "\(runAs.map { "\($0.uid)" } ?? "\(getuid())")"])
        Systemd.notify("READY=1\nSTATUS=serving apps")
        let watchdog = Systemd.watchdogInterval.map { interval in
            Task {
                while !Task.isCancelled {
                    Systemd.notify("WATCHDOG=1")
                    try? await Task.sleep(for: interval / 2)
                }
            }
        }
        for await _ in incoming { break }
        Systemd.notify("STOPPING=1")
        watchdog?.cancel()
        listeners.shutdown()
        await service.stop()
        try await group.shutdownGracefully()
    }

    /// The uid and gid of `name` (a user name or a number); `fallback` when the name is unknown.
    static func user(_ name: String, fallback: String? = nil, role: String) throws -> (uid: UInt32, gid: UInt32) {
        if let uid = UInt32(name) { return (uid, getpwuid(uid).map { $0.pointee.pw_gid } ?? uid) }
        if let entry = getpwnam(name) { return (entry.pointee.pw_uid, entry.pointee.pw_gid) }
        if let fallback { return try user(fallback, role: role) }
        if name == "pilot-host" { return (0, 0) }  // not installed as a package: root's host only
        throw ValidationError("\(role) \(name): no such user")
    }

    /// pilot-app-launch beside this executable (a build directory), else where the install
    /// puts it: PREFIX/libexec/pilot-host/ for PREFIX/bin/pilot-host-apps.
    static func launcherPath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/usr/libexec/pilot-host/pilot-app-launch" }
        let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        if access(directory + "/pilot-app-launch", X_OK) == 0 { return directory + "/pilot-app-launch" }
        let prefix = String(directory[..<(directory.lastIndex(of: "/") ?? directory.endIndex)])
        return prefix + "/libexec/pilot-host/pilot-app-launch"
    }
}
