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
        do { return try KeyFile.read(path, what: "master key", checkMode: checkMode) } catch { throw MasterKeyError(error) }
    }

    private static func create(_ path: String) throws(MasterKeyError) -> SecretBytes {
        let key: SecretBytes
        do { key = try SecretBox.generateKey() } catch { throw .unwritable(path: path, errno: EIO) }
        do { try KeyFile.create(path, what: "master key", secret: key) } catch { throw MasterKeyError(error) }
        return key
    }
}

/// Why the master key could not be had. The host refuses to start rather than run without one.
public enum MasterKeyError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, errno: Int32)
    case unwritable(path: String, errno: Int32)
    case wrongSize(path: String, size: Int)
    case tooOpen(path: String, mode: mode_t)

    init(_ error: KeyFileError) {
        switch error {
        case let .unreadable(_, path, code): self = .unreadable(path: path, errno: code)
        case let .unwritable(_, path, code): self = .unwritable(path: path, errno: code)
        case let .wrongSize(_, path, size): self = .wrongSize(path: path, size: size)
        case let .tooOpen(_, path, mode): self = .tooOpen(path: path, mode: mode)
        }
    }

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
