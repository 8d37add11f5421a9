import MCP
import PilotClient
import PilotMCP
import PilotWire
import XCTest

/// The server over the SDK's in-memory transport, without a host: what it lists, and that every
/// failure is a tool error after which it goes on serving.
final class PilotMCPServerTests: XCTestCase {
    /// A client connected to a server of an identity whose socket is not there.
    func connected() async throws -> (Client, Server) {
        let (clientSide, serverSide) = await InMemoryTransport.createConnectedPair()
        let server = try await PilotMCPServer(client: PilotClient(socketPath: "/nonexistent/pilot-mcp-test.sock")).start(on: serverSide)
        let client = Client(name: "test", version: "1")
        _ = try await client.connect(transport: clientSide)
        return (client, server)
    }

    func text(_ content: [Tool.Content]) -> String {
        content.compactMap { if case .text(let text, _, _) = $0 { return text } else { return nil } }.joined()
    }

    func testToolsAndResourcesAreListedWithTheirSchemas() async throws {
        let (client, server) = try await connected()
        let (tools, _) = try await client.listTools()
        XCTAssertEqual(tools.map(\.name), PilotTools.all.map(\.name))
        XCTAssertEqual(tools.first { $0.name == "pilot_send" }?.inputSchema, PilotTools.named("pilot_send")?.inputSchema)
        let (resources, _) = try await client.listResources()
        XCTAssertEqual(Set(resources.map(\.uri)), ["pilot://identity", "pilot://inbox", "pilot://trust", "pilot://peers"])
        await client.disconnect()
        await server.stop()
    }

    func testFailuresAreToolErrorsAndTheServerGoesOn() async throws {
        let (client, server) = try await connected()
        let unknown = try await client.callTool(name: "pilot_nothing", arguments: [:])
        XCTAssertEqual(unknown.isError, true)
        XCTAssertTrue(text(unknown.content).contains("unknown tool pilot_nothing"))

        let missing = try await client.callTool(name: "pilot_send", arguments: ["message": "hi"])
        XCTAssertEqual(missing.isError, true)
        XCTAssertEqual(text(missing.content), "invalid argument: pilot_send: peer is required")

        let range = try await client.callTool(name: "pilot_send", arguments: ["peer": "bob", "message": "hi", "wait_seconds": 9999])
        XCTAssertEqual(range.isError, true)
        XCTAssertEqual(text(range.content), "invalid argument: pilot_send: wait_seconds must be 0 to 600, not 9999")

        let unreachable = try await client.callTool(name: "pilot_peers", arguments: [:])
        XCTAssertEqual(unreachable.isError, true)
        XCTAssertTrue(text(unreachable.content).hasPrefix("the identity's socket cannot be used: "), text(unreachable.content))
        XCTAssertTrue(text(unreachable.content).contains("/nonexistent/pilot-mcp-test.sock"), text(unreachable.content))

        do {
            _ = try await client.readResource(uri: "pilot://identity")
            XCTFail("no socket, no identity")
        } catch let error as MCPError {
            XCTAssertTrue("\(error)".contains("cannot be used"), "\(error)")
        }
        let again = try await client.listTools()
        XCTAssertEqual(again.tools.count, PilotTools.all.count, "still serving")
        await client.disconnect()
        await server.stop()
    }
}
