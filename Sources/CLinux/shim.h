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
