import CLinux
import Glibc
import NIOConcurrencyHelpers

/// A started sandbox: the bubblewrap process that holds the app, named by a pidfd (signals
/// never reach a later process that got the same pid), and the read ends of its output pipes.
public final class SandboxedProcess: Sendable {
    public let pid: Int32
    private let pidfd: Int32
    private let outputs: NIOLockedValueBox<(stdout: Int32, stderr: Int32)>
    /// Reaped: its pid may name another process now (matters only without a pidfd).
    private let ended = NIOLockedValueBox(false)

    init(pid: Int32, stdout: Int32, stderr: Int32) {
        self.pid = pid
        pidfd = pilot_pidfd_open(pid)
        outputs = NIOLockedValueBox((stdout, stderr))
    }

    deinit {
        if pidfd >= 0 { close(pidfd) }
        let (stdout, stderr) = outputs.withLockedValue { $0 }
        if stdout >= 0 { close(stdout) }
        if stderr >= 0 { close(stderr) }
    }

    /// The read end of the app's stdout, handed over once (-1 after).
    public func takeStandardOutput() -> Int32 { outputs.withLockedValue { value in defer { value.stdout = -1 }; return value.stdout } }
    /// The read end of the app's stderr, handed over once (-1 after).
    public func takeStandardError() -> Int32 { outputs.withLockedValue { value in defer { value.stderr = -1 }; return value.stderr } }

    /// SIGTERM now, SIGKILL after `grace` if it still runs. bubblewrap ends with it, and the
    /// kernel ends everything in the sandbox's PID namespace.
    public func terminate(grace: Duration = .seconds(3)) {
        signal(SIGTERM)
        Task { [self] in
            try? await Task.sleep(for: grace)
            signal(SIGKILL)
        }
    }

    /// Sends `signo` unless the process has ended. Without a pidfd (a filter that refuses
    /// pidfd_open), by pid, and only until the process is reaped.
    public func signal(_ signo: Int32) {
        if pidfd >= 0 {
            _ = pilot_pidfd_send_signal(pidfd, signo)
        } else {
            ended.withLockedValue { ended in if !ended { _ = kill(pid, signo) } }
        }
    }

    /// The process was reaped: no signal goes to its pid any more.
    public func markEnded() { ended.withLockedValue { $0 = true } }
}
