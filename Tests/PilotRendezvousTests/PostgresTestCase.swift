import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

/// A test case on a private PostgreSQL server (`PostgresServer`), started by the first test that
/// needs it and removed after each class, with a database of its own per test (`database`).
/// Skipped where no server can be started.
class PostgresTestCase: XCTestCase {
    nonisolated(unsafe) private static var sharedServer: PostgresServer?
    nonisolated(unsafe) private static var databases = 0
    /// This test's database, made empty before it runs.
    private(set) var database = ""

    override class func tearDown() {
        sharedServer?.remove()
        sharedServer = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        if let reason = PostgresServer.unavailableReason {
            print("\(Self.self) skipped: \(reason)")
            throw XCTSkip(reason)
        }
        if Self.sharedServer == nil { Self.sharedServer = try PostgresServer() }
        Self.databases += 1
        database = "registry_\(Self.databases)"
        try server.psql("CREATE DATABASE \(database)")
    }

    var server: PostgresServer {
        get throws {
            guard let server = Self.sharedServer else { throw PostgresServerError.notStarted }
            return server
        }
    }

    /// The test's database, over TCP.
    func location() throws -> PostgresLocation { try PostgresLocation(parsing: try server.url(database: database)) }

    /// Registers `node` at `registry` from 127.0.0.1, and notes its id.
    func register(_ registry: Registry, _ node: inout TestNode) throws {
        let reply = registry.handle(node.register(), peerIP: "127.0.0.1")
        XCTAssertEqual(reply.type, "register_ok", reply.json.encodedString())
        node.id = try reply.nodeID("node_id")
    }

    func lookup(_ registry: Registry, _ node: TestNode) -> RegistryMessage {
        registry.handle(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node.id))]), peerIP: "x")
    }
}

extension PostgresServerError {
    static let notStarted = PostgresServerError("the class's PostgreSQL server did not start")
}
