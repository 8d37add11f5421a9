import Glibc

/// Files written whole or not at all: a temporary file beside the final one, filled, synced,
/// renamed into place. The callers open the temporary file (each its own way), the rest is here.
enum WholeFile {
    /// Writes `bytes` to `descriptor` (open on `temporary`), lets `prepare` act on it (a chown;
    /// it answers the failed operation, or nil), fsyncs and closes it, and renames `temporary` to
    /// `path`. On any failure `temporary` is removed and the answer is the failed operation with
    /// the system's reason (`write PATH: No space left on device`); nil when the file is in place.
    static func finish(
        _ descriptor: Int32, writing bytes: [UInt8], temporary: String, to path: String, prepare: (Int32) -> String? = { _ in nil }
    ) -> String? {
        func failure(_ operation: String) -> String { "\(operation): \(String(cString: strerror(errno)))" }
        var written = 0
        var failed: String?
        while written < bytes.count, failed == nil {
            let count = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count > 0 { written += count } else if errno != EINTR { failed = failure("write \(temporary)") }
        }
        if failed == nil, let operation = prepare(descriptor) { failed = failure(operation) }
        if failed == nil, fsync(descriptor) != 0 { failed = failure("fsync \(temporary)") }
        close(descriptor)
        if failed == nil, rename(temporary, path) != 0 { failed = failure("rename \(temporary)") }
        if failed != nil { unlink(temporary) }
        return failed
    }
}
