import Foundation
import NIOPosix
import PilotApps
import PilotTestSupport
import XCTest

/// The downloader against a real HTTP server on loopback (`LoopbackHTTPServer`, in this
/// process): bytes, limits with and without Content-Length, redirects and the scheme rule on
/// each, statuses, one deadline for all of a fetch, files written whole or not at all, and
/// local files.
final class DownloaderTests: XCTestCase {
    /// Every byte value, so that nothing is decoded or re-encoded on the way.
    private static let binary = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }

    private var directory: TemporaryDirectory!
    private var server: LoopbackHTTPServer!
    private var downloader: Downloader!
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    private static func route(_ path: String) -> LoopbackHTTPServer.Reply {
        switch path {
        case "/ok": return .body(Array("hello".utf8), announced: true)
        case "/binary": return .body(binary, announced: false)
        case "/big": return .body(Array(repeating: 0x78, count: 2000), announced: true)
        case "/big-unannounced": return .body(Array(repeating: 0x78, count: 2000), announced: false)
        case "/to-file": return .redirect("file:///etc/passwd")
        case "/to-remote": return .redirect("http://example.com/catalogue.json")
        case "/silent": return .silence
        case "/trickle": return .trickle(length: 1000, interval: .milliseconds(100))
        default:
            // /redirect/N: N redirects in all, each but the last relative to /redirect/, then /ok.
            guard path.hasPrefix("/redirect/"), let left = Int(path.dropFirst("/redirect/".count)) else { return .status(404) }
            return .redirect(left <= 1 ? "/ok" : "\(left - 1)")
        }
    }

    override func setUp() async throws {
        directory = try TemporaryDirectory(prefix: "pilot-download")
        server = try await LoopbackHTTPServer(group: group, route: Self.route)
        downloader = Downloader(group: group)
    }

    override func tearDown() async throws {
        await downloader?.shutdown()
        await server?.stop()
        directory?.remove()
        try await group.shutdownGracefully()
    }

    private func url(_ path: String) throws -> DownloadSource { try DownloadSource(parsing: "http://127.0.0.1:\(server.port)\(path)") }

    /// How fetching `source` fails, or nil where it does not.
    private func failure(_ source: DownloadSource, maxBytes: Int = 1 << 20, timeout: Duration = .seconds(10)) async -> DownloadError? {
        do throws(DownloadError) {
            _ = try await downloader.fetch(source, maxBytes: maxBytes, timeout: timeout)
            return nil
        } catch {
            return error
        }
    }

    private func failure(_ path: String, maxBytes: Int = 1 << 20, timeout: Duration = .seconds(10)) async throws -> DownloadError? {
        await failure(try url(path), maxBytes: maxBytes, timeout: timeout)
    }

    func testTheBodyArrivesByteForByte() async throws {
        let hello = try await downloader.fetch(try url("/ok"), maxBytes: 5, timeout: .seconds(10))
        XCTAssertEqual(hello, Array("hello".utf8))
        let binary = try await downloader.fetch(try url("/binary"), maxBytes: Self.binary.count, timeout: .seconds(10))
        XCTAssertEqual(binary, Self.binary)
    }

    func testUpToFiveRedirectsAreFollowedAndASixthIsNot() async throws {
        let three = try await downloader.fetch(try url("/redirect/3"), maxBytes: 100, timeout: .seconds(10))
        XCTAssertEqual(three, Array("hello".utf8))
        XCTAssertEqual(server.requests, ["/redirect/3", "/redirect/2", "/redirect/1", "/ok"])
        let five = try await downloader.fetch(try url("/redirect/5"), maxBytes: 100, timeout: .seconds(10))
        XCTAssertEqual(five, Array("hello".utf8))
        let six = try await failure("/redirect/6")
        XCTAssertEqual(six, .tooManyRedirects(url: "http://127.0.0.1:\(server.port)/redirect/6"))
    }

    func testARedirectToALocalFileOrARemoteHTTPHostIsRefused() async throws {
        guard case .refused(let file, _)? = try await failure("/to-file") else { return XCTFail("a redirect to a file was followed") }
        XCTAssertEqual(file, "file:///etc/passwd")
        guard case .refused(let remote, _)? = try await failure("/to-remote") else { return XCTFail("a redirect to remote http was followed") }
        XCTAssertEqual(remote, "http://example.com/catalogue.json")
        XCTAssertEqual(server.requests, ["/to-file", "/to-remote"])
    }

    func testANon2xxStatusIsAnError() async throws {
        let missing = try await failure("/missing")
        XCTAssertEqual(missing, .httpStatus(code: 404, url: "http://127.0.0.1:\(server.port)/missing"))
    }

    func testSizeLimitsHoldWithAndWithoutContentLength() async throws {
        let announced = try await failure("/big", maxBytes: 1000)
        XCTAssertEqual(announced, .tooLarge(url: "http://127.0.0.1:\(server.port)/big", limit: 1000))
        let streamed = try await failure("/big-unannounced", maxBytes: 1000)
        XCTAssertEqual(streamed, .tooLarge(url: "http://127.0.0.1:\(server.port)/big-unannounced", limit: 1000))
        let exact = try await downloader.fetch(try url("/big-unannounced"), maxBytes: 2000, timeout: .seconds(10))
        XCTAssertEqual(exact.count, 2000)
    }

    func testASilentServerTimesOutWithinTheDeadline() async throws {
        let started = ContinuousClock.now
        let error = try await failure("/silent", timeout: .seconds(1))
        XCTAssertEqual(error, .timedOut(url: "http://127.0.0.1:\(server.port)/silent"))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }

    func testATricklingBodyTimesOutWithinTheDeadline() async throws {
        let started = ContinuousClock.now
        let error = try await failure("/trickle", timeout: .seconds(1))
        XCTAssertEqual(error, .timedOut(url: "http://127.0.0.1:\(server.port)/trickle"))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(2))
    }

    func testURLsTheRuleRefusesNeverReachTheServer() throws {
        let port = server.port
        for refused in ["ftp://127.0.0.1:\(port)/ok", "http://127.1:\(port)/ok", "http://0x7f.0.0.1:\(port)/ok", "http://2130706433:\(port)/ok"] {
            XCTAssertThrowsError(try DownloadSource(parsing: refused), refused)
        }
        XCTAssertEqual(server.requests, [])
    }

    func testAFileIsWrittenWholeAndPrivate() async throws {
        let target = directory.path("bundle.tar.gz")
        try await downloader.fetch(try url("/binary"), to: target, maxBytes: 1 << 20, timeout: .seconds(10))
        XCTAssertEqual(Array(try Data(contentsOf: URL(fileURLWithPath: target))), Self.binary)
        var status = stat()
        XCTAssertEqual(stat(target, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.url.path), ["bundle.tar.gz"])
    }

    func testAFailedFetchLeavesNoFileAndKeepsTheOldOne() async throws {
        let kept = directory.path("kept.tar.gz")
        try Data("old".utf8).write(to: URL(fileURLWithPath: kept))
        for (path, maxBytes) in [("/big-unannounced", 1000), ("/big", 1000), ("/missing", 1 << 20), ("/trickle", 1 << 20)] {
            for target in [directory.path("bundle.tar.gz"), kept] {
                do {
                    try await downloader.fetch(try url(path), to: target, maxBytes: maxBytes, timeout: .milliseconds(500))
                    XCTFail("\(path) was written")
                } catch {}
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.url.path), ["kept.tar.gz"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: kept)), Data("old".utf8))
    }

    func testLocalFilesAreReadWithTheSameLimit() async throws {
        let file = directory.path("catalogue.json")
        try Data(Self.binary).write(to: URL(fileURLWithPath: file))
        let link = directory.path("link.json")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: file)
        for path in [file, link] {
            let bytes = try await downloader.fetch(try DownloadSource(parsing: "file://" + path), maxBytes: Self.binary.count, timeout: .seconds(5))
            XCTAssertEqual(bytes, Self.binary, path)
        }
        let large = await failure(try DownloadSource(parsing: "file://" + file), maxBytes: 100)
        XCTAssertEqual(large, .tooLarge(url: "file://" + file, limit: 100))
        guard case .failed? = await failure(try DownloadSource(parsing: "file://" + directory.url.path)) else { return XCTFail("a directory was read") }
        guard case .failed? = await failure(try DownloadSource(parsing: "file://" + directory.path("missing"))) else { return XCTFail("a missing file was read") }
    }
}
