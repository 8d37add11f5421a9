import AsyncHTTPClient
import Glibc
import Logging
public import NIOCore
import NIOHTTP1

/// Fetches catalogues and bundles (async-http-client: HTTP/1.1 and 2, TLS through NIOSSL with
/// the system's roots). Redirects are followed here, at most 5, each target held to
/// `DownloadSource`'s rule (an https:// URL never leads to http:// or file://); sizes are
/// enforced while the body streams in; every fetch has a deadline.
public final class Downloader: Sendable {
    private let client: HTTPClient

    public init(group: any EventLoopGroup) {
        client = HTTPClient(
            eventLoopGroup: group,
            configuration: HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(15), read: .seconds(60))))
    }

    /// The body of `source`, at most `maxBytes`.
    public func fetch(_ source: DownloadSource, maxBytes: Int, timeout: Duration) async throws(DownloadError) -> [UInt8] {
        var bytes: [UInt8] = []
        try await stream(source, maxBytes: maxBytes, timeout: timeout) { (chunk: ByteBuffer) throws(DownloadError) in
            bytes.append(contentsOf: chunk.readableBytesView)
        }
        return bytes
    }

    /// Fetches `source` into `path`: a temporary file beside it, renamed into place when whole
    /// and synced; nothing is left behind on failure.
    public func fetch(_ source: DownloadSource, to path: String, maxBytes: Int, timeout: Duration) async throws(DownloadError) {
        let temporary = path + ".part-\(UInt64.random(in: 0...UInt64.max))"
        let file = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard file >= 0 else { throw .failed(url: source.description, reason: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var finished = false
        defer {
            close(file)
            if !finished { unlink(temporary) }
        }
        try await stream(source, maxBytes: maxBytes, timeout: timeout) { (chunk: ByteBuffer) throws(DownloadError) in
            let written = chunk.withUnsafeReadableBytes { Glibc.write(file, $0.baseAddress, $0.count) }
            guard written == chunk.readableBytes else {
                throw .failed(url: source.description, reason: "cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
        }
        guard fsync(file) == 0, rename(temporary, path) == 0 else {
            throw .failed(url: source.description, reason: "cannot keep \(path): \(String(cString: strerror(errno)))")
        }
        finished = true
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    private func stream(
        _ source: DownloadSource, maxBytes: Int, timeout: Duration, _ take: (ByteBuffer) throws(DownloadError) -> Void
    ) async throws(DownloadError) {
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        switch source.kind {
        case .file(let path):
            try Self.readFile(path, url: source.description, maxBytes: maxBytes, take)
        case .http(var url, _):
            var current = source
            for _ in 0...5 {
                let response: HTTPClientResponse
                do {
                    response = try await client.execute(HTTPClientRequest(url: url), deadline: deadline)
                } catch {
                    if NIODeadline.now() >= deadline { throw .timedOut(url: url) }
                    throw .failed(url: url, reason: "\(error)")
                }
                if (300..<400).contains(Int(response.status.code)), let location = response.headers.first(name: "location") {
                    let next = try current.resolving(location)
                    guard case .http(let nextURL, let nextSecure) = next.kind else {
                        throw .refused(url: location, reason: "a redirect from \(url) may not lead to a local file")
                    }
                    if case .http(_, let secure) = current.kind, secure, !nextSecure {
                        throw .refused(url: location, reason: "a redirect from https:// may not lead to http://")
                    }
                    current = next
                    url = nextURL
                    continue
                }
                guard (200..<300).contains(Int(response.status.code)) else { throw .httpStatus(code: Int(response.status.code), url: url) }
                if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > maxBytes {
                    throw .tooLarge(url: url, limit: maxBytes)
                }
                var received = 0
                do {
                    for try await chunk in response.body {
                        received += chunk.readableBytes
                        guard received <= maxBytes else { throw DownloadError.tooLarge(url: url, limit: maxBytes) }
                        try take(chunk)
                    }
                } catch let error as DownloadError {
                    throw error
                } catch {
                    if NIODeadline.now() >= deadline { throw .timedOut(url: url) }
                    throw .failed(url: url, reason: "\(error)")
                }
                return
            }
            throw .tooManyRedirects(url: source.description)
        }
    }

    private static func readFile(_ path: String, url: String, maxBytes: Int, _ take: (ByteBuffer) throws(DownloadError) -> Void) throws(DownloadError) {
        let file = open(path, O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { throw .failed(url: url, reason: String(cString: strerror(errno))) }
        defer { close(file) }
        var status = stat()
        guard fstat(file, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { throw .failed(url: url, reason: "not a regular file") }
        guard Int(status.st_size) <= maxBytes else { throw .tooLarge(url: url, limit: maxBytes) }
        var buffer = ByteBufferAllocator().buffer(capacity: 64 << 10)
        var received = 0
        while true {
            buffer.clear()
            let count = buffer.withUnsafeMutableWritableBytes { read(file, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw .failed(url: url, reason: String(cString: strerror(errno))) }
            if count == 0 { return }
            buffer.moveWriterIndex(forwardBy: count)
            received += count
            guard received <= maxBytes else { throw .tooLarge(url: url, limit: maxBytes) }
            try take(buffer)
        }
    }
}
