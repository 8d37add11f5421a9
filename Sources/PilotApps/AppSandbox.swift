import CLinux
import Glibc

/// Starts an app in its sandbox: bubblewrap gives it its own user, mount, PID, IPC, UTS and
/// cgroup namespaces (and network, unless `net.dial` was granted), a root of /usr (read-only),
/// a minimal /dev, a private /tmp, and /app: its state read-write with the bundle's files
/// read-only over it. Inside, `pilot-app-launch` adds resource limits, Landlock and seccomp, and
/// executes the verified binary from its memfd. Run as root, the service first drops to the
/// apps' user (`pilot-app-launch drop`), so no app runs with root's or the host's rights.
public enum AppSandbox {
    /// Where the launcher appears inside the sandbox.
    static let launcherInside = "/.pilot/launch"
    /// Where an app finds its broker (`$PILOT_BROKER_SOCKET`).
    public static let brokerInside = "/run/pilot/broker.sock"
    /// The verified binary's descriptor number in the sandbox.
    static let binaryDescriptor: Int32 = 3

    /// Spawns the app; `argv[0]` is its path inside (`/app/...`).
    public static func spawn(
        binary: VerifiedBinary, argv: [String], policy: SandboxPolicy, runAs: (uid: UInt32, gid: UInt32)?, launcherPath: String,
        bwrapPath: String = "/usr/bin/bwrap"
    ) throws(SandboxError) -> SandboxedProcess {
        let command = try arguments(binary: binary, argv: argv, policy: policy, launcherPath: launcherPath, bwrapPath: bwrapPath)
        let full = runAs.map { user in [launcherPath, "drop", "--uid", "\(user.uid)", "--gid", "\(user.gid)", "--"] + command } ?? command
        var environment = ["PATH=/usr/bin:/bin", "HOME=/app", "LANG=C.UTF-8"]
        environment += policy.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        if policy.brokerSocket != nil { environment.append("PILOT_BROKER_SOCKET=" + brokerInside) }
        return try launch(full, environment: environment, binary: binary.descriptor)
    }

    /// bubblewrap's command line for `policy`. Not `--disable-userns`: it writes the sandbox's
    /// `max_user_namespaces` through a /proc that is read-only in containers, and the launcher's
    /// seccomp filter already refuses new namespaces (unshare, setns, clone with CLONE_NEW*).
    static func arguments(
        binary: VerifiedBinary, argv: [String], policy: SandboxPolicy, launcherPath: String, bwrapPath: String
    ) throws(SandboxError) -> [String] {
        var bwrap = [
            bwrapPath, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--bind", policy.stateDirectory, "/app",
        ]
        for entry in try entries(of: policy.storeDirectory) {
            bwrap += ["--ro-bind", policy.storeDirectory + "/" + entry, "/app/" + entry]
        }
        bwrap += ["--ro-bind", launcherPath, launcherInside]
        if let broker = policy.brokerSocket { bwrap += ["--bind", broker, brokerInside] }
        var launcher = [
            launcherInside, "exec", "--fd", "\(binaryDescriptor)", "--rlimit-as", "\(policy.addressSpace)",
            "--rlimit-nofile", "\(policy.openFiles)", "--rlimit-nproc", "\(policy.processes)", "--rlimit-fsize", "\(policy.fileSize)",
            "--landlock-read", "/usr", "--landlock-read", "/proc", "--landlock-read", "/dev/urandom", "--landlock-read", "/dev/random",
            "--landlock-read", "/dev/zero", "--landlock-write", "/dev/null", "--landlock-write", "/app", "--landlock-write", "/tmp",
        ]
        if policy.network {
            bwrap.insert("--share-net", at: 2)
            for file in ["/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/gai.conf"] {
                bwrap += ["--ro-bind-try", file, file]
                launcher += ["--landlock-read", file]
            }
            launcher.append("--net")
        }
        // Executable: the ELF loader (for dynamically linked binaries), a script's interpreter,
        // and what proc.exec names; the binary itself is the memfd, which needs no rule.
        var executables = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"] + binary.interpreters + policy.execAllowList
        executables = executables.compactMap(realPath)
        for path in Set(executables).sorted() { launcher += ["--landlock-exec", path] }
        bwrap += ["--chdir", "/app", "--"] + launcher + ["--"] + argv
        return bwrap
    }

    /// The top-level names in the bundle's directory.
    private static func entries(of directory: String) throws(SandboxError) -> [String] {
        guard let names = AppStoreLayout.names(in: directory) else {
            throw .badBinary(path: directory, reason: String(cString: strerror(errno)))
        }
        return names.sorted()
    }

    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// posix_spawn: stdin from /dev/null, stdout and stderr to pipes, the binary at descriptor
    /// 3, nothing else open.
    private static func launch(_ command: [String], environment: [String], binary: Int32) throws(SandboxError) -> SandboxedProcess {
        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        guard pipe2(&stdoutPipe, O_CLOEXEC) == 0 else { throw .system(step: "pipe", errno: errno) }
        guard pipe2(&stderrPipe, O_CLOEXEC) == 0 else {
            close(stdoutPipe[0])
            close(stdoutPipe[1])
            throw .system(step: "pipe", errno: errno)
        }
        defer {
            close(stdoutPipe[1])
            close(stderrPipe[1])
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe[1], 2)
        posix_spawn_file_actions_adddup2(&actions, binary, binaryDescriptor)
        posix_spawn_file_actions_addclosefrom_np(&actions, binaryDescriptor + 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Default signal handling in the child (the service ignores some signals itself).
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let result = posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
        guard result == 0 else {
            close(stdoutPipe[0])
            close(stderrPipe[0])
            throw .system(step: "starting \(command[0])", errno: result)
        }
        return SandboxedProcess(pid: pid, stdout: stdoutPipe[0], stderr: stderrPipe[0])
    }
}
