public import Foundation
public import PilotCrypto

/// The host master key that seals identity keys at rest in `host.db`.
///
/// Taken from the systemd credential `$CREDENTIALS_DIRECTORY/master-key` when systemd provides it
/// (`LoadCredential=`), else from `<state dir>/master-key`, created on first start with mode 0600.
/// The file holds exactly 32 raw bytes. A key file that others can read is refused, not used.
public enum MasterKey {
    public static let fileName = "master-key"

    public enum Source: Equatable, Sendable {
        case credential(String)
        case stateFile(String)
        case created(String)
    }

    /// Loads (or creates) the master key; returns it and where it came from.
    public static func load(
        stateDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(MasterKeyError) -> (key: SecretBytes, source: Source) {
        if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            let path = (credentials as NSString).appendingPathComponent(fileName)
            if FileManager.default.fileExists(atPath: path) {
                // systemd owns the credential's permissions; don't second-guess them.
                return (try read(path, checkMode: false), .credential(path))
            }
        }
        let path = (stateDirectory as NSString).appendingPathComponent(fileName)
        if FileManager.default.fileExists(atPath: path) {
            return (try read(path, checkMode: true), .stateFile(path))
        }
        return (try create(path), .created(path))
    }

    private static func read(_ path: String, checkMode: Bool) throws(MasterKeyError) -> SecretBytes {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .unreadable(path: path, errno: errno) }
        if checkMode, info.st_mode & 0o077 != 0 {
            throw .tooOpen(path: path, mode: info.st_mode & 0o777)
        }
        var bytes = [UInt8](repeating: 0, count: SecretBox.keySize + 1)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        defer { Sodium.zero(&bytes) }
        guard count == SecretBox.keySize else { throw .wrongSize(path: path, size: count) }
        return SecretBytes(copying: Array(bytes.prefix(SecretBox.keySize)))
    }

    /// Writes a new random key to a temporary file (0600), fsyncs it and renames it into place,
    /// so a crash leaves either no key file or a whole one.
    private static func create(_ path: String) throws(MasterKeyError) -> SecretBytes {
        let key: SecretBytes
        do { key = try SecretBox.generateKey() } catch { throw .unwritable(path: path, errno: EIO) }
        let temporary = path + ".tmp"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw .unwritable(path: temporary, errno: errno) }
        let written = key.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == SecretBox.keySize, synced, rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .unwritable(path: path, errno: code)
        }
        // Make the rename itself durable.
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
        return key
    }
}

/// Why the master key could not be had. The host refuses to start rather than run without one.
public enum MasterKeyError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, errno: Int32)
    case unwritable(path: String, errno: Int32)
    case wrongSize(path: String, size: Int)
    case tooOpen(path: String, mode: mode_t)

    public var description: String {
        switch self {
        case let .unreadable(path, code): "cannot read master key \(path): \(String(cString: strerror(code)))"
        case let .unwritable(path, code): "cannot write master key \(path): \(String(cString: strerror(code)))"
        case let .wrongSize(path, size): "master key \(path) must hold exactly 32 bytes, it has \(size)"
        case let .tooOpen(path, mode):
            "master key \(path) has mode \(String(mode, radix: 8)); it must not be readable by group or others (chmod 600)"
        }
    }
}
