/// Why a download failed.
public enum DownloadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The URL (or a redirect's target) is not one the rule allows.
    case refused(url: String, reason: String)
    /// The server answered with a status other than 2xx (or a 3xx without a Location).
    case httpStatus(code: Int, url: String)
    /// The body (announced or received) is larger than `limit` bytes.
    case tooLarge(url: String, limit: Int)
    /// More than 5 redirects from `url`.
    case tooManyRedirects(url: String)
    /// The whole fetch, body included, did not end within its timeout.
    case timedOut(url: String)
    /// Anything else: the connection, TLS, a local file, the disk.
    case failed(url: String, reason: String)

    /// The URL, then what went wrong: what a log line or pilotctl shows.
    public var description: String {
        switch self {
        case let .refused(url, reason): "\(url): refused: \(reason)"
        case let .httpStatus(code, url): "\(url): HTTP \(code)"
        case let .tooLarge(url, limit): "\(url): larger than \(limit) bytes"
        case let .tooManyRedirects(url): "\(url): more than 5 redirects"
        case let .timedOut(url): "\(url): timed out"
        case let .failed(url, reason): "\(url): \(reason)"
        }
    }
}
