/// Why a bundle was not unpacked. Nothing of it is left in the store.
public enum BundleError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The downloaded file cannot be read, or is not a regular file.
    case unreadable(path: String, reason: String)
    /// The bundle or one of its entries passes a limit.
    case tooLarge(what: String, limit: Int)
    /// The bundle's SHA-256 is not the catalogue's.
    case hashMismatch(expected: String, actual: String)
    /// An entry that must not be unpacked: its path and why.
    case unsafeEntry(path: String, reason: String)
    /// libarchive refused the bytes (not gzip, not tar, truncated).
    case malformed(reason: String)
    /// The store itself failed (disk full, permissions).
    case store(reason: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): "bundle \(path): \(reason)"
        case let .tooLarge(what, limit): "\(what) is over the limit of \(limit) bytes"
        case let .hashMismatch(expected, actual): "the bundle's sha256 is \(actual), the catalogue says \(expected)"
        case let .unsafeEntry(path, reason): "bundle entry \(path.debugDescription): \(reason)"
        case let .malformed(reason): "the bundle is not a gzip-compressed tar archive: \(reason)"
        case let .store(reason): "the app store: \(reason)"
        }
    }
}

/// How much a bundle may hold.
public struct BundleLimits: Hashable, Sendable {
    /// The compressed bundle (the official store's limit).
    public var compressed = 128 << 20
    /// One file (the official store's limit).
    public var perFile = 64 << 20
    /// Every file together.
    public var total = 512 << 20
    public var entries = 20_000
    public var pathLength = 1024
    public var depth = 32

    public init() {}
}
