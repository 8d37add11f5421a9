import Glibc
import PilotControl

/// Waits for the service's children (the apps' sandboxes) on a thread of its own and reports
/// each exit with its wait status. The service has no other children, so it reaps them all.
final class ChildReaper: Sendable {
    /// Starts the thread; `exited` runs on it for every child that ends.
    init(exited: @escaping @Sendable (_ pid: Int32, _ status: Int32) -> Void) throws {
        try startThread(named: "app-reaper") {
            while true {
                var status: Int32 = 0
                let pid = waitpid(-1, &status, 0)
                if pid > 0 {
                    exited(pid, status)
                } else if errno == ECHILD {
                    usleep(50_000)  // no child yet: the next spawn makes one
                } else if errno != EINTR {
                    usleep(50_000)
                }
            }
        }
    }

    /// A wait status in words: "exited with status 3", "killed by signal 9".
    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
        return "killed by signal \(signal)"
    }
}
