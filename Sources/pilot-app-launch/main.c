// pilot-app-launch: the last steps before an app runs, where only the kernel can help.
//
//   pilot-app-launch drop --uid U --gid G -- PROGRAM ARGS...
//       Outside the sandbox, when the app service runs as root: become U:G (no supplementary
//       groups, no way back, no new privileges), then exec PROGRAM (bubblewrap).
//
//   pilot-app-launch exec --fd N [--landlock-read P]... [--landlock-write P]... [--landlock-exec P]...
//                         [--net] [--rlimit-as B] [--rlimit-nofile N] [--rlimit-nproc N] [--rlimit-fsize B]
//                         -- ARGV0 ARGS...
//       Inside the sandbox, as its last step: resource limits, a Landlock domain (files: read,
//       write or execute only beneath the paths named; TCP: nothing unless --net; no signals to
//       or abstract sockets of processes outside), a seccomp filter (no ptrace, mount, namespaces,
//       keyrings, BPF, module or clock changes...), then execveat(N) of the verified binary
//       (a sealed memfd the app service hashed). Landlock never checks execution of a memfd (it
//       lives on an internal filesystem), while every file on disk needs an --landlock-exec rule:
//       so the app runs, and it cannot exec the host's tools (no /bin/sh) unless a proc.exec grant
//       named them. (Not a wall: code it copies into a memfd of its own, or maps through the ELF
//       loader, runs too, under the same Landlock domain, seccomp filter and limits; docs/APPS.md.)
//       Fails closed: without Landlock ABI 3 or later, nothing runs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

// Rights of later Landlock ABIs than the installed header knows.
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define PILOT_ACCESS_NET_BIND_TCP (1ULL << 0)
#define PILOT_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define PILOT_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define PILOT_SCOPE_SIGNAL (1ULL << 1)

// struct landlock_ruleset_attr as of ABI 6; its size tells the kernel which fields are there.
struct pilot_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

static void fail(const char *what) {
    fprintf(stderr, "pilot-app-launch: %s: %s\n", what, strerror(errno));
    exit(126);
}

static void refuse(const char *why) {
    fprintf(stderr, "pilot-app-launch: %s\n", why);
    exit(126);
}

static int drop(int argc, char **argv) {
    long uid = -1, gid = -1;
    int i = 2;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { i++; break; }
        if (i + 1 >= argc) refuse("drop: an option lacks its value");
        if (strcmp(argv[i], "--uid") == 0) uid = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--gid") == 0) gid = strtol(argv[++i], NULL, 10);
        else refuse("drop: unknown option");
    }
    if (uid <= 0 || gid <= 0 || i >= argc) refuse("usage: pilot-app-launch drop --uid U --gid G -- PROGRAM ARGS...");
    if (setgroups(0, NULL) != 0) fail("setgroups");
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) fail("setresgid");
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail("setresuid");
    if (setuid(0) == 0 || geteuid() == 0) refuse("drop: root could be regained");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs");
    execv(argv[i], argv + i);
    fail(argv[i]);
    return 126;
}

static void limit(int resource, const char *value) {
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)strtoull(value, NULL, 10);
    if (setrlimit(resource, &rl) != 0) fail("setrlimit");
}

static void add_rule(int ruleset, const char *path, uint64_t rights_for_directories, uint64_t handled) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return;  // not in this sandbox (e.g. no network files without --net)
        fail(path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) fail(path);
    uint64_t rights = rights_for_directories;
    if (!S_ISDIR(st.st_mode)) {
        // A file takes only the rights that make sense for a file.
        rights &= LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                  LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV;
    }
    struct landlock_path_beneath_attr beneath = {.allowed_access = rights & handled, .parent_fd = fd};
    if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &beneath, 0) != 0) fail(path);
    close(fd);
}

static void confine_files(int argc, char **argv, int first, int last, int network) {
    int abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 3) {
        // Refused outright: the kernel lacks it (CONFIG_SECURITY_LANDLOCK, lsm=landlock,...), or a
        // seccomp filter older than Landlock (a container manager's, a unit's allow list) stops it.
        fprintf(stderr, "pilot-app-launch: Landlock ABI 3 or later is needed to run apps; here: %s\n",
                abi < 0 ? strerror(errno) : "an older ABI");
        exit(126);
    }
    uint64_t read = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    uint64_t write = read | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                     LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                     LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER |
                     LANDLOCK_ACCESS_FS_TRUNCATE;
    uint64_t execute = read | LANDLOCK_ACCESS_FS_EXECUTE;
    struct pilot_ruleset_attr attr = {0};
    attr.handled_access_fs = (LANDLOCK_ACCESS_FS_REFER << 1) - 1;  // ABI 1 and 2's rights, all of them
    attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;         // ABI 3
    if (abi >= 5) attr.handled_access_fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    size_t size = sizeof(uint64_t);
    if (abi >= 4) {
        size = 2 * sizeof(uint64_t);
        // Without --net no TCP at all (the sandbox has no network either: two fences).
        if (!network) attr.handled_access_net = PILOT_ACCESS_NET_BIND_TCP | PILOT_ACCESS_NET_CONNECT_TCP;
    }
    if (abi >= 6) {
        size = sizeof(attr);
        attr.scoped = PILOT_SCOPE_ABSTRACT_UNIX_SOCKET | PILOT_SCOPE_SIGNAL;
    }
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) fail("landlock_create_ruleset");
    for (int i = first; i < last; i++) {
        if (i + 1 >= last) break;
        if (strcmp(argv[i], "--landlock-read") == 0) add_rule(ruleset, argv[++i], read, attr.handled_access_fs);
        else if (strcmp(argv[i], "--landlock-write") == 0) add_rule(ruleset, argv[++i], write, attr.handled_access_fs);
        else if (strcmp(argv[i], "--landlock-exec") == 0) add_rule(ruleset, argv[++i], execute, attr.handled_access_fs);
    }
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) fail("landlock_restrict_self");
    close(ruleset);
    (void)argc;
}

static void deny(scmp_filter_ctx ctx, const char *name, int error) {
    int number = seccomp_syscall_resolve_name(name);
    if (number == __NR_SCMP_ERROR) return;  // not on this architecture
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(error), number, 0) != 0) refuse("seccomp_rule_add");
}

static void confine_syscalls(void) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) refuse("seccomp_init");
    static const char *denied[] = {
        "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
        "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
        "open_tree", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff",
        "acct", "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "syslog", "quotactl", "quotactl_fd",
        "io_uring_setup", "io_uring_enter", "io_uring_register", "settimeofday", "clock_settime", "clock_adjtime",
        "adjtimex", "sethostname", "setdomainname", "vhangup", "lookup_dcookie", "uselib",
    };
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) deny(ctx, denied[i], EPERM);
    // clone3 cannot be filtered by its flags (they are behind a pointer): ENOSYS makes libc
    // fall back to clone, whose flags can be.
    deny(ctx, "clone3", ENOSYS);
    static const uint64_t namespaces[] = {CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWUTS,
                                           CLONE_NEWIPC, CLONE_NEWCGROUP};
    for (size_t i = 0; i < sizeof(namespaces) / sizeof(namespaces[0]); i++) {
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, namespaces[i], namespaces[i])) != 0)
            refuse("seccomp_rule_add clone");
    }
    // personality: only the query (0xffffffff) and the default (PER_LINUX, 0), which runtimes
    // ask for; never ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and the like. The kernel reads the low
    // 32 bits. libseccomp takes one comparison per argument and rule, and its rules are ORed: a
    // 32-bit word is neither all zeros nor all ones exactly when, going round it, some set bit is
    // followed by a clear one, so one rule per bit position: bit i set and bit i+1 (mod 32) clear.
    for (int bit = 0; bit < 32; bit++) {
        uint64_t set = 1ULL << bit, clear = 1ULL << ((bit + 1) % 32);
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, set | clear, set)) != 0)
            refuse("seccomp_rule_add personality");
    }
    if (seccomp_load(ctx) != 0) refuse("seccomp_load");
    seccomp_release(ctx);
}

static int launch(int argc, char **argv) {
    int fd = -1, network = 0, end = argc;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { end = i; break; }
        if (strcmp(argv[i], "--net") == 0) { network = 1; continue; }
        if (i + 1 >= argc) refuse("exec: an option lacks its value");
        const char *option = argv[i], *value = argv[++i];
        if (strcmp(option, "--fd") == 0) fd = atoi(value);
        else if (strcmp(option, "--rlimit-as") == 0) limit(RLIMIT_AS, value);
        else if (strcmp(option, "--rlimit-nofile") == 0) limit(RLIMIT_NOFILE, value);
        else if (strcmp(option, "--rlimit-nproc") == 0) limit(RLIMIT_NPROC, value);
        else if (strcmp(option, "--rlimit-fsize") == 0) limit(RLIMIT_FSIZE, value);
        else if (strncmp(option, "--landlock-", 11) != 0) refuse("exec: unknown option");
    }
    if (fd < 0 || end + 1 >= argc) refuse("usage: pilot-app-launch exec --fd N [options] -- ARGV0 ARGS...");
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) fail("setrlimit core");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs");
    // A script's interpreter opens /dev/fd/N: only then does the descriptor stay open.
    char head[2] = {0, 0};
    int script = pread(fd, head, 2, 0) == 2 && head[0] == '#' && head[1] == '!';
    if (!script && fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) fail("fcntl");
    confine_files(argc, argv, 2, end, network);
    confine_syscalls();
    syscall(SYS_execveat, fd, "", argv + end + 1, environ, AT_EMPTY_PATH);
    fail("execveat");
    return 126;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "drop") == 0) return drop(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "exec") == 0) return launch(argc, argv);
    refuse("usage: pilot-app-launch drop|exec ...");
    return 126;
}
