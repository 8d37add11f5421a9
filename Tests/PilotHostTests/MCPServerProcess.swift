import Foundation
import MCP
import PilotWire
import SystemPackage
import XCTest

/// `pilot-mcp` as an MCP client runs it: a child process whose standard input and output carry
/// the protocol, driven by the MCP SDK's own `Client` over a stdio transport on the pipes.
final class MCPServerProcess {
    let process = Process()
    let client = Client(name: "pilot-host-tests", version: "1")
    /// Its standard error, for a failing test to show.
    let log: URL
    private let input = Pipe()
    private let output = Pipe()

    /// Starts `executable` with `arguments` and connects (`initialize`) to it.
    init(_ executable: URL, _ arguments: [String], log: URL) async throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = executable
        process.arguments = arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        let transport = StdioTransport(
            input: FileDescriptor(rawValue: output.fileHandleForReading.fileDescriptor),
            output: FileDescriptor(rawValue: input.fileHandleForWriting.fileDescriptor))
        _ = try await client.connect(transport: transport)
    }

    /// What it wrote to standard error.
    var errors: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// Calls `tool`: its text, and whether it is a tool error.
    func call(_ tool: String, _ arguments: [String: Value] = [:]) async throws -> (text: String, isError: Bool) {
        let (content, isError) = try await client.callTool(name: tool, arguments: arguments)
        return (Self.text(of: content), isError ?? false)
    }

    /// The text of a tool's result.
    static func text(of content: [Tool.Content]) -> String {
        content.compactMap { if case .text(let text, _, _) = $0 { return text } else { return nil } }.joined()
    }

    /// Calls `tool`, which must succeed with JSON: that JSON.
    func json(_ tool: String, _ arguments: [String: Value] = [:]) async throws -> JSON {
        let (text, isError) = try await call(tool, arguments)
        guard !isError else { throw MCPTestError("\(tool) failed: \(text)") }
        return try JSON(parsing: text)
    }

    /// Resource `uri` as JSON.
    func read(_ uri: String) async throws -> JSON {
        guard let text = try await client.readResource(uri: uri).first?.text else { throw MCPTestError("\(uri) has no text") }
        return try JSON(parsing: text)
    }

    /// Ends the session: standard input closed, as a client that goes away; then the process.
    func stop() async {
        await client.disconnect()
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

struct MCPTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension HostProcessTestCase {
    /// pilot-mcp (built beside the tests) serving `identity`, stopped at the end of the test.
    func mcp(_ identity: String, runtime: String) async throws -> MCPServerProcess {
        let server = try await MCPServerProcess(
            bin.appendingPathComponent("pilot-mcp"), ["--identity", identity, "--runtime-dir", runtime],
            log: directory.url.appendingPathComponent("pilot-mcp-\(identity).log"))
        addTeardownBlock { [process = server.process] in
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        return server
    }
}
