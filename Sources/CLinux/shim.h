// Linux system headers that Swift's Glibc module does not bring in.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

// Glibc declares accept4 only under _GNU_SOURCE, which its Swift module is built without.
extern int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

// sendmmsg and its message type are declared only under _GNU_SOURCE too: the same layout
// (struct mmsghdr in sendmmsg(2)) under a name of our own, bound to the libc symbol.
struct pilot_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
extern int pilot_sendmmsg(int fd, struct pilot_mmsghdr *messages, unsigned int count, int flags) __asm__("sendmmsg");

// Names a thread (at most 15 bytes and the NUL); also declared only under _GNU_SOURCE.
#include <pthread.h>
extern int pthread_setname_np(pthread_t thread, const char *name);

// Gives the heap's free memory back to the system (malloc_trim(3)), in <malloc.h>, which the
// Glibc module does not bring in.
#include <malloc.h>

// Flushes the filesystem holding fd (syncfs(2)); declared only under _GNU_SOURCE.
extern int syncfs(int fd);

// The app sandbox's system calls, which glibc declares only under _GNU_SOURCE or not at all.
#include <linux/openat2.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <unistd.h>

// openat2(2): open `path` beneath `dirfd` with `resolve` rules (RESOLVE_BENEATH, ...).
static inline int pilot_openat2(int dirfd, const char *path, unsigned long long flags, unsigned long long resolve) {
    struct open_how how = {.flags = flags, .mode = 0, .resolve = resolve};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

extern int memfd_create(const char *name, unsigned int flags);

// A descriptor that names one process for good (no pid reuse), and a signal sent through it.
static inline int pilot_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static inline int pilot_pidfd_send_signal(int pidfd, int signal) { return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, 0, 0); }

extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
extern int pipe2(int fds[2], int flags);
