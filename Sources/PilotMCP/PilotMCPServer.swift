public import MCP
public import PilotClient
import PilotWire

/// pilot-mcp's server: the tools and resources of one identity, served through its control
/// socket, so the kernel's peer check there decides who may use the identity. Every failure of
/// a tool (bad arguments, the host's error reply, a socket that cannot be reached) is returned
/// as a tool error (`isError`) carrying its message, and the server goes on serving.
public struct PilotMCPServer: Sendable {
    /// The server's name, as `initialize` gives it.
    public static let name = "pilot-mcp"
    /// The server's version (pilot-host's), as `initialize` and `pilot-mcp --version` give it.
    public static let version = "0.1.0"

    /// The identity's client.
    public let client: PilotClient
    /// The tools served.
    public let tools: [PilotTool]
    /// The resources served.
    public let resources: [PilotResource]

    /// A server of `client`'s identity.
    public init(client: PilotClient, tools: [PilotTool] = PilotTools.all, resources: [PilotResource] = PilotResource.all) {
        self.client = client
        self.tools = tools
        self.resources = resources
    }

    /// What the server says of itself to a client's model.
    static let instructions = """
        Tools of one Pilot Protocol identity hosted by pilot-host. Directory agents: pilot_search, then pilot_help, \
        then pilot_query. Messages, files and events to another node need mutual trust: pilot_trust_check, then \
        pilot_handshake and the other side's pilot_approve. Installing an app needs the user's consent to the grants \
        pilot_appstore_install shows first.
        """

    /// Registers the handlers on a new MCP server and starts it on `transport`; returns the
    /// server, which serves until the transport ends (`waitUntilCompleted`).
    public func start(on transport: any Transport) async throws -> Server {
        let server = Server(
            name: Self.name, version: Self.version, instructions: Self.instructions,
            capabilities: Server.Capabilities(resources: .init(subscribe: false, listChanged: false), tools: .init(listChanged: false)))
        await server.withMethodHandler(ListTools.self) { _ in ListTools.Result(tools: tools.map(\.definition)) }
        await server.withMethodHandler(CallTool.self) { parameters in await call(parameters.name, arguments: parameters.arguments ?? [:]) }
        await server.withMethodHandler(ListResources.self) { _ in
            ListResources.Result(
                resources: resources.map { Resource(name: $0.name, uri: $0.uri, description: $0.description, mimeType: "application/json") })
        }
        await server.withMethodHandler(ReadResource.self) { parameters in try await read(parameters.uri) }
        try await server.start(transport: transport)
        return server
    }

    /// Calls tool `name`: its result as text (JSON, or a string as it is), or a tool error.
    public func call(_ name: String, arguments: [String: Value]) async -> CallTool.Result {
        guard let tool = tools.first(where: { $0.name == name }) else {
            return Self.failure("unknown tool \(name); tools/list names them")
        }
        do {
            let result = try await tool(arguments, on: client)
            return CallTool.Result(content: [.text(text: Self.text(of: result), annotations: nil, _meta: nil)])
        } catch {
            return Self.failure(Self.message(of: error))
        }
    }

    /// Resource `uri`'s contents, JSON text; a failure is an MCP error with its message.
    public func read(_ uri: String) async throws -> ReadResource.Result {
        guard let resource = resources.first(where: { $0.uri == uri }) else {
            throw MCPError.invalidParams("no resource \(uri); resources/list names them")
        }
        do {
            let json = try await resource.contents(on: client)
            return ReadResource.Result(contents: [.text(json.prettyEncoded(), uri: uri, mimeType: "application/json")])
        } catch {
            throw MCPError.internalError(Self.message(of: error))
        }
    }

    /// A tool's result as text: a string as it is, anything else as pretty JSON.
    static func text(of result: JSON) -> String {
        if case .string(let text) = result { return text }
        return result.prettyEncoded()
    }

    /// A tool error carrying `message`.
    static func failure(_ message: String) -> CallTool.Result {
        CallTool.Result(content: [.text(text: message, annotations: nil, _meta: nil)], isError: true)
    }

    /// What a user reads of `error`: the host's code and message, the socket's trouble, or
    /// which argument is wrong.
    public static func message(of error: any Error) -> String {
        switch error {
        case let failure as ControlFailure: return "\(failure.code.rawValue): \(failure.message)"
        case let trouble as ControlClientError: return "the identity's socket cannot be used: \(trouble.description)"
        case let argument as ToolArgumentError: return "invalid argument: \(argument.description)"
        default: return "\(error)"
        }
    }
}
