public import MCP
public import PilotClient
public import PilotWire

/// One tool of pilot-mcp: its name, what it does, the arguments it takes, and what it does with
/// the identity's socket. `run` returns the result as JSON; a string is shown as it is.
public struct PilotTool: Sendable {
    /// What a tool does with its checked arguments and the identity's client.
    public typealias Run = @Sendable (ToolArguments, PilotClient) async throws -> JSON

    /// The tool's name, as the official pilot-mcp names it where it has the tool.
    public let name: String
    /// What it does, for the model choosing a tool.
    public let description: String
    /// The arguments it takes.
    public let parameters: [ToolParameter]
    /// Whether it only reads (nothing sent to a peer, nothing changed).
    public let readOnly: Bool
    let run: Run

    /// A tool named `name` that takes `parameters` and does `run`.
    public init(name: String, description: String, parameters: [ToolParameter] = [], readOnly: Bool = false, run: @escaping Run) {
        self.name = name
        self.description = description
        self.parameters = parameters
        self.readOnly = readOnly
        self.run = run
    }

    /// Its input schema: an object with one property per parameter, the required ones listed.
    public var inputSchema: Value {
        var schema: [String: Value] = [
            "type": "object",
            "properties": .object(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.schema) })),
        ]
        let required = parameters.filter(\.isRequired).map { Value.string($0.name) }
        if !required.isEmpty { schema["required"] = .array(required) }
        return .object(schema)
    }

    /// The tool as `tools/list` lists it.
    public var definition: Tool {
        Tool(
            name: name, description: description, inputSchema: inputSchema,
            annotations: Tool.Annotations(readOnlyHint: readOnly, openWorldHint: true))
    }

    /// Runs the tool with `arguments` on `client`'s identity.
    public func callAsFunction(_ arguments: [String: Value], on client: PilotClient) async throws -> JSON {
        try await run(ToolArguments(tool: name, arguments), client)
    }
}
