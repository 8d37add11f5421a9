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
            "http://[::2]/x",
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
        // An absolute reference is held to the same rule.
        XCTAssertThrowsError(try web.resolving("http://evil.example.com/x.tar.gz"))
    }
}
