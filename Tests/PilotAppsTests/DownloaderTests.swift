import Foundation
import NIOPosix
import PilotApps
import PilotTestSupport
import XCTest

/// The downloader against a real HTTP server on loopback (Python's http.server with a handler
/// of the test's own): bytes, limits with and without Content-Length, redirects and the scheme
/// rule on each, statuses, deadlines, and files written whole or not at all.
final class DownloaderTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var server: ChildProcess!
    private var port: UInt16 = 0
    private var downloader: Downloader!
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    static let handler = """
        import http.server, sys, time
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args): pass
            def body(self, data, length=True):
                self.send_response(200)
                if length: self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def go(self, location):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            def do_GET(self):
                path = self.path
                if path == "/ok": self.body(b"hello")
                elif path == "/big": self.body(b"x" * 2000)
                elif path == "/big-unannounced": self.body(b"x" * 2000, length=False); self.close_connection = True
                elif path.startswith("/redirect/"):
                    n = int(path.split("/")[2])
                    self.go("/ok" if n == 0 else "/redirect/%d" % (n - 1))
                elif path == "/to-file": self.go("file:///etc/passwd")
                elif path == "/slow": time.sleep(5); self.body(b"late")
                else:
                    self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
        http.server.HTTPServer.protocol_version = "HTTP/1.0"
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
        """

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { throw XCTSkip("python3 is not installed") }
        directory = try TemporaryDirectory(prefix: "pilot-download")
        port = try LoopbackSocket.freePort()
        let script = directory.path("server.py")
        try Data(Self.handler.utf8).write(to: URL(fileURLWithPath: script))
        server = try ChildProcess(
            name: "http", executable: URL(fileURLWithPath: "/usr/bin/python3"), arguments: [script, "\(port)"], logDirectory: directory.url)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { (try? LoopbackSocket.connect(to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: self.port))) != nil })
        downloader = Downloader(group: group)
    }

    override func tearDown() async throws {
        await downloader?.shutdown()
        server?.stop()
        directory?.remove()
        try await group.shutdownGracefully()
    }

    private func url(_ path: String) throws -> DownloadSource { try DownloadSource(parsing: "http://127.0.0.1:\(port)\(path)") }

    private func failure(_ path: String, maxBytes: Int = 1 << 20, timeout: Duration = .seconds(10)) async throws -> DownloadError? {
        let source = try url(path)
        do throws(DownloadError) {
            _ = try await downloader.fetch(source, maxBytes: maxBytes, timeout: timeout)
            return nil
        } catch {
            return error
        }
    }

    func testBytesRedirectsAndStatuses() async throws {
        let hello = try await downloader.fetch(try url("/ok"), maxBytes: 100, timeout: .seconds(10))
        XCTAssertEqual(hello, Array("hello".utf8))
        let redirected = try await downloader.fetch(try url("/redirect/3"), maxBytes: 100, timeout: .seconds(10))
        XCTAssertEqual(redirected, Array("hello".utf8))
        guard case .tooManyRedirects? = try await failure("/redirect/6") else { return XCTFail("six redirects followed") }
        guard case .refused? = try await failure("/to-file") else { return XCTFail("a redirect to a file was followed") }
        let missing = try await failure("/missing")
        XCTAssertEqual(missing, .httpStatus(code: 404, url: "http://127.0.0.1:\(port)/missing"))
    }

    func testSizeLimitsHoldWithAndWithoutContentLength() async throws {
        guard case .tooLarge? = try await failure("/big", maxBytes: 1000) else { return XCTFail("announced body over the limit") }
        guard case .tooLarge? = try await failure("/big-unannounced", maxBytes: 1000) else { return XCTFail("streamed body over the limit") }
    }

    func testADeadlineEndsASlowServer() async throws {
        let started = ContinuousClock.now
        let error = try await failure("/slow", timeout: .seconds(1))
        XCTAssertNotNil(error)
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
    }

    func testAFileIsWrittenWholeOrNotAtAll() async throws {
        let target = directory.path("bundle.tar.gz")
        try await downloader.fetch(try url("/big"), to: target, maxBytes: 5000, timeout: .seconds(10))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)).count, 2000)
        let other = directory.path("other.tar.gz")
        do {
            try await downloader.fetch(try url("/big-unannounced"), to: other, maxBytes: 1000, timeout: .seconds(10))
            XCTFail("over the limit, yet written")
        } catch {}
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.url.path).filter { $0.hasPrefix("other") }
        XCTAssertEqual(left, [], "no partial file")
        // file:// too, with the same limit.
        let local = try await downloader.fetch(try DownloadSource(parsing: "file://" + target), maxBytes: 5000, timeout: .seconds(5))
        XCTAssertEqual(local.count, 2000)
        do {
            _ = try await downloader.fetch(try DownloadSource(parsing: "file://" + target), maxBytes: 100, timeout: .seconds(5))
            XCTFail("a file over the limit was read")
        } catch {}
    }
}
