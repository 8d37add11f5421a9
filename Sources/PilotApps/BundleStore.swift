import CLinux
import Glibc
import PilotCrypto
import PilotWire

/// The store of unpacked bundles: `root/<bundle sha256>/`, one directory per bundle, shared by
/// every identity that installed it, written only by the app service.
///
/// A bundle is hashed before a byte of it is unpacked, from the very bytes then unpacked (read
/// once into memory, within `limits.compressed`); `BundleUnpacker` decides what may come out of
/// it. Unpacking goes to `root/.staging-<random>`, synced, then renamed to its hash, so a crash
/// leaves no half entry under a bundle's name. What a crash leaves under `.staging-*` (or
/// `.removing-*`) stays until `sweepStaging`, which the app service calls when it starts:
/// `init` does no I/O, and a sweep while another process unpacks would pull its staging
/// directory away.
public struct BundleStore: Sendable {
    /// The store's directory, made 0755 by the first unpack when missing.
    public let root: String
    /// What a bundle may hold.
    public let limits: BundleLimits

    /// A store at `root`; nothing is read or made until it is used.
    public init(root: String, limits: BundleLimits = BundleLimits()) {
        self.root = root
        self.limits = limits
    }

    /// The directory of bundle `sha256` (any case), if the store has it.
    public func directory(for sha256: String) -> String? {
        let hash = sha256.lowercased()
        guard Hex.isLowercase(hash, bytes: 32) else { return nil }
        var status = stat()
        let path = root + "/" + hash
        guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR else { return nil }
        return path
    }

    /// The hashes of the bundles in the store, sorted.
    public func listed() -> [String] {
        names(in: root).filter { Hex.isLowercase($0, bytes: 32) }.sorted()
    }

    /// Removes bundle `sha256` from the store; nothing happens when it is not there.
    public func remove(sha256: String) throws(BundleError) {
        guard let path = directory(for: sha256) else { return }
        // Renamed away first, so nobody finds a half-removed bundle under its name.
        let doomed = root + "/.removing-\(UInt64.random(in: 0...UInt64.max))"
        guard rename(path, doomed) == 0 else { throw .store(reason: "cannot remove \(path): \(Self.reason())") }
        AppStoreLayout.removeTree(doomed)
    }

    /// Removes what an unpack or a removal interrupted by a crash left. Only for when no other
    /// process is unpacking into this store.
    public func sweepStaging() {
        for name in names(in: root) where name.hasPrefix(".staging-") || name.hasPrefix(".removing-") {
            AppStoreLayout.removeTree(root + "/" + name)
        }
    }

    /// Unpacks the bundle at `path`, whose SHA-256 must be `expectedSHA256` (any case), and
    /// returns its directory, `root/<sha256>` (already there when another identity installed
    /// the same bundle). When it throws, the store is as it was.
    public func unpack(bundleAt path: String, expectedSHA256: String) throws(BundleError) -> String {
        let expected = expectedSHA256.lowercased()
        guard Hex.isLowercase(expected, bytes: 32) else { throw .invalidExpectedHash(expectedSHA256) }
        let bytes = try read(path)
        let actual = Hex.lowercase(Sodium.sha256(bytes))
        guard actual == expected else { throw .hashMismatch(expected: expected, actual: actual) }
        if let present = directory(for: expected) { return present }
        try makeRoot()
        // 0700 while it fills, so nobody else reads a half bundle.
        let staging = root + "/.staging-\(UInt64.random(in: 0...UInt64.max))"
        guard mkdir(staging, 0o700) == 0 else { throw .store(reason: "cannot make \(staging): \(Self.reason())") }
        do throws(BundleError) {
            let descriptor = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard descriptor >= 0 else { throw BundleError.store(reason: "cannot open \(staging): \(Self.reason())") }
            defer { close(descriptor) }
            var unpacker = BundleUnpacker(directory: descriptor, limits: limits)
            try unpacker.unpack(bytes)
            guard fchmod(descriptor, 0o755) == 0 else { throw BundleError.store(reason: "chmod \(staging): \(Self.reason())") }
            // One call writes back every file and directory just made, where fsync would take
            // one per entry; the rename below must not reach the disk before them.
            guard syncfs(descriptor) == 0 else { throw BundleError.store(reason: "sync \(staging): \(Self.reason())") }
        } catch {
            AppStoreLayout.removeTree(staging)
            throw error
        }
        let final = root + "/" + expected
        if rename(staging, final) != 0 {
            let code = errno
            AppStoreLayout.removeTree(staging)
            // Another install of the same bundle finished first: theirs is the same bytes.
            if code == EEXIST || code == ENOTEMPTY, let present = directory(for: expected) { return present }
            throw .store(reason: "cannot rename into \(final): \(String(cString: strerror(code)))")
        }
        syncRoot()
        return final
    }

    /// Makes the root 0755 (whatever the umask) when it is missing.
    private func makeRoot() throws(BundleError) {
        var status = stat()
        if stat(root, &status) == 0 {
            guard (status.st_mode & S_IFMT) == S_IFDIR else { throw .store(reason: "\(root) is not a directory") }
            return
        }
        guard AppStoreLayout.makeDirectories(root, mode: 0o755), chmod(root, 0o755) == 0 else {
            throw .store(reason: "cannot make \(root): \(Self.reason())")
        }
    }

    /// Makes the rename durable. The bundle is complete under its name either way, so a
    /// failure here is no reason to refuse it.
    private func syncRoot() {
        let descriptor = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        fsync(descriptor)
        close(descriptor)
    }

    /// The whole file at `path`, a regular file within `limits.compressed`.
    private func read(_ path: String) throws(BundleError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw .unreadable(path: path, reason: Self.reason()) }
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
            guard count > 0 else { throw .unreadable(path: path, reason: count == 0 ? "shorter than it said" : Self.reason()) }
            done += count
        }
        return bytes
    }

    private func names(in directory: String) -> [String] { AppStoreLayout.names(in: directory) ?? [] }

    /// errno in words.
    static func reason() -> String { String(cString: strerror(errno)) }
}
