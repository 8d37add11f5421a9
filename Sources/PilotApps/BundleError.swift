/// Why a bundle was not unpacked. Nothing of it is left in the store.
public enum BundleError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The downloaded file cannot be read, or is not a regular file.
    case unreadable(path: String, reason: String)
    /// The bundle, one of its files or all of them together pass a limit of `limit` bytes.
    case tooLarge(what: String, limit: Int)
    /// The bundle holds more than `limit` entries.
    case tooManyEntries(limit: Int)
    /// The hash the bundle was to be checked against is not 64 hex digits (a broken catalogue entry).
    case invalidExpectedHash(String)
    /// The bundle's SHA-256 is not the catalogue's.
    case hashMismatch(expected: String, actual: String)
    /// An entry that must not be unpacked: its path and why.
    case unsafeEntry(path: String, reason: String)
    /// libarchive refused the bytes (not gzip, not tar, truncated).
    case malformed(reason: String)
    /// The store itself failed (disk full, permissions).
    case store(reason: String)

    /// The reason in words, with the path or the hashes involved.
    public var description: String {
        switch self {
        case let .unreadable(path, reason): "bundle \(path): \(reason)"
        case let .tooLarge(what, limit): "\(what) is over the limit of \(limit) bytes"
        case let .tooManyEntries(limit): "the bundle holds more than \(limit) entries"
        case let .invalidExpectedHash(hash): "the expected bundle sha256 \(hash.debugDescription) is not 64 hex digits"
        case let .hashMismatch(expected, actual): "the bundle's sha256 is \(actual), the catalogue says \(expected)"
        case let .unsafeEntry(path, reason): "bundle entry \(path.debugDescription): \(reason)"
        case let .malformed(reason): "the bundle is not a gzip-compressed tar archive: \(reason)"
        case let .store(reason): "the app store: \(reason)"
        }
    }
}
