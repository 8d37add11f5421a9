public import FoundationEssentials
import Glibc
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

    /// `directory` and `name` joined by one slash.
    private static func joined(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Loads (or creates) the master key; returns it and where it came from.
    public static func load(
        stateDirectory: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(KeyFileError) -> (key: SecretBytes, source: Source) {
        if let credentials = environment["CREDENTIALS_DIRECTORY"], !credentials.isEmpty {
            let path = joined(credentials, fileName)
            if FileManager.default.fileExists(atPath: path) {
                // systemd owns the credential's permissions; don't second-guess them.
                return (try KeyFile.read(path, what: "master key", checkMode: false), .credential(path))
            }
        }
        let path = joined(stateDirectory, fileName)
        if FileManager.default.fileExists(atPath: path) {
            return (try KeyFile.read(path, what: "master key"), .stateFile(path))
        }
        return (try create(path), .created(path))
    }

    private static func create(_ path: String) throws(KeyFileError) -> SecretBytes {
        let key: SecretBytes
        do { key = try SecretBox.generateKey() } catch { throw .unwritable(what: "master key", path: path, errno: EIO) }
        try KeyFile.create(path, what: "master key", secret: key)
        return key
    }
}

/// Why the master key cannot serve `host.db`.
public enum MasterKeyError: Error, Equatable, CustomStringConvertible {
    /// No master key was found, so one was created at `path`, but host.db holds identities
    /// (`identity` among them) sealed under another; the created key has been removed again.
    case missing(path: String, identity: String)

    public var description: String {
        switch self {
        case let .missing(path, identity):
            """
            no master key was found at \(path), so a new one was just created, but host.db holds identities \
            sealed under another master key (\(identity) among them); the new key was removed again: put the \
            original master key back at \(path) or in the systemd credential master-key
            """
        }
    }
}
