import ArgumentParser
import Foundation
import PilotClient
import PilotWire

/// pilotctl: talks to pilot-host's admin socket and to an identity's own socket.
@main
struct Pilotctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilotctl", abstract: "Control pilot-host and its identities.",
        discussion: """
            Global flags (--json, --identity NAME, --runtime-dir DIR) may stand anywhere: before the \
            subcommand, after it, or between the words of a nested one (pilotctl --json info, \
            pilotctl info --json, pilotctl identity --json list). Nothing after a literal -- moves.

            The identity a command acts as, first found: --identity NAME (the socket \
            RUNTIME/id/NAME.sock); $PILOT_SOCKET (the path of an identity socket, used as it is); \
            $PILOT_IDENTITY (a name, as --identity); else the only identity socket under RUNTIME/id \
            that you may open. RUNTIME: --runtime-dir, else $PILOT_RUNTIME_DIR, else /run/pilot-host. \
            The identity commands use RUNTIME/admin.sock.

            The reference pilotctl's names work too: dgram (send-datagram), lookup HOSTNAME, \
            extras SUBCOMMAND (set-tags, clear-tags, set-hostname, clear-hostname, connect, send, \
            recv, dgram, listen, broadcast, connections, peers, bench), version, deregister, rotate-key, \
            prefer-direct, disconnect, traceroute, trusted list (the agents the overlay's directory \
            lists). Not available on \
            pilot-host yet (they fail with code unsupported): \(Unavailable.names.joined(separator: ", ")).
            """,
        version: pilotHostVersion,
        subcommands: [
            IdentityCommand.self, InfoCommand.self, SetHostname.self, ClearHostname.self, SetTags.self, ClearTags.self,
            SetPublic.self, SetPrivate.self, Lookup.self, Find.self, Ping.self,
            Handshake.self, Pending.self, Approve.self, Reject.self, Untrust.self, TrustList.self, SendMessage.self, Inbox.self, SendFile.self, Received.self, Subscribe.self, Publish.self, Bench.self, Connections.self, Peers.self, Send.self, Connect.self, Recv.self, Listen.self, SendDatagram.self,
            NetworkCommand.self, Broadcast.self, Extras.self, Version.self, HealthCommand.self, Deregister.self, RotateKey.self,
            PreferDirect.self, Disconnect.self, Traceroute.self, TrustedCommand.self, AppStore.self, DirectoryCommand.self,
            HostKeyCommand.self,
        ])

    /// Parses the command line with the global flags put where the subcommand reads them
    /// (`GlobalFlags`), and runs the command.
    static func main() {
        let arguments = SendMessage.filledWait(Array(CommandLine.arguments.dropFirst()))
        main(GlobalFlags.placed(arguments, commands: commandTree(of: Pilotctl.self)))
    }

    /// `command`'s subcommands, under their names and aliases, down to the last level.
    static func commandTree(of command: any ParsableCommand.Type) -> GlobalFlags.CommandTree {
        var tree = GlobalFlags.CommandTree()
        for subcommand in command.configuration.subcommands {
            let names = [subcommand._commandName] + subcommand.configuration.aliases
            for name in names { tree.subcommands[name] = commandTree(of: subcommand) }
        }
        return tree
    }
}

struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print the reference pilotctl's JSON envelope.") var json = false
    @Option(help: "Identity to act as (else $PILOT_SOCKET, else $PILOT_IDENTITY).") var identity: String?
    @Option(help: "pilot-host's runtime directory (or $PILOT_RUNTIME_DIR).") var runtimeDir: String?

    var runtime: String { IdentitySocket.runtimeDirectory(runtimeDir, environment: ProcessInfo.processInfo.environment) }

    /// The socket of the identity to act as (`IdentitySocket`'s rule).
    func identitySocket() throws -> String {
        try IdentitySocket.path(identity: identity, runtimeDirectory: runtime, environment: ProcessInfo.processInfo.environment)
    }

    /// Sends `command` to `socket`, prints the reply (with --json, as it came), and exits 1 on
    /// an error reply.
    func run<Command: ControlCommand>(_ command: Command, on socket: String, text: (Command.Reply) -> String) throws {
        let reply = self.reply(command.request, on: socket)
        let data = try decode(reply, of: Command.self)
        print(json ? reply.json.encodedString() : text(data))
    }

    /// Every page of a paged list (`ListPage`), asked for one after another, joined with
    /// `join` (which also takes the later page's `next`), printed as one reply.
    func runPages<Command: PagedListCommand>(
        _ command: Command.Type, on socket: String, next: (Command.Reply) -> Int64?, join: (inout Command.Reply, Command.Reply) -> Void,
        text: (Command.Reply) -> String
    ) throws {
        var whole = try call(Command(page: ListPage()), on: socket)
        var after = next(whole)
        while let page = after {
            let more = try call(Command(page: ListPage(after: page)), on: socket)
            join(&whole, more)
            after = next(more)
        }
        print(json ? ControlReply.ok(whole.json).json.encodedString() : text(whole))
    }

    /// The whole of something the host keeps, `bytes` long, read in pieces with `Command`
    /// (`received-chunk`, `inbox-chunk`); short if the host has less.
    func pieces<Command: PieceCommand>(_ command: Command.Type, id: Int64, bytes: Int, on socket: String) throws -> [UInt8] {
        var whole: [UInt8] = []
        while whole.count < bytes {
            let chunk = try call(Command(id: id, offset: whole.count), on: socket)
            guard let piece = try? Base64.decode(chunk.data), !piece.isEmpty else { break }
            whole += piece
        }
        return whole
    }

    /// `message` with its data whole: one listed without it (too large for a listing) is read in
    /// pieces (`inbox-chunk`); its text when it is UTF-8 (and not binary), else base64.
    func whole(_ message: InboxListing.Message, on socket: String) throws -> InboxListing.Message {
        guard message.truncated, let number = message.number else { return message }
        let bytes = try pieces(MessageControl.InboxChunk.self, id: number, bytes: message.bytes, on: socket)
        var whole = message
        whole.truncated = false
        if message.type != "BINARY", let text = String(validating: bytes, as: UTF8.self) { whole.text = text } else { whole.base64 = Base64.encode(bytes) }
        return whole
    }

    /// Sends `contents` to the host in pieces (`upload`), for a command that takes it by the
    /// returned upload id (`send-file`, `appstore-sideload`).
    func upload(_ contents: [UInt8], on socket: String) throws -> String {
        let upload = MessageControl.Upload.newID()
        for piece in MessageControl.Upload.pieces(of: contents, upload: upload) { _ = try call(piece, on: socket) }
        return upload
    }

    /// The data of `command`'s reply; an error reply is printed and exits 1.
    func call<Command: ControlCommand>(_ command: Command, on socket: String) throws -> Command.Reply {
        try call(command, replied: self.reply(command.request, on: socket))
    }

    /// The data of `reply`, which the host gave to `command`; an error reply is printed and
    /// exits 1.
    func call<Command: ControlCommand>(_ command: Command, replied reply: ControlReply) throws -> Command.Reply {
        try decode(reply, of: Command.self)
    }

    /// The value `check` gives; its failure is printed as an error reply and exits 1.
    func checked<Value>(_ check: () throws(ControlFailure) -> Value) throws -> Value {
        do {
            return try check()
        } catch {
            try fail(.error(error))
        }
    }

    /// `value` as `Command`'s port, checked as the host checks it.
    func port<Command: ControlCommand>(_ value: Int, for command: Command.Type) throws -> UInt16 {
        try checked { () throws(ControlFailure) in try ControlFields.port(value, of: Command.name) }
    }

    /// `value` as `Command`'s network id, checked as the host checks it.
    func networkID<Command: ControlCommand>(_ value: Int, for command: Command.Type) throws -> UInt16 {
        try checked { () throws(ControlFailure) in try ControlFields.networkID(value, of: Command.name) }
    }

    /// The typed data of `reply`; an error reply, or data that is not the command's, is printed
    /// and exits 1.
    private func decode<Command: ControlCommand>(_ reply: ControlReply, of command: Command.Type) throws -> Command.Reply {
        do {
            return try Command.data(of: reply)
        } catch {
            try fail(.error(error))
        }
    }

    /// Prints an error reply (as the reference's JSON envelope with --json) and exits 1.
    func fail(_ reply: ControlReply) throws -> Never {
        let message: String
        if case .error(let failure) = reply, !json { message = "error: \(failure.message)" } else { message = reply.json.encodedString() }
        FileHandle.standardError.write(Data((message + "\n").utf8))
        throw ExitCode(1)
    }

    /// `request`'s reply from `socket`; a socket that cannot be reached becomes an error reply.
    func reply(_ request: ControlRequest, on socket: String) -> ControlReply {
        do {
            return try ControlConnection(path: socket).request(request)
        } catch let error as ControlClientError {
            // The host runs (its admin socket is there) but this identity's socket is not: no such identity.
            let missing = socket.hasPrefix(runtime + "/id/") && !FileManager.default.fileExists(atPath: socket)
                && FileManager.default.fileExists(atPath: runtime + "/admin.sock")
            if missing {
                return .error(ControlFailure(.notFound, "no identity named \(socket.dropFirst(runtime.count + 4).dropLast(5)) on this host"))
            }
            return .error(ControlFailure(error.permission ? .permissionDenied : .notRunning, error.description))
        } catch {
            return .error(ControlFailure(.notRunning, "\(error)"))
        }
    }
}

/// Prints an error that no host replied with (a code of the reference pilotctl's own, such as
/// `auth_required` or `unsupported`, and a hint), in its JSON envelope with `json`, and exits 1.
func exitWithError(code: String, _ message: String, hint: String?, json: Bool) throws -> Never {
    let text: String
    if json {
        var envelope: [String: JSON] = ["status": "error", "code": .string(code), "error": .string(message), "message": .string(message)]
        envelope["hint"] = hint.map(JSON.string)
        text = JSON.object(envelope).encodedString()
    } else {
        text = "error: \(message)" + (hint.map { "\nhint:  \($0)" } ?? "")
    }
    FileHandle.standardError.write(Data((text + "\n").utf8))
    throw ExitCode(1)
}
