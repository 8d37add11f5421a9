public import MCP

/// One argument a tool takes, as its JSON schema describes it.
public struct ToolParameter: Sendable {
    /// The JSON schema types the tools use.
    public enum Kind: String, Sendable {
        case string, integer, boolean, object
    }

    /// The argument's name.
    public var name: String
    /// Its JSON schema type.
    public var kind: Kind
    /// What it is, for the model reading the schema.
    public var description: String
    /// Whether a call must give it.
    public var isRequired: Bool
    /// What an absent argument means, shown in the schema.
    public var defaultValue: Value?

    /// A required argument.
    public static func required(_ name: String, _ kind: Kind, _ description: String) -> ToolParameter {
        ToolParameter(name: name, kind: kind, description: description, isRequired: true, defaultValue: nil)
    }

    /// An optional argument, with what its absence means.
    public static func optional(_ name: String, _ kind: Kind, _ description: String, default value: Value? = nil) -> ToolParameter {
        ToolParameter(name: name, kind: kind, description: description, isRequired: false, defaultValue: value)
    }

    /// Its schema: `type`, `description` and `default`.
    public var schema: Value {
        var members: [String: Value] = ["type": .string(kind.rawValue), "description": .string(description)]
        if let defaultValue { members["default"] = defaultValue }
        return .object(members)
    }
}
