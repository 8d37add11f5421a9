import PilotClient
import PilotWire

extension ControlConnection {
    /// Sends `command` and returns the typed data of its reply, as `PilotClient.send` does but
    /// blocking, for the benches' client threads; an error reply is thrown as the host's
    /// `ControlFailure`.
    func send<Command: ControlCommand>(_ command: Command) throws -> Command.Reply {
        try Command.data(of: request(command.request))
    }
}
