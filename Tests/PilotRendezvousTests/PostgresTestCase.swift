import PilotRendezvous
import PilotTestSupport
import XCTest

/// A test class on PostgreSQL: one private server (`PostgresServer`) started for its first test
/// and removed after its last, and a database of its own for each test. Skipped, saying why,
/// where no server can be started.
class PostgresTestCase: XCTestCase {
    nonisolated(unsafe) private static var shared: PostgresServer?
    nonisolated(unsafe) private static var databases = 0
    /// This test's database, made empty for it.
    private(set) var database = ""

    override class func tearDown() {
        shared?.remove()
        shared = nil
        super.tearDown()
    }

    override func setUpWithError() throws {
        try super.setUpWithError()
        if let reason = PostgresServer.unavailableReason {
            print("\(Self.self) skipped: \(reason)")
            throw XCTSkip(reason)
        }
        if Self.shared == nil { Self.shared = try PostgresServer() }
        Self.databases += 1
        database = "test_\(Self.databases)"
        try server.psql("CREATE DATABASE \(database)")
    }

    var server: PostgresServer {
        get throws {
            guard let server = Self.shared else { throw PostgresServerError.notStarted }
            return server
        }
    }

    /// This test's database, as `--database` names it.
    func location() throws -> PostgresLocation { try PostgresLocation(parsing: try server.url(database: database)) }
}

extension PostgresServerError {
    static let notStarted = PostgresServerError("the class's PostgreSQL server did not start")
}
