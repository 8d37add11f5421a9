import Glibc

/// Where the app service keeps things, under its root (`/var/lib/pilot-host-apps`):
///
/// - `store/<bundle sha256>/`: unpacked bundles, shared by every identity that installed one,
///   written only by the service (`BundleStore`);
/// - `state/<identity>/<app id>/`: each installed app's state, its `$APP` (read-write in its
///   sandbox, with the bundle's files mounted read-only over it);
/// - `suspended/<identity>/<app id>`: why an app is suspended, kept where the app cannot reach;
/// - `downloads/`: bundles being fetched.
public struct AppStoreLayout: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    public var store: String { root + "/store" }
    public var downloads: String { root + "/downloads" }

    /// The state directory of `app` for `identity`, or nil when either name is unsafe in a path.
    public func stateDirectory(identity: String, app: String) -> String? {
        guard Self.isSafeName(identity), Self.isSafeName(app) else { return nil }
        return root + "/state/\(identity)/\(app)"
    }

    /// Every state directory of `identity`.
    public func identityDirectory(_ identity: String) -> String? {
        Self.isSafeName(identity) ? root + "/state/\(identity)" : nil
    }

    public func suspensionFile(identity: String, app: String) -> String? {
        guard Self.isSafeName(identity), Self.isSafeName(app) else { return nil }
        return root + "/suspended/\(identity)/\(app)"
    }

    /// Letters, digits, `.`, `_` and `-`, 1 to 128 bytes, not starting with a dot: an identity's
    /// name or an app's id, used as a path component.
    public static func isSafeName(_ name: String) -> Bool {
        guard (1...128).contains(name.utf8.count), name.utf8.first != UInt8(ascii: ".") else { return false }
        return name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
                || byte == UInt8(ascii: "-")
        }
    }

    /// Makes `path` and its missing parents with `mode`.
    public static func makeDirectories(_ path: String, mode: UInt32) -> Bool {
        var built = ""
        for component in path.split(separator: "/") {
            built += "/" + component
            if mkdir(built, mode) != 0, errno != EEXIST { return false }
        }
        return true
    }

    /// Removes `path` and everything under it, without following links; true if nothing is left.
    @discardableResult
    public static func removeTree(_ path: String) -> Bool {
        var status = stat()
        guard lstat(path, &status) == 0 else { return errno == ENOENT }
        if (status.st_mode & S_IFMT) != S_IFDIR { return unlink(path) == 0 }
        for name in names(in: path) ?? [] { removeTree(path + "/" + name) }
        return rmdir(path) == 0
    }

    /// The names in a directory, without `.` and `..`; nil when it cannot be read.
    public static func names(in path: String) -> [String]? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    /// A file's bytes (at most `limit`), refusing links and anything but a regular file.
    public static func readRegularFile(_ path: String, limit: Int) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, Int(status.st_size) <= limit else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(status.st_size))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress.map { $0 + done }, $0.count - done) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return nil }
            done += count
        }
        return bytes
    }
}
