import FoundationEssentials
import Glibc

/// The process's resource limits that the identity count drives.
enum ResourceLimits {
    /// Raises the soft limit on open files to at least `needed` where the hard limit allows it,
    /// and the hard limit too when the process may (CAP_SYS_RESOURCE). Returns the soft limit
    /// as it is afterwards.
    @discardableResult
    static func raiseOpenFiles(toAtLeast needed: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return 0 }
        let wanted = rlim_t(max(needed, 0))
        guard limit.rlim_cur < wanted else { return clamp(limit.rlim_cur) }
        if limit.rlim_max < wanted {
            var raised = rlimit(rlim_cur: wanted, rlim_max: wanted)
            if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { return clamp(wanted) }
        }
        var soft = rlimit(rlim_cur: min(wanted, limit.rlim_max), rlim_max: limit.rlim_max)
        return setrlimit(RLIMIT_NOFILE_VALUE, &soft) == 0 ? clamp(soft.rlim_cur) : clamp(limit.rlim_cur)
    }

    private static func clamp(_ value: rlim_t) -> Int { value > rlim_t(Int.max) ? Int.max : Int(value) }

    #if canImport(Glibc)
    private static let RLIMIT_NOFILE_VALUE = Int32(RLIMIT_NOFILE.rawValue)
    #else
    private static let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
    #endif
}
