public import MCP
public import PilotWire

extension JSON {
    /// The JSON of an MCP `Value`; nil for binary data, which JSON has no type for.
    public init?(_ value: MCP.Value) {
        switch value {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .int(let number): self = .integer(Int64(number))
        case .double(let number): self = .double(number)
        case .string(let text): self = .string(text)
        case .data: return nil
        case .array(let elements):
            var converted: [JSON] = []
            for element in elements {
                guard let json = JSON(element) else { return nil }
                converted.append(json)
            }
            self = .array(converted)
        case .object(let members):
            var converted: [String: JSON] = [:]
            for (key, member) in members {
                guard let json = JSON(member) else { return nil }
                converted[key] = json
            }
            self = .object(converted)
        }
    }
}
