import Foundation
import PilotWire

/// `identity create --lease -- COMMAND...`: pilotctl holds the lease (the host watches its
/// process) while COMMAND runs as the identity, then ends, and the identity with it.
enum LeaseHolder {
    /// The signals pilotctl passes on to the command.
    static let forwarded = [SIGTERM, SIGINT, SIGHUP]

    /// Runs `command` (found on `PATH`) with `PILOT_SOCKET` and `PILOT_IDENTITY` set for
    /// `identity`; SIGTERM, SIGINT and SIGHUP sent to pilotctl are passed on to it. Returns the
    /// status to exit with: the command's, or 128 plus the signal that ended it.
    static func run(_ command: [String], as identity: IdentityInfo, socket: String) throws -> Int32 {
        var environment = ProcessInfo.processInfo.environment
        environment["PILOT_SOCKET"] = socket
        environment["PILOT_IDENTITY"] = identity.name
        // pilotctl ignores the signals it forwards (a dispatch source then sees them); the
        // command gets them at their defaults and with none blocked, whatever pilotctl had.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for number in forwarded { sigaddset(&defaults, number) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let pid = PIDBox()
        let sources = forwarded.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { if let child = pid.value { kill(child, number) } }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        let arguments = command.map { strdup($0) } + [nil]
        let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            arguments.forEach { free($0) }
            variables.forEach { free($0) }
        }
        var child: pid_t = 0
        let status = posix_spawnp(&child, command[0], nil, &attributes, arguments, variables)
        guard status == 0 else {
            FileHandle.standardError.write(Data("error: cannot run \(command[0]): \(String(cString: strerror(status)))\n".utf8))
            return 127
        }
        pid.value = child
        var result: Int32 = 0
        while waitpid(child, &result, 0) < 0 {
            guard errno == EINTR else { return 1 }
        }
        pid.value = nil
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        let signalled = result & 0x7f
        return signalled == 0 ? (result >> 8) & 0xff : 128 + signalled
    }
}

/// The command's pid, for the signal handlers, which run on another thread.
private final class PIDBox: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var stored: pid_t?

    var value: pid_t? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
