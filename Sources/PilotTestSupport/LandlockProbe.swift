import Foundation

/// Whether this kernel (and whatever filters this process runs under) gives Landlock ABI 3 or
/// later, which the app sandbox requires: tests of apps skip, saying why, where it does not.
public enum LandlockProbe {
    /// nil where Landlock is usable; otherwise why not.
    public static var unavailableReason: String? {
        let probe = ChildProcess.run(
            "/usr/bin/python3",
            ["-c", "import ctypes; print(ctypes.CDLL(None, use_errno=True).syscall(444, None, 0, 1))"], timeout: 10)
        guard let abi = Int(probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return "cannot ask the kernel for Landlock's ABI (python3 failed: \(probe.output))"
        }
        return abi >= 3 ? nil : "Landlock ABI 3 or later is needed by the app sandbox; this kernel answers \(abi)"
    }
}
