import Glibc
import Logging
import PilotStore
import PilotWire

/// A copy of each identity's inbox and received files in the official daemon's file format, for
/// the official `pilotctl`, whose `inbox`, `received` and `send-message --wait` read
/// `$HOME/.pilot/inbox/` and `$HOME/.pilot/received/` by themselves (`docs/PROTOCOL.md` §12.4).
/// Identity NAME's spool is `DIR/NAME`: its owner runs `HOME=DIR/NAME pilotctl inbox`.
///
/// `host.db` stays the mailbox; the spool is written after a message is kept there, and a spool
/// that cannot be written (a full disk, an owner who took the host's rights away) loses nothing
/// but the copy, with a warning. Ownership: `DIR` is the host's (0711: others may pass through,
/// not list); `DIR/NAME`, its `.pilot`, `inbox` and `received` are the identity owner's with the
/// host's group, 0770, so the owner reads and deletes what the host writes, the host (which has
/// CAP_CHOWN but no right to override file modes) can still add, and nobody else can look in;
/// each file is the owner's, 0600. When an identity goes (deleted, or given to another owner)
/// its spool is moved out of the way under `DIR/.removed` and emptied as far as the host may: an
/// owner can have made parts of it that only it can delete, and those stay there, logged.
struct InboxSpool: Sendable {
    /// The spool directory, or nil: no spool.
    let directory: String?
    /// The group the host's spool directories carry (the host's own).
    let group: gid_t
    let logger: Logger

    init(directory: String, logger: Logger) {
        self.directory = directory.isEmpty ? nil : directory
        self.group = getegid()
        self.logger = logger
    }

    /// `name`'s spool home (what its owner gives the official pilotctl as `HOME`), or nil.
    func home(of name: String) -> String? { directory.map { "\($0)/\(name)" } }

    /// Makes the spool directory if needed. Throws when it cannot exist.
    func prepareRoot() throws(SpoolError) {
        guard let directory else { return }
        try Self.makeDirectory(directory, mode: 0o711, owner: nil, group: nil)
        try Self.makeDirectory(directory + "/.removed", mode: 0o700, owner: nil, group: nil)
    }

    /// Makes `name`'s spool, owned by `owner`; says whether its inbox directory was new (the
    /// messages already held should then be written into it).
    @discardableResult
    func prepare(_ name: String, owner: uid_t) -> Bool {
        guard let home = home(of: name) else { return false }
        do {
            for path in [home, home + "/.pilot"] { try Self.makeDirectory(path, mode: 0o770, owner: owner, group: group) }
            let created = try Self.makeDirectory(home + "/.pilot/inbox", mode: 0o770, owner: owner, group: group)
            try Self.makeDirectory(home + "/.pilot/received", mode: 0o770, owner: owner, group: group)
            return created
        } catch {
            logger.warning("identity spool not made", metadata: ["identity": "\(name)", "error": "\(error)"])
            return false
        }
    }

    /// Writes `message` into `name`'s spool inbox, owned by `owner`.
    func write(_ message: InboxMessage, of name: String, owner: uid_t) {
        guard let home = home(of: name) else { return }
        let file = Self.recordName(message) + ".json"
        write(Self.record(message), to: home + "/.pilot/inbox", name: file, of: name, owner: owner)
    }

    /// Writes a received file into `name`'s spool, as `BASE-YYYYMMDD-HHMMSS.mmm-ID.EXT`.
    func write(file: ReceivedFile, contents: [UInt8], of name: String, owner: uid_t) {
        guard let home = home(of: name) else { return }
        write(contents, to: home + "/.pilot/received", name: Self.fileName(file), of: name, owner: owner)
    }

    /// Deletes `file`'s copy from `name`'s spool (its owner cleared it with our pilotctl).
    func remove(file: ReceivedFile, of name: String) { removeCopy("received/\(Self.fileName(file))", of: name) }

    /// A received file's name in the spool: `BASE-YYYYMMDD-HHMMSS.mmm-ID.EXT`.
    static func fileName(_ file: ReceivedFile) -> String {
        let (base, ext) = split(file.name)
        return "\(base)-\(UTCStamp(milliseconds: file.receivedAt).compact)-\(sequence(file.id))\(ext)"
    }

    /// Deletes `message`'s file from `name`'s spool (its owner cleared it with our pilotctl).
    func remove(_ message: InboxMessage, of name: String) { removeCopy("inbox/\(Self.recordName(message)).json", of: name) }

    /// Deletes `path` (under `.pilot`) of `name`'s spool; one already gone is no failure.
    private func removeCopy(_ path: String, of name: String) {
        guard let home = home(of: name) else { return }
        let full = "\(home)/.pilot/\(path)"
        if unlink(full) != 0, errno != ENOENT {
            logger.warning("identity spool file not deleted", metadata: ["identity": "\(name)", "file": "\(full)", "error": "\(String(cString: strerror(errno)))"])
        }
    }

    /// Moves `name`'s spool out of its place and deletes what the host may of it.
    func remove(_ name: String) {
        guard let directory, let home = home(of: name) else { return }
        var status = stat()
        guard lstat(home, &status) == 0 else { return }
        let parked = "\(directory)/.removed/\(name)-\(UInt64.random(in: 0...UInt64.max))"
        guard rename(home, parked) == 0 else {
            logger.warning("identity spool not removed", metadata: ["identity": "\(name)", "path": "\(home)", "error": "\(String(cString: strerror(errno)))"])
            return
        }
        let left = Self.removeTree(parked)
        if left > 0 {
            logger.warning("identity spool partly left: its owner made entries the host may not delete", metadata: [
                "identity": "\(name)", "path": "\(parked)", "left": "\(left)"])
        }
    }

    // MARK: Records

    /// The name of `message` in the inbox, as 1.18's: `TYPE-YYYYMMDD-HHMMSS.mmm-NNNNNN`, NNNNNN its
    /// id in `host.db` (at least 6 digits). Both pilotctls list it as the message's id.
    static func recordName(_ message: InboxMessage) -> String {
        "\(message.type)-\(UTCStamp(milliseconds: message.receivedAt).compact)-\(sequence(message.id))"
    }

    /// The id in `host.db` that a record name ends with, if `name` is one.
    static func inboxID(ofRecord name: String) -> Int64? {
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].allSatisfy(\.isUppercase), parts[1].count == 8, parts[2].count == 10,
            let id = Int64(parts[3]), id > 0, parts[3].allSatisfy(\.isNumber)
        else { return nil }
        return id
    }

    /// The official inbox record: compact JSON with sorted keys.
    static func record(_ message: InboxMessage) -> [UInt8] {
        var fields: [String: JSON] = [
            "type": .string(message.type), "from": .string(message.sender), "bytes": .integer(Int64(message.data.count)),
            "received_at": .string(UTCStamp(milliseconds: message.receivedAt).rfc3339),
        ]
        if message.type != "BINARY", let text = String(validating: message.data, as: UTF8.self) {
            fields["data"] = .string(text)
            fields["data_encoding"] = "utf8"
        } else {
            fields["data_b64"] = .string(Base64.encode(message.data))
            fields["data_encoding"] = "base64"
        }
        if let id = message.messageID { fields["message_id"] = .string(id) }
        if let replyTo = message.replyTo { fields["reply_to"] = .string(replyTo) }
        return JSON.object(fields).encoded()
    }

    private static func sequence(_ id: Int64) -> String { UTCStamp.pad(id, 6) }

    /// A file name's base and extension (with its dot; empty when there is none).
    private static func split(_ name: String) -> (String, String) {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return (name, "") }
        return (String(name[..<dot]), String(name[dot...]))
    }

    // MARK: Files

    /// Writes `bytes` as `directory/name`, whole or not at all: into a hidden temporary file, handed
    /// to `owner` (0600), then renamed into place.
    private func write(_ bytes: [UInt8], to directory: String, name: String, of identity: String, owner: uid_t) {
        do throws(SpoolError) {
            let temporary = "\(directory)/.\(name).\(UInt32.random(in: 0...UInt32.max)).part"
            var descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            if descriptor < 0, errno == ENOENT {
                // Its owner deleted the directory: make it again.
                _ = prepare(identity, owner: owner)
                descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
            }
            guard descriptor >= 0 else { throw .system("open \(temporary)") }
            if let failure = WholeFile.finish(
                descriptor, writing: bytes, temporary: temporary, to: "\(directory)/\(name)",
                prepare: { fchown($0, owner, group) == 0 ? nil : "chown \(temporary)" })
            {
                throw .failed(failure)
            }
        } catch {
            logger.warning("identity spool not written; the message is kept in host.db", metadata: [
                "identity": "\(identity)", "file": "\(name)", "error": "\(error)"])
        }
    }

    /// Makes `path` a directory with `mode`, `owner` and `group` (nil: left as made), or sets them
    /// on the one there; says whether it was made. Refuses a link or a file in its place. The
    /// mode is set while the host still owns the directory: once it is handed to its owner, only
    /// that owner may change it (pilot-host keeps CAP_CHOWN, not CAP_FOWNER); a mode an owner set
    /// on their own directory is left alone.
    @discardableResult
    private static func makeDirectory(_ path: String, mode: mode_t, owner: uid_t?, group: gid_t?) throws(SpoolError) -> Bool {
        let made = mkdir(path, mode) == 0
        guard made || errno == EEXIST else { throw .system("mkdir \(path)") }
        var status = stat()
        guard lstat(path, &status) == 0 else { throw .system("stat \(path)") }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw .notADirectory(path) }
        // The umask narrowed mkdir's mode.
        if status.st_mode & 0o7777 != mode, status.st_uid == geteuid() || geteuid() == 0 {
            guard chmod(path, mode) == 0 else { throw .system("chmod \(path)") }
        }
        if status.st_uid != (owner ?? status.st_uid) || status.st_gid != (group ?? status.st_gid) {
            guard chown(path, owner ?? UInt32.max, group ?? UInt32.max) == 0 else { throw .system("chown \(path)") }
        }
        return made
    }

    /// Deletes the tree at `path` as far as the host may; returns how many entries are left.
    private static func removeTree(_ path: String) -> Int {
        guard let entries = opendir(path) else { return rmdir(path) == 0 || unlink(path) == 0 ? 0 : 1 }
        var left = 0
        var names: [String] = []
        while let entry = readdir(entries) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        closedir(entries)
        for name in names {
            let child = "\(path)/\(name)"
            var status = stat()
            guard lstat(child, &status) == 0 else { continue }
            if status.st_mode & S_IFMT == S_IFDIR { left += removeTree(child) } else if unlink(child) != 0 { left += 1 }
        }
        return rmdir(path) == 0 ? left : left + 1
    }
}

/// Why the spool could not be written.
enum SpoolError: Error, CustomStringConvertible {
    case failed(String)
    case notADirectory(String)

    /// `operation` failed with the current `errno`.
    static func system(_ operation: String) -> SpoolError { .failed("\(operation): \(String(cString: strerror(errno)))") }

    var description: String {
        switch self {
        case .failed(let text): text
        case .notADirectory(let path): "\(path) is not a directory"
        }
    }
}

/// A UTC time, as the official inbox spells it.
struct UTCStamp {
    private let parts: tm
    private let milliseconds: Int64

    init(milliseconds: Int64) {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        self.parts = parts
        self.milliseconds = milliseconds % 1000
    }

    /// `YYYYMMDD-HHMMSS.mmm`.
    var compact: String {
        "\(Self.pad(parts.tm_year + 1900, 4))\(Self.pad(parts.tm_mon + 1, 2))\(Self.pad(parts.tm_mday, 2))-"
            + "\(Self.pad(parts.tm_hour, 2))\(Self.pad(parts.tm_min, 2))\(Self.pad(parts.tm_sec, 2)).\(Self.pad(Int32(milliseconds), 3))"
    }

    /// RFC 3339 with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    var rfc3339: String {
        "\(Self.pad(parts.tm_year + 1900, 4))-\(Self.pad(parts.tm_mon + 1, 2))-\(Self.pad(parts.tm_mday, 2))T"
            + "\(Self.pad(parts.tm_hour, 2)):\(Self.pad(parts.tm_min, 2)):\(Self.pad(parts.tm_sec, 2)).\(Self.pad(Int32(milliseconds), 3))Z"
    }

    /// `value` in decimal, with zeros in front up to `width` digits.
    static func pad(_ value: some BinaryInteger, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
