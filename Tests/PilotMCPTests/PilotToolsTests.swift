import MCP
import PilotMCP
import XCTest

/// The tool table: the official pilot-mcp's names and arguments, pilot-host's own tools, and a
/// schema for each.
final class PilotToolsTests: XCTestCase {
    /// The official pilot-mcp's tools (npm pilotprotocol-mcp) and their arguments, required ones first.
    static let official: [String: (required: [String], optional: [String])] = [
        "pilot_search": (["keyword"], ["limit"]),
        "pilot_help": (["agent"], []),
        "pilot_query": (["agent"], ["filters"]),
        "pilot_summary": (["agent"], ["question"]),
        "pilot_send": (["peer", "message"], ["wait_seconds"]),
        "pilot_send_file": (["peer", "path"], []),
        "pilot_inbox": ([], ["limit"]),
        "pilot_received": ([], ["clear"]),
        "pilot_trust_check": (["target"], []),
        "pilot_handshake": (["target"], ["reason"]),
        "pilot_approve": (["target"], []),
        "pilot_reject": (["target"], ["reason"]),
        "pilot_untrust": (["target"], []),
        "pilot_pending": ([], []),
        "pilot_find": (["hostname"], []),
        "pilot_lookup": (["target"], []),
        "pilot_peers": ([], []),
        "pilot_ping": (["target"], ["count", "timeout_seconds"]),
        "pilot_broadcast": (["network_id", "message"], ["port"]),
        "pilot_publish": (["peer", "topic", "message"], []),
        "pilot_subscribe": (["peer", "topic"], ["count", "timeout_seconds"]),
    ]

    /// pilot-host's tools beyond the official ones.
    static let own: [String: (required: [String], optional: [String])] = [
        "pilot_find_by_tag": (["tag"], []),
        "pilot_appstore_catalogue": ([], ["search"]),
        "pilot_appstore_install": (["app_id"], ["approve", "bundle_sha256"]),
        "pilot_appstore_list": ([], []),
        "pilot_appstore_call": (["app_id", "method"], ["payload_json", "timeout_seconds"]),
    ]

    func testEveryOfficialToolIsServedWithItsArgumentsAndNothingUnlisted() {
        let expected = Self.official.merging(Self.own) { first, _ in first }
        XCTAssertEqual(Set(PilotTools.all.map(\.name)), Set(expected.keys))
        XCTAssertEqual(PilotTools.all.count, expected.count, "no tool twice")
        for tool in PilotTools.all {
            guard let arguments = expected[tool.name] else { continue }
            let schema = tool.inputSchema.objectValue ?? [:]
            let properties = schema["properties"]?.objectValue ?? [:]
            XCTAssertEqual(Set(properties.keys), Set(arguments.required + arguments.optional), tool.name)
            XCTAssertEqual(schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [], arguments.required, tool.name)
        }
    }

    func testEverySchemaIsAnObjectWhosePropertiesHaveATypeAndADescription() {
        for tool in PilotTools.all {
            XCTAssertFalse(tool.description.isEmpty, tool.name)
            let schema = tool.inputSchema.objectValue ?? [:]
            XCTAssertEqual(schema["type"], "object", tool.name)
            for (name, property) in schema["properties"]?.objectValue ?? [:] {
                let type = property.objectValue?["type"]?.stringValue
                XCTAssertTrue(["string", "integer", "boolean", "object"].contains(type ?? ""), "\(tool.name).\(name): \(String(describing: type))")
                XCTAssertFalse(property.objectValue?["description"]?.stringValue?.isEmpty ?? true, "\(tool.name).\(name)")
            }
        }
    }

    func testDefaultsAreTheOfficialOnes() {
        func defaultOf(_ tool: String, _ argument: String) -> Value? {
            PilotTools.named(tool)?.inputSchema.objectValue?["properties"]?.objectValue?[argument]?.objectValue?["default"]
        }
        XCTAssertEqual(defaultOf("pilot_search", "limit"), 10)
        XCTAssertEqual(defaultOf("pilot_send", "wait_seconds"), 30)
        XCTAssertEqual(defaultOf("pilot_inbox", "limit"), 10)
        XCTAssertEqual(defaultOf("pilot_ping", "count"), 1)
        XCTAssertEqual(defaultOf("pilot_ping", "timeout_seconds"), 10)
        XCTAssertEqual(defaultOf("pilot_subscribe", "count"), 1)
        XCTAssertEqual(defaultOf("pilot_subscribe", "timeout_seconds"), 60)
        XCTAssertEqual(defaultOf("pilot_received", "clear"), false)
        XCTAssertEqual(defaultOf("pilot_appstore_install", "approve"), false)
    }

    func testOnlyToolsThatChangeNothingAreMarkedReadOnly() {
        let readOnly = Set(PilotTools.all.filter(\.readOnly).map(\.name))
        for name in ["pilot_send", "pilot_send_file", "pilot_handshake", "pilot_approve", "pilot_untrust", "pilot_appstore_install", "pilot_received"] {
            XCTAssertFalse(readOnly.contains(name), name)
        }
        for name in ["pilot_inbox", "pilot_find", "pilot_find_by_tag", "pilot_trust_check", "pilot_peers"] {
            XCTAssertTrue(readOnly.contains(name), name)
        }
    }
}
