/// Every tool pilot-mcp serves. The official pilot-mcp's 21 (same names, same arguments), then
/// pilot-host's own: finding by tag and the app store.
public enum PilotTools {
    /// The tools, in the order `tools/list` gives them.
    public static let all: [PilotTool] = directory + messages + trust + discovery + appStore

    /// The tool named `name`.
    public static func named(_ name: String) -> PilotTool? { all.first { $0.name == name } }
}
