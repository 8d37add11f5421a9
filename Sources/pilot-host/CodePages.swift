import CCodePages
import Glibc
import Logging

/// pilot-host's code mapped a page at a time (done as the process is loaded; what and why in
/// CCodePages): logs what it did to the resident set, or why it did not, and undoes it when
/// the setting says so.
enum CodePages {
    static func settle(onDemand: Bool, logger: Logger) {
        let result = pilot_code_pages()
        if !onDemand {
            if pilot_undo_code_pages() != 0 { logger.info("code mapped by the kernel's fault-around again (map-code-on-demand = no)") }
            return
        }
        if let step = result.failed_step.map({ String(cString: $0) }) {
            // Linux before 6.7 (no asynchronous write-protection), a sandbox that refuses
            // userfaultfd, or PILOT_MAP_CODE_ON_DEMAND=no: the kernel's fault-around stays.
            var metadata: Logger.Metadata = ["step": "\(step)"]
            if result.error != 0 { metadata["error"] = "\(String(cString: strerror(result.error)))" }
            logger.notice("code stays mapped by the kernel's fault-around", metadata: metadata)
            return
        }
        logger.info("code mapped a page at a time, as it is used", metadata: [
            "mappings": "\(result.registered)", "refused": "\(result.refused)",
            "bytes": "\(result.registered_bytes)", "unmapped_bytes": "\(result.unmapped_bytes)",
        ])
    }
}
