// Linux system headers that Swift's Glibc module does not bring in.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

// Glibc declares accept4 only under _GNU_SOURCE, which its Swift module is built without.
extern int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);
