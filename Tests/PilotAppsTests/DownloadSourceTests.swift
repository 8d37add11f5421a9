import PilotApps
import XCTest

final class DownloadSourceTests: XCTestCase {
    func testWhatMayBeFetched() throws {
        for url in [
            "https://example.com/catalogue.json", "HTTPS://raw.githubusercontent.com/x/y/main/catalogue/catalogue.json",
            "https://example.com:8443/a?b=c", "http://127.0.0.1:8000/catalogue.json", "http://127.5.6.7/x", "http://localhost/x",
            "http://[::1]:9000/x", "file:///srv/catalogue/catalogue.json", "file://localhost/srv/c.json",
        ] {
            XCTAssertNoThrow(try DownloadSource(parsing: url), url)
        }
    }

    func testWhatIsRefusedBeforeAnyIO() {
        for url in [
            "ftp://example.com/x", "http://example.com/x", "http://10.0.0.1/x", "http://127.1/x", "http://0x7f.0.0.1/x",
            "http://127.0.0.01/x", "http://127.0.0.1.example.com/x", "http://localhost.example.com/x", "https://user:pw@example.com/x",
            "https:///x", "file://relative/path", "file:relative", "https://exa mple.com/", "javascript:alert(1)", "", "gopher://x",
            "http://[::2]/x", "http://127.0.0.256/x", "http://2130706433/x", "http://127.0.0.1./x", "http://[0:0:0:0:0:0:0:1]/x",
            "http://%31%32%37.0.0.1/x", "http://127.0.0.1@example.com/x", "http://example.com#@127.0.0.1/x",
            "http://example.com\\@127.0.0.1/x", "http://127.0.0.1\t/x", "http://", "file://",
            "http://[::1]x.example.com/x", "http://127.0.0.1:80:example.com/x", "http://127.0.0.1:99999/x", "http://localhost:8a/x",
        ] {
            XCTAssertThrowsError(try DownloadSource(parsing: url), url) { error in
                guard case .refused = error as? DownloadError else { return XCTFail("\(url): \(error)") }
            }
        }
    }

    func testRelativeBundleURLsResolveBesideTheCatalogue() throws {
        let file = try DownloadSource(parsing: "file:///srv/cat/catalogue.json")
        XCTAssertEqual(try file.resolving("notes-1.0.0.tar.gz").description, "file:///srv/cat/notes-1.0.0.tar.gz")
        XCTAssertEqual(try file.resolving("catalogue.json.sig").description, "file:///srv/cat/catalogue.json.sig")
        let web = try DownloadSource(parsing: "https://example.com/catalogue/catalogue.json?ref=main")
        XCTAssertEqual(try web.resolving("b/notes.tar.gz").description, "https://example.com/catalogue/b/notes.tar.gz")
        XCTAssertEqual(try web.resolving("/top.tar.gz").description, "https://example.com/top.tar.gz")
        XCTAssertEqual(try web.resolving("https://cdn.example.com/x.tar.gz").description, "https://cdn.example.com/x.tar.gz")
        XCTAssertEqual(try web.resolving("//cdn.example.com/x.tar.gz").description, "https://cdn.example.com/x.tar.gz")
        // A scheme only at the start makes a reference absolute.
        XCTAssertEqual(try web.resolving("b/x.tar.gz?from=http://e.com").description, "https://example.com/catalogue/b/x.tar.gz?from=http://e.com")
        // An absolute reference is held to the same rule.
        XCTAssertThrowsError(try web.resolving("http://evil.example.com/x.tar.gz"))
        XCTAssertThrowsError(try web.resolving("mailto:x@example.com"))
    }

    func testARedirectNeverStepsDown() throws {
        let secure = try DownloadSource(parsing: "https://github.com/o/r/releases/download/v1/notes.tar.gz")
        let asset = "https://objects.githubusercontent.com/a/b?sig=1"
        XCTAssertEqual(try secure.redirected(to: asset).description, asset)
        XCTAssertEqual(try secure.redirected(to: "/o/r/x").description, "https://github.com/o/r/x")
        let loopback = try DownloadSource(parsing: "http://127.0.0.1:8000/c/catalogue.json")
        XCTAssertEqual(try loopback.redirected(to: "https://example.com/c.json").description, "https://example.com/c.json")
        XCTAssertEqual(try loopback.redirected(to: "http://localhost:9000/c.json").description, "http://localhost:9000/c.json")
        XCTAssertEqual(try loopback.redirected(to: "other.json").description, "http://127.0.0.1:8000/c/other.json")
        let file = try DownloadSource(parsing: "file:///srv/c.json")
        for (from, location) in [
            (secure, "http://127.0.0.1/x"), (secure, "http://example.com/x"), (secure, "file:///etc/passwd"), (secure, "ftp://example.com/x"),
            (loopback, "http://example.com/x"), (loopback, "file:///etc/passwd"), (loopback, "http://127.1/x"), (file, "/etc/passwd"),
        ] {
            XCTAssertThrowsError(try from.redirected(to: location), "\(from) to \(location)") { error in
                guard case .refused = error as? DownloadError else { return XCTFail("\(location): \(error)") }
            }
        }
    }
}
