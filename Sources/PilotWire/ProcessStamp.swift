/// One process, named for good: its pid, its start time (field 22 of `/proc/PID/stat`, in
/// clock ticks since boot) and the boot it started in (`/proc/sys/kernel/random/boot_id`),
/// which together never name another process, across a restart of whoever keeps them or of
/// the machine. What a lease holder is (`identity create --lease`); read from `/proc` by
/// PilotControl's `ProcessStamp.current(pid:)`.
public struct ProcessStamp: Hashable, Sendable, CustomStringConvertible {
    public var pid: Int32
    public var startTime: UInt64
    public var boot: String

    public init(pid: Int32, startTime: UInt64, boot: String) {
        self.pid = pid
        self.startTime = startTime
        self.boot = boot
    }

    public var description: String { "pid \(pid) (started at tick \(startTime))" }
}
