public import Glibc

/// A file holding exactly one 32-byte secret (a master key, an Ed25519 seed), mode 0600.
public enum KeyFile {
    /// The secret's size: the file holds exactly this many bytes.
    public static let size = 32

    /// Reads the secret at `path`. With `checkMode`, a file the group or others may read is
    /// refused, not used.
    public static func read(_ path: String, what: String, checkMode: Bool = true) throws(KeyFileError) -> SecretBytes {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { throw .unreadable(what: what, path: path, errno: errno) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .unreadable(what: what, path: path, errno: errno) }
        if checkMode, info.st_mode & 0o077 != 0 {
            throw .tooOpen(what: what, path: path, mode: info.st_mode & 0o777)
        }
        var bytes = [UInt8](repeating: 0, count: size + 1)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        defer { Sodium.zero(&bytes) }
        guard count == size else { throw .wrongSize(what: what, path: path, size: count) }
        return SecretBytes(copying: Array(bytes.prefix(size)))
    }

    /// Writes `secret` to a temporary file (0600), fsyncs it and renames it into place, so a
    /// crash leaves either no file or a whole one.
    public static func create(_ path: String, what: String, secret: SecretBytes) throws(KeyFileError) {
        let temporary = path + ".tmp"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .unwritable(what: what, path: temporary, errno: errno) }
        let written = secret.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == secret.count, synced, rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .unwritable(what: what, path: path, errno: code)
        }
        // Make the rename itself durable.
        let slash = path.lastIndex(of: "/")
        let directory = open(slash.map { String(path[..<$0]) }.flatMap { $0.isEmpty ? "/" : $0 } ?? ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}

/// Why a key file could not be had.
public enum KeyFileError: Error, Equatable, CustomStringConvertible {
    /// The file could not be opened or read (`errno`).
    case unreadable(what: String, path: String, errno: Int32)
    /// The file could not be created or written (`errno`).
    case unwritable(what: String, path: String, errno: Int32)
    /// The file does not hold exactly `KeyFile.size` bytes.
    case wrongSize(what: String, path: String, size: Int)
    /// The group or others may read the file.
    case tooOpen(what: String, path: String, mode: mode_t)

    /// What failed and on which file, with the system's reason.
    public var description: String {
        switch self {
        case let .unreadable(what, path, code): "cannot read \(what) \(path): \(String(cString: strerror(code)))"
        case let .unwritable(what, path, code): "cannot write \(what) \(path): \(String(cString: strerror(code)))"
        case let .wrongSize(what, path, size): "\(what) \(path) must hold exactly \(KeyFile.size) bytes, it has \(size)"
        case let .tooOpen(what, path, mode):
            "\(what) \(path) has mode \(String(mode, radix: 8)); it must not be readable by group or others (chmod 600)"
        }
    }
}
