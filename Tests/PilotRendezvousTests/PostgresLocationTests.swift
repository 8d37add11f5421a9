import PilotRendezvous
import XCTest

/// `pilot-rendezvous --database`: the URLs taken, and those refused with the reason.
final class PostgresLocationTests: XCTestCase {
    func testTCPAndSocketURLsAreParsed() throws {
        let tcp = try PostgresLocation(parsing: "postgres://pilot:p%40ss@db.example:6543/registry")
        XCTAssertEqual(tcp.endpoint, .tcp(host: "db.example", port: 6543))
        XCTAssertEqual(tcp.user, "pilot")
        XCTAssertEqual(tcp.password, "p@ss")
        XCTAssertEqual(tcp.database, "registry")
        XCTAssertFalse(tcp.tls)
        XCTAssertEqual(tcp.description, "postgres://pilot@db.example:6543/registry", "never the password")

        let defaults = try PostgresLocation(parsing: "postgresql://[::1]/r?sslmode=verify-full")
        XCTAssertEqual(defaults.endpoint, .tcp(host: "::1", port: 5432))
        XCTAssertEqual(defaults.user, PostgresLocation.defaultUser)
        XCTAssertTrue(defaults.tls)

        let socket = try PostgresLocation(parsing: "postgres://pilot@/registry?host=/run/postgresql&port=5433")
        XCTAssertEqual(socket.endpoint, .socket(path: "/run/postgresql/.s.PGSQL.5433"))
        XCTAssertEqual(try PostgresLocation(parsing: "postgres:///registry?host=/tmp").endpoint, .socket(path: "/tmp/.s.PGSQL.5432"))
    }

    func testABadURLIsRefusedSayingWhatIsWrongWithoutItsPassword() {
        for (text, problem) in [
            ("mysql://u@h/db", "scheme"), ("postgres://u@h:99999/db", "port"), ("postgres://u@h/", "no database"),
            ("postgres://u:secret@/db", "no host"), ("postgres://u@h/db?sslmode=prefer", "sslmode"), ("postgres://u@h/db?colour=red", "colour"),
        ] {
            XCTAssertThrowsError(try PostgresLocation(parsing: text), text) {
                XCTAssertTrue("\($0)".contains(problem), "\(text): \($0)")
                XCTAssertFalse("\($0)".contains("secret"), "\(text): \($0)")
            }
        }
    }
}
