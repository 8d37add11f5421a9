import MCP
import PilotMCP
import PilotWire
import XCTest

/// Arguments read as the schemas say, and every wrong one named in its error.
final class ToolArgumentsTests: XCTestCase {
    /// The error reading `values` with `read` ends in, as a user reads it.
    func failure(_ read: (ToolArguments) throws -> Void, _ values: [String: Value]) -> String? {
        do {
            try read(ToolArguments(tool: "t", values))
            return nil
        } catch {
            return (error as? ToolArgumentError)?.description ?? "not an argument error: \(error)"
        }
    }

    func testStringsAreRequiredNonEmptyAndOfTheirType() throws {
        let arguments = ToolArguments(tool: "pilot_send", ["peer": "bob", "nothing": .null])
        XCTAssertEqual(try arguments.string("peer"), "bob")
        XCTAssertNil(try arguments.optionalString("nothing"), "null is absent")
        XCTAssertEqual(failure({ _ = try $0.string("peer") }, [:]), "t: peer is required")
        XCTAssertEqual(failure({ _ = try $0.string("peer") }, ["peer": ""]), "t: peer must not be empty")
        XCTAssertEqual(failure({ _ = try $0.string("peer") }, ["peer": 7]), "t: peer must be a string")
    }

    func testIntegersTakeWholeNumbersInRangeAndTheirDefault() throws {
        XCTAssertEqual(try ToolArguments(tool: "t", [:]).integer("limit", default: 10, in: 1...100), 10)
        XCTAssertEqual(try ToolArguments(tool: "t", ["limit": 5]).integer("limit", default: 10, in: 1...100), 5)
        XCTAssertEqual(try ToolArguments(tool: "t", ["limit": 5.0]).integer("limit", default: 10, in: 1...100), 5)
        XCTAssertEqual(try ToolArguments(tool: "t", ["limit": "9"]).integer("limit", default: 10, in: 1...100), 9)
        XCTAssertEqual(failure({ _ = try $0.integer("limit", default: 1, in: 1...100) }, ["limit": 2.5]), "t: limit must be a whole number")
        XCTAssertEqual(failure({ _ = try $0.integer("limit", default: 1, in: 1...100) }, ["limit": 0]), "t: limit must be 1 to 100, not 0")
        XCTAssertEqual(failure({ _ = try $0.integer("network_id", in: 0...65535) }, [:]), "t: network_id is required")
    }

    func testBooleansAndJSON() throws {
        XCTAssertTrue(try ToolArguments(tool: "t", ["clear": true]).bool("clear", default: false))
        XCTAssertEqual(failure({ _ = try $0.bool("clear", default: false) }, ["clear": "yes"]), "t: clear must be true or false")
        let filters = try ToolArguments(tool: "t", ["filters": ["city": "Oslo", "limit": 3]]).object("filters", default: [:])
        XCTAssertEqual(filters, ["city": "Oslo", "limit": 3])
        let fromText = try ToolArguments(tool: "t", ["filters": "{\"limit\":3}"]).object("filters", default: [:])
        XCTAssertEqual(fromText, ["limit": 3], "JSON text in a string counts")
        XCTAssertEqual(failure({ _ = try $0.object("filters", default: [:]) }, ["filters": "[1]"]), "t: filters must be a JSON object")
        XCTAssertEqual(try ToolArguments(tool: "t", ["payload_json": "[1,true]"]).jsonText("payload_json", default: .null), [1, true])
        XCTAssertEqual(
            failure({ _ = try $0.jsonText("payload_json", default: .null) }, ["payload_json": "{nope"]), "t: payload_json must be JSON text, got {nope")
    }
}
