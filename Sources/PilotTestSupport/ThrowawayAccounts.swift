import Foundation

/// Local users and groups made for one test and removed at its end, for tests that need other
/// uids than their own (peer-credential checks). Needs root and useradd.
public final class ThrowawayAccounts {
    /// A suffix that keeps this test's names apart from another run's.
    public let suffix = String(UInt32.random(in: 0..<0xFFFF), radix: 16)
    private var users: [String] = []
    private var groups: [String] = []

    /// Why accounts cannot be made here, or nil when they can.
    public static var unavailableReason: String? {
        if getuid() != 0 { return "needs root to create throwaway users (running as uid \(getuid()))" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd") { return "useradd is not installed" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") { return "setpriv is not installed" }
        return nil
    }

    public init() {}

    deinit { removeAll() }

    /// Makes system user `prefix` + suffix (with a group of the same name), in `groups` too;
    /// returns its name.
    public func user(_ prefix: String, groups extra: [String] = []) throws -> String {
        let name = prefix + suffix
        var arguments = ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group"]
        if !extra.isEmpty { arguments += ["--groups", extra.joined(separator: ",")] }
        let result = ChildProcess.run("/usr/sbin/useradd", arguments + [name])
        guard result.status == 0 else { throw SocketError(description: "cannot create test user \(name): \(result.output)") }
        users.append(name)
        groups.append(name)
        return name
    }

    /// Makes system group `prefix` + suffix; returns its name.
    public func group(_ prefix: String) throws -> String {
        let name = prefix + suffix
        let result = ChildProcess.run("/usr/sbin/groupadd", ["--system", name])
        guard result.status == 0 else { throw SocketError(description: "cannot create test group \(name): \(result.output)") }
        groups.append(name)
        return name
    }

    public func removeAll() {
        for user in users { _ = ChildProcess.run("/usr/sbin/userdel", [user]) }
        for group in groups { _ = ChildProcess.run("/usr/sbin/groupdel", [group]) }
        users = []
        groups = []
    }
}
