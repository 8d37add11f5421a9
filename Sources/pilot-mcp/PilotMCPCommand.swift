import ArgumentParser
import Foundation
import Logging
import MCP
import PilotClient
import PilotMCP
import PilotWire

/// `pilot-mcp`: an MCP server on standard input and output for one identity of pilot-host,
/// reached through the identity's control socket with the caller's own rights.
@main
struct PilotMCPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pilot-mcp",
        abstract: "An MCP server (stdio) for one pilot-host identity: its tools and resources, through the identity's socket.",
        discussion: """
            The identity, first found: --identity NAME (RUNTIME/id/NAME.sock); $PILOT_SOCKET (the path of an identity \
            socket, used as it is); $PILOT_IDENTITY (a name); else the only identity socket under RUNTIME/id that you \
            may open. RUNTIME: --runtime-dir, else $PILOT_RUNTIME_DIR, else /run/pilot-host. The socket lets in the \
            identity's owner, its allowed groups and root: run pilot-mcp as one of them. It checks the socket before \
            serving and exits 1 saying why when it cannot use it. Logs go to standard error.
            """,
        version: PilotMCPServer.version)

    @Option(help: "Identity to serve (else $PILOT_SOCKET, else $PILOT_IDENTITY).") var identity: String?
    @Option(help: "pilot-host's runtime directory (or $PILOT_RUNTIME_DIR).") var runtimeDir: String?

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let environment = ProcessInfo.processInfo.environment
        let socket: String
        do {
            socket = try IdentitySocket.path(
                identity: identity, runtimeDirectory: IdentitySocket.runtimeDirectory(runtimeDir, environment: environment),
                environment: environment)
        } catch {
            Self.fail(error.description)
        }
        let client = PilotClient(socketPath: socket)
        let me: IdentityInfo
        do {
            me = try await client.info()
        } catch {
            Self.fail("cannot use the identity socket \(socket): \(Self.reason(error))" + Self.hint(for: error))
        }
        let server = try await PilotMCPServer(client: client).start(on: StdioTransport())
        Self.log("serving identity \(me.name) (\(me.address)) on stdio, through \(socket)")
        await server.waitUntilCompleted()
    }

    /// Why the socket could not be used: the host's code and message, or the socket's trouble.
    static func reason(_ error: any Error) -> String {
        switch error {
        case let failure as ControlFailure: return "\(failure.code.rawValue): \(failure.message)"
        case let trouble as ControlClientError: return trouble.description
        default: return "\(error)"
        }
    }

    /// What to do about a socket that refused us (one that is not there says it itself).
    static func hint(for error: any Error) -> String {
        let refused: Bool
        switch error {
        case let failure as ControlFailure: refused = failure.code == .permissionDenied
        case let trouble as ControlClientError: refused = trouble.permission
        default: refused = false
        }
        guard refused else { return "" }
        return "\nthe socket lets in the identity's owner, the groups it allows and root, not uid \(getuid()): "
            + "run pilot-mcp as the identity's owner, or ask the host's admin (sudo pilotctl identity set-owner)"
    }

    static func log(_ line: String) {
        FileHandle.standardError.write(Data("pilot-mcp: \(line)\n".utf8))
    }

    static func fail(_ reason: String) -> Never {
        log(reason)
        Foundation.exit(1)
    }
}
