import FoundationEssentials
import Glibc
import Logging
import PilotCrypto
import PilotNet
import PilotWire

/// The admin token of the host, as 1.18's `-admin-token`: what a broadcast must carry.
enum AdminToken {
    /// The first line of the file at `path` (nil when `path` is empty), set by config `key`. A
    /// file that cannot be read, or whose first line is blank, stops the host: a setting that
    /// silently did nothing would be worse. A file every user may read is allowed, with a warning.
    static func load(_ path: String, key: String = "admin-token-file", logger: Logger) throws(ConfigurationError) -> String? {
        guard !path.isEmpty else { return nil }
        let token: String
        do { token = try TokenFile.read(path) } catch { throw .invalidValue(key: key, value: path, reason: "\(error)") }
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & 0o004 != 0 {
            logger.warning("a token file is readable by every user; chmod 600 it", metadata: ["path": "\(path)", "setting": "\(key)"])
        }
        return token
    }
}
