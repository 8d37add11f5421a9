import Foundation
import PilotWire

/// `identity create --lease -- COMMAND...`: pilotctl holds the lease (the host watches its
/// process) while COMMAND runs as the identity, then ends, and the identity with it.
enum LeaseHolder {
    /// Runs `command` with `PILOT_SOCKET` and `PILOT_IDENTITY` set for `identity`; SIGTERM, SIGINT
    /// and SIGHUP sent to pilotctl are passed on to it. Returns the status to exit with: the
    /// command's, or 128 plus the signal that ended it.
    static func run(_ command: [String], as identity: IdentityInfo, socket: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        var environment = ProcessInfo.processInfo.environment
        environment["PILOT_SOCKET"] = socket
        environment["PILOT_IDENTITY"] = identity.name
        process.environment = environment
        let forwarded = [SIGTERM, SIGINT, SIGHUP]
        let sources = forwarded.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { if process.isRunning { kill(process.processIdentifier, number) } }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        do { try process.run() } catch {
            FileHandle.standardError.write(Data("error: cannot run \(command[0]): \(error)\n".utf8))
            return 127
        }
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }
}
