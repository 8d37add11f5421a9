import CArchive
import CLinux
import Glibc
import PilotCrypto
import PilotWire

/// The store of unpacked bundles: `root/<bundle sha256>/`, one directory per bundle, shared by
/// every identity that installed it, written only by the app service.
///
/// A bundle is hashed before a byte of it is unpacked, from the very bytes then unpacked (read
/// once into memory, within `limits.compressed`). libarchive reads the gzip and the tar; this
/// type decides what may come out: regular files and directories only, at relative paths
/// without `.`, `..` or empty components, each created beneath the staging directory with
/// `openat` and `O_NOFOLLOW`, modes 0644 or 0755 (never setuid, setgid or sticky), ownership
/// and times ignored. Unpacking goes to a staging directory renamed into place when complete,
/// so a crash leaves no half entry under a bundle's name (`sweepStaging` removes the leftovers).
public struct BundleStore: Sendable {
    public let root: String
    public let limits: BundleLimits

    public init(root: String, limits: BundleLimits = BundleLimits()) {
        self.root = root
        self.limits = limits
    }

    /// The directory of bundle `sha256`, if the store has it.
    public func directory(for sha256: String) -> String? {
        let hash = sha256.lowercased()
        guard Hex.isLowercase(hash, bytes: 32) else { return nil }
        var status = stat()
        let path = root + "/" + hash
        guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return path
    }

    /// The bundles in the store.
    public func listed() -> [String] {
        names(in: root).filter { Hex.isLowercase($0, bytes: 32) }.sorted()
    }

    /// Removes bundle `sha256` from the store.
    public func remove(sha256: String) throws(BundleError) {
        guard let path = directory(for: sha256) else { return }
        // Renamed away first, so nobody finds a half-removed bundle under its name.
        let doomed = root + "/.removing-\(UInt64.random(in: 0...UInt64.max))"
        guard rename(path, doomed) == 0 else { throw .store(reason: "cannot remove \(path): \(String(cString: strerror(errno)))") }
        AppStoreLayout.removeTree(doomed)
    }

    /// Removes what an unpack or a removal interrupted by a crash left.
    public func sweepStaging() {
        for name in names(in: root) where name.hasPrefix(".staging-") || name.hasPrefix(".removing-") {
            AppStoreLayout.removeTree(root + "/" + name)
        }
    }

    /// Unpacks the bundle at `path`, whose SHA-256 must be `expectedSHA256`, and returns its
    /// directory (already there when another identity installed the same bundle).
    public func unpack(bundleAt path: String, expectedSHA256: String) throws(BundleError) -> String {
        let expected = expectedSHA256.lowercased()
        guard Hex.isLowercase(expected, bytes: 32) else { throw .hashMismatch(expected: expectedSHA256, actual: "(not checked)") }
        let bytes = try read(path)
        let actual = Hex.lowercase(Sodium.sha256(bytes))
        guard actual == expected else { throw .hashMismatch(expected: expected, actual: actual) }
        if let present = directory(for: expected) { return present }
        guard AppStoreLayout.makeDirectories(root, mode: 0o755) else {
            throw .store(reason: "cannot make \(root): \(String(cString: strerror(errno)))")
        }
        let staging = root + "/.staging-\(UInt64.random(in: 0...UInt64.max))"
        guard mkdir(staging, 0o700) == 0 else { throw .store(reason: "cannot make \(staging): \(String(cString: strerror(errno)))") }
        do throws(BundleError) {
            let descriptor = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { throw BundleError.store(reason: "cannot open \(staging): \(String(cString: strerror(errno)))") }
            defer { close(descriptor) }
            var unpacker = Unpacker(directory: descriptor, limits: limits)
            try unpacker.unpack(bytes)
            guard syncfs(descriptor) == 0 else { throw BundleError.store(reason: "sync: \(String(cString: strerror(errno)))") }
            guard chmod(staging, 0o755) == 0 else { throw BundleError.store(reason: "chmod \(staging): \(String(cString: strerror(errno)))") }
        } catch {
            AppStoreLayout.removeTree(staging)
            throw error
        }
        let final = root + "/" + expected
        if rename(staging, final) != 0 {
            let code = errno
            AppStoreLayout.removeTree(staging)
            // Another install of the same bundle finished first: theirs is the same bytes.
            if (code == EEXIST || code == ENOTEMPTY), let present = directory(for: expected) { return present }
            throw .store(reason: "cannot rename into \(final): \(String(cString: strerror(code)))")
        }
        return final
    }

    private func read(_ path: String) throws(BundleError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw .unreadable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            throw .unreadable(path: path, reason: "not a regular file")
        }
        guard Int(status.st_size) <= limits.compressed else { throw .tooLarge(what: "the bundle", limit: limits.compressed) }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress.map { $0 + done }, $0.count - done, off_t(done)) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { throw .unreadable(path: path, reason: count == 0 ? "shorter than it said" : String(cString: strerror(errno))) }
            done += count
        }
        return bytes
    }

    private func names(in directory: String) -> [String] { AppStoreLayout.names(in: directory) ?? [] }
}

/// One bundle's entries, read with libarchive and written beneath `directory`.
private struct Unpacker {
    let directory: Int32
    let limits: BundleLimits
    private var seen = Set<String>()
    private var total = 0
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)

    // archive_entry.h's AE_IFDIR, AE_IFREG and AE_IFLNK (macros Swift cannot import).
    static let directoryType: mode_t = 0o040000
    static let regularType: mode_t = 0o100000
    static let linkType: mode_t = 0o120000

    init(directory: Int32, limits: BundleLimits) {
        self.directory = directory
        self.limits = limits
    }

    mutating func unpack(_ bytes: [UInt8]) throws(BundleError) {
        guard let archive = archive_read_new() else { throw .store(reason: "libarchive: out of memory") }
        defer { archive_read_free(archive) }
        archive_read_support_filter_gzip(archive)
        archive_read_support_format_tar(archive)
        let result: Result<Void, BundleError> = bytes.withUnsafeBytes { raw in
            guard archive_read_open_memory(archive, raw.baseAddress, raw.count) == ARCHIVE_OK else {
                return .failure(.malformed(reason: Self.message(archive)))
            }
            do throws(BundleError) {
                try entries(archive)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    private mutating func entries(_ archive: OpaquePointer) throws(BundleError) {
        var entry: OpaquePointer?
        while true {
            let status = archive_read_next_header(archive, &entry)
            if status == ARCHIVE_EOF { return }
            guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let entry else { throw .malformed(reason: Self.message(archive)) }
            guard seen.count < limits.entries else { throw .tooLarge(what: "the number of entries", limit: limits.entries) }
            let raw = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            let components = try Self.components(raw, limits: limits)
            let path = components.joined(separator: "/")
            guard seen.insert(path).inserted else { throw .unsafeEntry(path: raw, reason: "appears twice") }
            guard archive_entry_hardlink(entry) == nil else { throw .unsafeEntry(path: raw, reason: "hard links are refused") }
            let type = archive_entry_filetype(entry)
            let parent = try openParents(components.dropLast(), entry: raw)
            defer { if parent != directory { close(parent) } }
            let name = components[components.count - 1]
            switch type {
            case Self.directoryType:
                guard mkdirat(parent, name, 0o755) == 0 || errno == EEXIST else {
                    throw .store(reason: "\(path): \(String(cString: strerror(errno)))")
                }
            case Self.regularType:
                if archive_entry_size_is_set(entry) != 0, archive_entry_size(entry) > Int64(limits.perFile) {
                    throw .tooLarge(what: "bundle entry \(path)", limit: limits.perFile)
                }
                let executable = archive_entry_perm(entry) & 0o111 != 0
                try write(archive, into: parent, name: name, path: path, mode: executable ? 0o755 : 0o644)
            case Self.linkType: throw .unsafeEntry(path: raw, reason: "symbolic links are refused")
            default: throw .unsafeEntry(path: raw, reason: "only regular files and directories may be unpacked (type \(type))")
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
        guard parts.count <= limits.depth else { throw .unsafeEntry(path: raw, reason: "deeper than \(limits.depth) directories") }
        return parts
    }

    /// Opens (making them as needed) the directories `components` beneath the staging
    /// directory, never following a link.
    private func openParents(_ components: ArraySlice<String>, entry: String) throws(BundleError) -> Int32 {
        var current = directory
        for component in components {
            if mkdirat(current, component, 0o755) != 0, errno != EEXIST {
                if current != directory { close(current) }
                throw .store(reason: "\(entry): \(String(cString: strerror(errno)))")
            }
            let next = openat(current, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if current != directory { close(current) }
            guard next >= 0 else { throw .unsafeEntry(path: entry, reason: "\(component) is not a directory") }
            current = next
        }
        return current
    }

    private mutating func write(_ archive: OpaquePointer, into parent: Int32, name: String, path: String, mode: mode_t) throws(BundleError) {
        let file = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard file >= 0 else { throw .unsafeEntry(path: path, reason: "cannot be created: \(String(cString: strerror(errno)))") }
        defer { close(file) }
        var size = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
            if count == 0 { break }
            guard count > 0 else { throw .malformed(reason: Self.message(archive)) }
            size += count
            total += count
            guard size <= limits.perFile else { throw .tooLarge(what: "bundle entry \(path)", limit: limits.perFile) }
            guard total <= limits.total else { throw .tooLarge(what: "the unpacked bundle", limit: limits.total) }
            var done = 0
            while done < count {
                let written = buffer.withUnsafeBytes { Glibc.write(file, $0.baseAddress.map { $0 + done }, count - done) }
                guard written > 0 else { throw .store(reason: "\(path): \(String(cString: strerror(errno)))") }
                done += written
            }
        }
        guard fchmod(file, mode) == 0 else { throw .store(reason: "\(path): \(String(cString: strerror(errno)))") }
    }

    static func message(_ archive: OpaquePointer) -> String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }
}
