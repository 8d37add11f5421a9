import AsyncHTTPClient
import Glibc
import Logging
public import NIOCore
import NIOHTTP1

/// Fetches catalogues and bundles (async-http-client: HTTP/1.1 and 2, TLS through NIOSSL with
/// the system's roots). Redirects are followed here, at most 5, each target held to
/// `DownloadSource`'s rule (an https:// URL never leads to http:// or file://); sizes are
/// enforced while the body streams in; one deadline covers all of a fetch, body included.
public final class Downloader: Sendable {
    private let client: HTTPClient

    /// A client on `group`: the daemon's own event loops, so that fetching starts no threads of
    /// its own (HTTPClient's shared singleton would).
    public init(group: any EventLoopGroup) {
        client = HTTPClient(
            eventLoopGroup: group,
            configuration: HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(15), read: .seconds(60))))
    }

    /// The body of `source`, at most `maxBytes`, all of it within `timeout` (redirects included).
    public func fetch(_ source: DownloadSource, maxBytes: Int, timeout: Duration) async throws(DownloadError) -> [UInt8] {
        try await stream(source, maxBytes: maxBytes, timeout: timeout, into: []) { (bytes: inout [UInt8], chunk: ByteBuffer) throws(DownloadError) in
            bytes.append(contentsOf: chunk.readableBytesView)
        }
    }

    /// Fetches `source` into `path`: a temporary file beside it (created exclusively, mode 0600),
    /// synced and renamed into place when whole; nothing is left behind on failure.
    public func fetch(_ source: DownloadSource, to path: String, maxBytes: Int, timeout: Duration) async throws(DownloadError) {
        let temporary = path + ".part-\(UInt64.random(in: 0...UInt64.max))"
        let file = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard file >= 0 else { throw .failed(url: source.description, reason: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        var finished = false
        defer {
            close(file)
            if !finished { unlink(temporary) }
        }
        try await stream(source, maxBytes: maxBytes, timeout: timeout, into: ()) { (_: inout Void, chunk: ByteBuffer) throws(DownloadError) in
            guard Self.writeAll(chunk, to: file) else {
                throw .failed(url: source.description, reason: "cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
        }
        guard fsync(file) == 0, rename(temporary, path) == 0 else {
            throw .failed(url: source.description, reason: "cannot keep \(path): \(String(cString: strerror(errno)))")
        }
        finished = true
    }

    /// Closes the client's connections; fetches after this fail.
    public func shutdown() async {
        try? await client.shutdown()
    }

    /// `source`'s body, chunk by chunk, folded into `sink` by `take`.
    private func stream<Sink: Sendable>(
        _ source: DownloadSource, maxBytes: Int, timeout: Duration, into sink: Sink,
        _ take: @escaping @Sendable (inout Sink, ByteBuffer) throws(DownloadError) -> Void
    ) async throws(DownloadError) -> Sink {
        switch source.kind {
        case .file(let path):
            var sink = sink
            try Self.readFile(path, url: source.description, maxBytes: maxBytes) { (chunk: ByteBuffer) throws(DownloadError) in try take(&sink, chunk) }
            return sink
        case .http(let url, _):
            // async-http-client's own deadline ends once the response head is in; the body is
            // held to it here, so that a server trickling its body cannot hold a fetch for longer.
            let deadline = ContinuousClock.now + timeout
            let headDeadline = NIODeadline.now() + TimeAmount(timeout)
            let client = client
            let outcome = await withTaskGroup(of: Result<Sink, DownloadError>.self) { group in
                group.addTask {
                    do throws(DownloadError) {
                        return .success(try await Self.fetchFollowingRedirects(
                            source, client: client, deadline: headDeadline, maxBytes: maxBytes, into: sink, take))
                    } catch {
                        return .failure(error)
                    }
                }
                group.addTask {
                    try? await Task.sleep(until: deadline, clock: .continuous)
                    return .failure(Task.isCancelled ? .failed(url: url, reason: "cancelled") : .timedOut(url: url))
                }
                let first = await group.next() ?? .failure(.timedOut(url: url))
                group.cancelAll()
                return first
            }
            return try outcome.get()
        }
    }

    /// Up to 5 redirects, each target held to `DownloadSource.redirected(to:)`, then the body
    /// within `maxBytes`.
    private static func fetchFollowingRedirects<Sink>(
        _ source: DownloadSource, client: HTTPClient, deadline: NIODeadline, maxBytes: Int, into sink: Sink,
        _ take: (inout Sink, ByteBuffer) throws(DownloadError) -> Void
    ) async throws(DownloadError) -> Sink {
        var current = source
        for _ in 0...5 {
            guard case .http(let url, _) = current.kind else { throw .refused(url: current.description, reason: "not an http(s) URL") }
            let response: HTTPClientResponse
            do {
                response = try await client.execute(HTTPClientRequest(url: url), deadline: deadline)
            } catch {
                if NIODeadline.now() >= deadline { throw .timedOut(url: url) }
                throw .failed(url: url, reason: "\(error)")
            }
            let code = Int(response.status.code)
            if (300..<400).contains(code), let location = response.headers.first(name: "location") {
                current = try current.redirected(to: location)
                continue
            }
            guard (200..<300).contains(code) else { throw .httpStatus(code: code, url: url) }
            if let length = response.headers.first(name: "content-length").flatMap(Int.init), length > maxBytes {
                throw .tooLarge(url: url, limit: maxBytes)
            }
            var sink = sink
            var received = 0
            do {
                for try await chunk in response.body {
                    received += chunk.readableBytes
                    guard received <= maxBytes else { throw DownloadError.tooLarge(url: url, limit: maxBytes) }
                    try take(&sink, chunk)
                }
            } catch let error as DownloadError {
                throw error
            } catch {
                throw .failed(url: url, reason: "\(error)")
            }
            return sink
        }
        throw .tooManyRedirects(url: source.description)
    }

    /// Writes all of `chunk` to `file`, again after a short write or an interrupt.
    private static func writeAll(_ chunk: ByteBuffer, to file: Int32) -> Bool {
        chunk.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(file, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { return false }
                offset += written
            }
            return true
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
