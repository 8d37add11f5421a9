public import MCP
public import PilotWire

/// The arguments of one tool call, read by name and checked against what the tool's schema
/// says: a missing required argument or a value of the wrong type or range is a
/// `ToolArgumentError`, which the server returns as a tool error.
public struct ToolArguments: Sendable {
    /// The tool the arguments are for, named in errors.
    public let tool: String
    /// The arguments as the client sent them.
    public let values: [String: Value]

    /// The arguments `values` of a call of `tool`.
    public init(tool: String, _ values: [String: Value]) {
        self.tool = tool
        self.values = values
    }

    /// `name`'s value, or nil when it is absent or null.
    private func value(_ name: String) -> Value? {
        guard let value = values[name], value != .null else { return nil }
        return value
    }

    /// A required, non-empty string.
    public func string(_ name: String) throws(ToolArgumentError) -> String {
        guard let text = try optionalString(name) else { throw failure(name, "is required") }
        return text
    }

    /// A string if given (an empty one is refused: it names nothing).
    public func optionalString(_ name: String) throws(ToolArgumentError) -> String? {
        guard let value = value(name) else { return nil }
        guard case .string(let text) = value else { throw failure(name, "must be a string") }
        guard !text.isEmpty else { throw failure(name, "must not be empty") }
        return text
    }

    /// A whole number in `range`, or `fallback` when absent.
    public func integer(_ name: String, default fallback: Int, in range: ClosedRange<Int>) throws(ToolArgumentError) -> Int {
        guard value(name) != nil else { return fallback }
        return try integer(name, in: range)
    }

    /// A required whole number in `range`. A number with a zero fraction counts (clients
    /// written in JavaScript may send 10 as 10.0), and so does a string of digits.
    public func integer(_ name: String, in range: ClosedRange<Int>) throws(ToolArgumentError) -> Int {
        guard let value = value(name) else { throw failure(name, "is required") }
        let number: Int?
        switch value {
        case .int(let whole): number = whole
        case .double(let real): number = real.rounded() == real && abs(real) < 1e15 ? Int(real) : nil
        case .string(let text): number = Int(text)
        default: number = nil
        }
        guard let number else { throw failure(name, "must be a whole number") }
        guard range.contains(number) else { throw failure(name, "must be \(range.lowerBound) to \(range.upperBound), not \(number)") }
        return number
    }

    /// A boolean, or `fallback` when absent.
    public func bool(_ name: String, default fallback: Bool) throws(ToolArgumentError) -> Bool {
        guard let value = value(name) else { return fallback }
        guard case .bool(let flag) = value else { throw failure(name, "must be true or false") }
        return flag
    }

    /// A JSON object, or `fallback` when absent; a string holding a JSON object counts too.
    public func object(_ name: String, default fallback: [String: JSON]) throws(ToolArgumentError) -> [String: JSON] {
        guard let value = value(name) else { return fallback }
        guard let object = try json(name, value).objectValue else { throw failure(name, "must be a JSON object") }
        return object
    }

    /// Any JSON value, or `fallback` when absent; a string is read as JSON text.
    public func jsonText(_ name: String, default fallback: JSON) throws(ToolArgumentError) -> JSON {
        guard let value = value(name) else { return fallback }
        return try json(name, value)
    }

    /// `value` as JSON: a string parsed as JSON text, anything else converted.
    private func json(_ name: String, _ value: Value) throws(ToolArgumentError) -> JSON {
        guard case .string(let text) = value else {
            guard let converted = JSON(value) else { throw failure(name, "must be JSON (binary data is not)") }
            return converted
        }
        guard let parsed = try? JSON(parsing: text) else { throw failure(name, "must be JSON text, got \(text.prefix(64))") }
        return parsed
    }

    private func failure(_ name: String, _ problem: String) -> ToolArgumentError {
        ToolArgumentError(tool: tool, argument: name, problem: problem)
    }
}

/// A tool call's argument that is missing, of the wrong type, or out of range.
public struct ToolArgumentError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The tool called.
    public var tool: String
    /// The argument's name.
    public var argument: String
    /// What is wrong with it.
    public var problem: String

    public var description: String { "\(tool): \(argument) \(problem)" }
}
