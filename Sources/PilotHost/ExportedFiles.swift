import FoundationEssentials
import Glibc

/// The host's own copies of the identity files it exported, in `STATE/exported/` (root's
/// only, 0700 and 0600). An export writes its file here, durably, before the identity is
/// deleted: if the reply never reaches a file (pilotctl killed, a full disk at the user's
/// end), the identity is still had from here. The files are sealed to the destination host,
/// so this host cannot open them again; they stay until an administrator removes them.
struct ExportedFiles: Sendable {
    /// `STATE/exported`.
    let directory: String

    /// Writes `file` as `NAME-NODE-UNIXSECONDS.pilot` (a temporary file, fsynced, renamed,
    /// the directory fsynced) and returns its path; throws with the system's reason, and
    /// leaves no partial file.
    func keep(_ file: [UInt8], name: String, node: UInt32) throws -> String {
        if mkdir(directory, 0o700) != 0, errno != EEXIST { throw Self.failure("create \(directory)") }
        let path = "\(directory)/\(name)-\(node)-\(Int(Date().timeIntervalSince1970)).pilot"
        let temporary = path + ".tmp"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else { throw Self.failure("create \(temporary)") }
        if let failure = WholeFile.finish(descriptor, writing: file, temporary: temporary, to: path) {
            throw ExportFileError(message: "cannot \(failure)")
        }
        let directoryDescriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryDescriptor >= 0 {
            fsync(directoryDescriptor)
            close(directoryDescriptor)
        }
        return path
    }

    private static func failure(_ what: String) -> ExportFileError {
        ExportFileError(message: "cannot \(what): \(String(cString: strerror(errno)))")
    }
}

/// The host's copy of an exported file could not be written: nothing was exported.
struct ExportFileError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
