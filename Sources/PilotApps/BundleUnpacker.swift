import CArchive
import Glibc

/// One bundle's entries, read from memory with libarchive (gzip, tar) and written beneath an
/// empty staging directory.
///
/// libarchive only parses; this type decides what may come out: regular files and directories,
/// at relative paths without `.`, `..` or empty components, each created beneath the staging
/// directory with `openat` and `O_NOFOLLOW` (files with `O_EXCL` too). Files are 0644, or 0755
/// when the archive gives any execute bit; directories 0755; never setuid, setgid or sticky.
/// Ownership, times and extended attributes in the archive are ignored. The first refused
/// entry refuses the whole bundle; the caller removes what was written.
struct BundleUnpacker {
    /// The staging directory; never closed here.
    let directory: Int32
    let limits: BundleLimits
    private var seen = Set<String>()
    private var entries = 0
    private var total = 0
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)

    // archive_entry.h's AE_IF* (macros Swift cannot import).
    static let directoryType: mode_t = 0o040000
    static let regularType: mode_t = 0o100000
    static let linkType: mode_t = 0o120000
    static let refusedTypes: [mode_t: String] = [
        0o010000: "FIFOs", 0o020000: "character devices", 0o060000: "block devices", 0o140000: "sockets",
    ]

    init(directory: Int32, limits: BundleLimits) {
        self.directory = directory
        self.limits = limits
    }

    /// Unpacks `bytes`, a gzip-compressed tar (an uncompressed one passes too: the hash was
    /// checked, and the entries get the same rules).
    mutating func unpack(_ bytes: [UInt8]) throws(BundleError) {
        guard let archive = archive_read_new() else { throw .store(reason: "libarchive: out of memory") }
        defer { archive_read_free(archive) }
        // `tar` reads ustar, pax and GNU tar alike.
        archive_read_support_filter_gzip(archive)
        archive_read_support_format_tar(archive)
        let result: Result<Void, BundleError> = bytes.withUnsafeBytes { raw in
            guard archive_read_open_memory(archive, raw.baseAddress, raw.count) == ARCHIVE_OK else {
                return .failure(.malformed(reason: Self.message(archive)))
            }
            do throws(BundleError) {
                try readEntries(archive)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    private mutating func readEntries(_ archive: OpaquePointer) throws(BundleError) {
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { return }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else { throw .malformed(reason: Self.message(archive)) }
            entries += 1
            guard entries <= limits.entries else { throw .tooManyEntries(limit: limits.entries) }
            let raw = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            let type = archive_entry_filetype(entry)
            let isLink = archive_entry_hardlink(entry) != nil
            // `tar -C dir -czf bundle.tar.gz .` names the bundle's own directory first.
            if raw == "." || raw == "./", type == Self.directoryType, !isLink { continue }
            let components = try Self.components(raw, limits: limits)
            let path = components.joined(separator: "/")
            guard seen.insert(path).inserted else { throw .unsafeEntry(path: raw, reason: "appears twice") }
            guard !isLink else { throw .unsafeEntry(path: raw, reason: "hard links are refused") }
            switch type {
            case Self.directoryType:
                close(try openDirectories(components[...], entry: raw))
            case Self.regularType:
                let declared = archive_entry_size_is_set(entry) != 0 ? Int(archive_entry_size(entry)) : nil
                if let declared, declared > limits.perFile { throw .tooLarge(what: "bundle entry \(path)", limit: limits.perFile) }
                let parent = try openDirectories(components.dropLast(), entry: raw)
                defer { if parent != directory { close(parent) } }
                let executable = archive_entry_perm(entry) & 0o111 != 0
                try write(archive, into: parent, name: components[components.count - 1], path: path, declared: declared, mode: executable ? 0o755 : 0o644)
            case Self.linkType:
                throw .unsafeEntry(path: raw, reason: "symbolic links are refused")
            default:
                let kind = Self.refusedTypes[type] ?? "entries of type \(String(type, radix: 8))"
                throw .unsafeEntry(path: raw, reason: "\(kind) are refused: only regular files and directories may be unpacked")
            }
        }
    }

    /// The entry's path as components, refused when it could land outside the bundle.
    static func components(_ raw: String, limits: BundleLimits) throws(BundleError) -> [String] {
        guard !raw.isEmpty else { throw .unsafeEntry(path: raw, reason: "has no name") }
        guard raw.utf8.count <= limits.pathLength else { throw .unsafeEntry(path: raw, reason: "the path is over \(limits.pathLength) bytes") }
        guard !raw.hasPrefix("/") else { throw .unsafeEntry(path: raw, reason: "absolute paths are refused") }
        guard !raw.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw .unsafeEntry(path: raw, reason: "control characters in the path")
        }
        var parts = raw.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if parts.first == "." { parts.removeFirst() }  // tar's "./x"
        if parts.last == "" { parts.removeLast() }  // a directory's "x/"
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw .unsafeEntry(path: raw, reason: "empty, . or .. components are refused")
        }
        guard parts.count <= limits.depth else { throw .unsafeEntry(path: raw, reason: "deeper than \(limits.depth) components") }
        return parts
    }

    /// Opens (making them 0755 as needed) the directories `components` beneath the staging
    /// directory, never following a link; the staging directory itself when there are none.
    private func openDirectories(_ components: ArraySlice<String>, entry: String) throws(BundleError) -> Int32 {
        var current = directory
        for component in components {
            let made = mkdirat(current, component, 0o755) == 0
            if !made, errno != EEXIST {
                if current != directory { close(current) }
                throw .store(reason: "\(entry): \(BundleStore.reason())")
            }
            let next = openat(current, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if current != directory { close(current) }
            guard next >= 0 else { throw .unsafeEntry(path: entry, reason: "\(component) is not a directory") }
            // mkdirat's mode went through the umask (the service's is 0077).
            if made, fchmod(next, 0o755) != 0 {
                close(next)
                throw .store(reason: "\(entry): \(BundleStore.reason())")
            }
            current = next
        }
        return current
    }

    /// Writes the current entry's data to a new file `name` in `parent`, counting the bytes
    /// libarchive gives against the limits and against the size the header declared.
    private mutating func write(
        _ archive: OpaquePointer, into parent: Int32, name: String, path: String, declared: Int?, mode: mode_t
    ) throws(BundleError) {
        let file = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard file >= 0 else { throw .unsafeEntry(path: path, reason: "cannot be created: \(BundleStore.reason())") }
        defer { close(file) }
        var size = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
            if count == 0 { break }
            guard count > 0 else { throw .malformed(reason: "\(path): \(Self.message(archive))") }
            size += count
            total += count
            guard size <= limits.perFile else { throw .tooLarge(what: "bundle entry \(path)", limit: limits.perFile) }
            guard total <= limits.total else { throw .tooLarge(what: "the unpacked bundle", limit: limits.total) }
            var done = 0
            while done < count {
                let written = buffer.withUnsafeBytes { Glibc.write(file, $0.baseAddress.map { $0 + done }, count - done) }
                if written < 0, errno == EINTR { continue }
                guard written > 0 else { throw .store(reason: "\(path): \(BundleStore.reason())") }
                done += written
            }
        }
        if let declared, size != declared {
            throw .unsafeEntry(path: path, reason: "holds \(size) bytes where its header says \(declared)")
        }
        // openat's mode went through the umask.
        guard fchmod(file, mode) == 0 else { throw .store(reason: "\(path): \(BundleStore.reason())") }
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }
}
