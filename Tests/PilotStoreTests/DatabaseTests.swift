import Foundation
import PilotStore
import XCTest

final class DatabaseTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private var path: String { directory.appendingPathComponent("test.db").path }

    private let schema = [
        "CREATE TABLE owner (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
        "CREATE TABLE item (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES owner(id) ON DELETE CASCADE, data BLOB)",
    ]

    func testMigrationsRunOnceAndSetUserVersion() throws {
        do {
            let db = try Database(path: path)
            try db.migrate(schema)
            XCTAssertEqual(try db.userVersion(), 2)
            try db.run("INSERT INTO owner (name) VALUES (?)", [.text("alice")])
        }
        let reopened = try Database(path: path)
        try reopened.migrate(schema)  // a second run must not re-create the tables
        XCTAssertEqual(try reopened.rows("SELECT name FROM owner"), [[.text("alice")]])
        XCTAssertEqual(try reopened.rows("PRAGMA journal_mode"), [[.text("wal")]])
    }

    func testNewerSchemaIsRefused() throws {
        let db = try Database(path: path)
        try db.migrate(schema)
        XCTAssertThrowsError(try db.migrate(Array(schema.prefix(1))))
    }

    func testTransactionRollsBackWhenItsBodyThrows() throws {
        let db = try Database(path: path)
        try db.migrate(schema)
        struct Abort: Error {}
        XCTAssertThrowsError(
            try db.transaction {
                try db.run("INSERT INTO owner (name) VALUES ('bob')")
                throw Abort()
            })
        XCTAssertEqual(try db.rows("SELECT count(*) FROM owner"), [[.integer(0)]])
    }

    func testConstraintViolationsAreTypedAndForeignKeysEnforced() throws {
        let db = try Database(path: path)
        try db.migrate(schema)
        try db.run("INSERT INTO owner (name) VALUES ('alice')")
        XCTAssertThrowsError(try db.run("INSERT INTO owner (name) VALUES ('alice')")) { error in
            XCTAssertTrue((error as? StoreError)?.isConstraintViolation == true, "\(error)")
        }
        XCTAssertThrowsError(try db.run("INSERT INTO item (owner_id) VALUES (99)")) { error in
            XCTAssertTrue((error as? StoreError)?.isConstraintViolation == true, "\(error)")
        }
        // Cascade: deleting the owner deletes its items.
        try db.run("INSERT INTO item (owner_id, data) VALUES (1, ?)", [.blob([1, 2, 3])])
        XCTAssertEqual(try db.rows("SELECT data FROM item"), [[.blob([1, 2, 3])]])
        try db.run("DELETE FROM owner WHERE id = 1")
        XCTAssertEqual(try db.rows("SELECT count(*) FROM item"), [[.integer(0)]])
    }

    func testValuesRoundTrip() throws {
        let db = try Database(path: path)
        try db.execute("CREATE TABLE v (a, b, c, d, e)")
        let values: [SQLValue] = [.null, .integer(.min), .real(1.5), .text("é\u{0}x"), .blob([])]
        try db.run("INSERT INTO v VALUES (?, ?, ?, ?, ?)", values)
        let row = try XCTUnwrap(try db.rows("SELECT * FROM v").first)
        XCTAssertEqual(row[0], .null)
        XCTAssertEqual(row[1], .integer(.min))
        XCTAssertEqual(row[2], .real(1.5))
        XCTAssertEqual(row[4], .blob([]))
    }

    func testRowsAreHandedOverInOrderOneAtATime() throws {
        let db = try Database(path: path)
        try db.execute("CREATE TABLE v (n INTEGER, t TEXT)")
        for n in [3, 1, 2] { try db.run("INSERT INTO v VALUES (?, ?)", [.integer(Int64(n)), .text("row \(n)")]) }
        let texts = try db.rows("SELECT n, t FROM v WHERE n > ? ORDER BY n", [.integer(1)]) { $0[1].text ?? "" }
        XCTAssertEqual(texts, ["row 2", "row 3"])
        var seen: [Int64] = []
        try db.forEachRow("SELECT n FROM v ORDER BY n DESC") { seen.append($0[0].integer ?? 0) }
        XCTAssertEqual(seen, [3, 2, 1])
        // What was read, and the cache of its pages given back, reads again the same.
        db.releaseMemory()
        XCTAssertEqual(try db.rows("SELECT n FROM v ORDER BY n").map { $0[0] }, [.integer(1), .integer(2), .integer(3)])
    }

    func testBadSQLNamesTheStatement() throws {
        let db = try Database(path: path)
        XCTAssertThrowsError(try db.prepare("SELEC 1")) { error in
            XCTAssertEqual((error as? StoreError)?.sql, "SELEC 1")
        }
        XCTAssertThrowsError(try Database(path: directory.appendingPathComponent("missing/dir/x.db").path))
    }
}
