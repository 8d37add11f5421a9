import CArchive
import Foundation

/// A local app directory as a bundle (gzip-compressed tar, written by libarchive), for
/// `pilotctl appstore install DIR --local`. Only regular files and directories go in; a link
/// anywhere is refused, as the host would refuse it.
enum BundlePacker {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func pack(directory: String, limit: Int) throws -> [UInt8] {
        let root = URL(fileURLWithPath: directory).standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: root) else { throw Failure(description: "cannot read \(directory)") }
        let temporary = NSTemporaryDirectory() + "pilotctl-bundle-\(getpid()).tar.gz"
        defer { unlink(temporary) }
        guard let archive = archive_write_new() else { throw Failure(description: "libarchive: out of memory") }
        defer { archive_write_free(archive) }
        archive_write_add_filter_gzip(archive)
        archive_write_set_format_pax_restricted(archive)
        guard archive_write_open_filename(archive, temporary) == ARCHIVE_OK else { throw Failure(description: message(archive)) }
        for case let relative as String in walker {
            var status = stat()
            let path = root + "/" + relative
            guard lstat(path, &status) == 0 else { throw Failure(description: "\(path): \(String(cString: strerror(errno)))") }
            let type = status.st_mode & S_IFMT
            guard type == S_IFREG || type == S_IFDIR else {
                throw Failure(description: "\(relative): only regular files and directories go in a bundle (links are refused)")
            }
            guard let entry = archive_entry_new() else { throw Failure(description: "libarchive: out of memory") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, relative)
            archive_entry_set_filetype(entry, UInt32(type))
            archive_entry_set_perm(entry, type == S_IFDIR || status.st_mode & 0o111 != 0 ? 0o755 : 0o644)
            archive_entry_set_size(entry, type == S_IFREG ? Int64(status.st_size) : 0)
            guard archive_write_header(archive, entry) == ARCHIVE_OK else { throw Failure(description: message(archive)) }
            if type == S_IFREG {
                guard let data = FileManager.default.contents(atPath: path) else { throw Failure(description: "cannot read \(path)") }
                let written = data.withUnsafeBytes { archive_write_data(archive, $0.baseAddress, $0.count) }
                guard written == data.count else { throw Failure(description: message(archive)) }
            }
        }
        guard archive_write_close(archive) == ARCHIVE_OK else { throw Failure(description: message(archive)) }
        guard let bytes = FileManager.default.contents(atPath: temporary) else { throw Failure(description: "cannot read the bundle back") }
        guard bytes.count <= limit else { throw Failure(description: "the bundle is \(bytes.count) bytes, over the \(limit) the host takes") }
        return Array(bytes)
    }

    private static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "libarchive failed"
    }
}
