import NIOConcurrencyHelpers
import NIOCore
import PilotControl
import PilotWire

/// The host's side of the app service's socket: one connection per request (control frames,
/// one request and one reply), at most `concurrency` at once in all. A service that is not
/// there is an `unavailable` failure that says how to start it.
final class AppServiceClient: Sendable {
    let path: String
    private let group: any EventLoopGroup
    private let concurrency: Int
    private let inFlight = NIOLockedValueBox(0)

    init(path: String, group: any EventLoopGroup, concurrency: Int = 256) {
        self.path = path
        self.group = group
        self.concurrency = concurrency
    }

    /// `command`'s reply, or its failure; the wait ends after `timeout`.
    func send<Command: ControlCommand>(_ command: Command, timeout: Duration) async throws(ControlFailure) -> Command.Reply {
        let admitted = inFlight.withLockedValue { count -> Bool in
            guard count < concurrency else { return false }
            count += 1
            return true
        }
        guard admitted else { throw ControlFailure(.unavailable, "the app service has \(concurrency) requests in flight: try again") }
        defer { inFlight.withLockedValue { $0 -= 1 } }
        let body: [UInt8]
        do {
            body = try await FrameExchange.exchange(
                path: path, body: JSON.object(["command": .string(Command.name), "args": .object(command.arguments)]).encoded(),
                maxReply: ControlFrame.maxSize, timeout: timeout, group: group)
        } catch {
            switch error {
            case .unreachable:
                throw ControlFailure(.unavailable, "the app service is not running (\(error)); start it: systemctl start pilot-host-apps.socket")
            case .timedOut: throw ControlFailure(.timeout, "the app service did not answer \(Command.name) within \(timeout)")
            case .broken: throw ControlFailure(.unavailable, "the app service failed during \(Command.name): \(error)")
            }
        }
        let reply: ControlReply
        do { reply = try ControlReply(decoding: body) } catch {
            throw ControlFailure(.internalError, "the app service sent a bad reply to \(Command.name): \(error)")
        }
        return try Command.data(of: reply)
    }
}
