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

    /// A primary and its standbys, as libpq lists them: in the authority, or in ?host= and ?port=.
    func testSeveralServersAreListedInOrder() throws {
        let listed = try PostgresLocation(parsing: "postgres://pilot:s3cret@db1.example,db2.example:6543,[::1]:5433/registry")
        XCTAssertEqual(listed.endpoints, [.tcp(host: "db1.example", port: 5432), .tcp(host: "db2.example", port: 6543), .tcp(host: "::1", port: 5433)])
        XCTAssertEqual(listed.user, "pilot")
        XCTAssertEqual(listed.password, "s3cret")
        XCTAssertEqual(listed.database, "registry")
        XCTAssertEqual(listed.description, "postgres://pilot@db1.example:5432,db2.example:6543,[::1]:5433/registry")

        let query = try PostgresLocation(parsing: "postgres:///registry?host=10.0.0.1,10.0.0.2&port=5432,5433&user=pilot")
        XCTAssertEqual(query.endpoints, [.tcp(host: "10.0.0.1", port: 5432), .tcp(host: "10.0.0.2", port: 5433)])
        XCTAssertEqual(try PostgresLocation(parsing: "postgres:///r?host=a,b&port=6000").endpoints, [.tcp(host: "a", port: 6000), .tcp(host: "b", port: 6000)])
        XCTAssertThrowsError(try PostgresLocation(parsing: "postgres:///r?host=a,b,c&port=1,2")) { XCTAssertTrue("\($0)".contains("3 hosts"), "\($0)") }
        XCTAssertThrowsError(try PostgresLocation(parsing: "postgres://u@a,,b/r")) { XCTAssertTrue("\($0)".contains("no host"), "\($0)") }
        XCTAssertThrowsError(try PostgresLocation(parsing: "postgres://u@a,b:0/r")) { XCTAssertTrue("\($0)".contains("port 0"), "\($0)") }
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
