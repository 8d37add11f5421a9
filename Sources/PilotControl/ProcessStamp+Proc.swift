import Glibc
public import PilotWire

/// A process as `/proc` says it is now.
extension ProcessStamp {
    /// This boot's id (empty if the kernel does not say).
    public static let currentBoot: String = {
        guard let bytes = read("/proc/sys/kernel/random/boot_id") else { return "" }
        return String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
    }()

    /// The process `pid` is now, or nil when there is none (or it is a zombie: it has ended).
    public static func current(pid: Int32) -> ProcessStamp? {
        guard pid > 0, let stat = Self.read("/proc/\(pid)/stat") else { return nil }
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "))
        // Field 3 (state) is fields[0]; field 22 (starttime) is fields[19].
        guard fields.count > 19, let state = fields[0].first, state != UInt8(ascii: "Z"), state != UInt8(ascii: "X"),
            let start = UInt64(String(decoding: fields[19], as: UTF8.self))
        else { return nil }
        return ProcessStamp(pid: pid, startTime: start, boot: currentBoot)
    }

    private static func read(_ path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 1024)
        let count = bytes.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return Array(bytes[..<count])
    }
}
