import CSystemd
import Glibc

/// The service manager's side of a daemon (sd_notify(3), sd_listen_fds(3),
/// sd_watchdog_enabled(3)): each call is a no-op when the process was not started by systemd.
public enum Systemd {
    /// Sends `state` (`READY=1`, `STATUS=...`, newline-separated assignments) to the service
    /// manager; false when there is none or the message could not be sent.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// Whether a service manager listens for `notify` (`$NOTIFY_SOCKET` is set).
    public static var isNotifying: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// How often the service manager wants `WATCHDOG=1`: half of `WatchdogSec=`; nil when the
    /// watchdog is off.
    public static var watchdogInterval: Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(microseconds / 2))
    }

    /// A socket handed over by socket activation.
    public struct ListenedSocket: Sendable, Equatable {
        public let descriptor: Int32
        /// `FileDescriptorName=` of its socket unit (`unknown` without one).
        public let name: String
        public let type: Int32
        public let family: Int32

        public init(descriptor: Int32, name: String, type: Int32, family: Int32) {
            self.descriptor = descriptor
            self.name = name
            self.type = type
            self.family = family
        }

        public var isDatagram: Bool { type == Int32(SOCK_DGRAM.rawValue) }
        public var isStream: Bool { type == Int32(SOCK_STREAM.rawValue) }
    }

    /// The sockets passed by systemd (`$LISTEN_FDS` for this pid), named; the variables are then
    /// unset so that child processes do not take them for their own. Empty when none were.
    public static func listenedSockets() -> [ListenedSocket] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        guard count > 0 else { return [] }
        defer {
            if let names {
                for index in 0..<Int(count) { free(names[index]) }
                free(names)
            }
        }
        return (0..<count).map { index in
            let descriptor = SD_LISTEN_FDS_START + index
            let name = names?[Int(index)].map { String(cString: $0) } ?? "unknown"
            var type: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(descriptor, SOL_SOCKET, SO_TYPE, &type, &length)
            var address = sockaddr_storage()
            var addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let family = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &addressLength) }
            } == 0 ? Int32(address.ss_family) : -1
            return ListenedSocket(descriptor: descriptor, name: name, type: type, family: family)
        }
    }

    /// Whether standard error is connected to the journal (`$JOURNAL_STREAM` names its device
    /// and inode), i.e. logs should go to journald as structured entries.
    public static var stderrIsJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }
}
