// Linux maps a file's cached pages up to 64 KiB around each page fault on it ("fault-around",
// mm/memory.c do_read_fault). For a process that runs a small part of a 16 MB binary, in
// scattered functions, that maps most of the binary: the static pilot-host, idle, had 10.6 MB of
// its code resident, where the pages it runs are 3.7 MB. The kernel skips fault-around in a mapping
// registered with a userfaultfd for write-protection (uffd_disable_fault_around), and since
// Linux 6.7 such a registration may cover any memory and needs no handler when it is
// asynchronous (UFFD_FEATURE_WP_ASYNC: a write to a protected page is let through by the kernel
// itself). Nothing is write-protected here (no UFFDIO_WRITEPROTECT), so nothing ever waits: the
// registration only turns fault-around off. The descriptor stays open for the life of the
// process (closing it would undo the registrations); children do not inherit the registrations
// (no UFFD_FEATURE_EVENT_FORK) nor the descriptor (O_CLOEXEC).
//
// It runs as the process is loaded (a constructor), before main and before any other thread:
// the loader has relocated the binary by then, the Swift runtime has read nothing yet, and no
// thread can write a page between the check that it was never written and its unmapping.
// PILOT_MAP_CODE_ON_DEMAND=no in the environment skips it; pilot_undo_code_pages closes the
// descriptor later (the setting map-code-on-demand = no).

#include "CCodePages.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

// Newer than Debian 12's kernel headers (linux/userfaultfd.h of Linux 6.7 and 5.11).
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static struct pilot_code_pages failure(const char *step, int error) {
    struct pilot_code_pages result = {0};
    result.error = error;
    result.failed_step = step;
    return result;
}

// A userfaultfd for asynchronous write-protection; -1 if the kernel gave none, -2 if it refused
// the features, errno set. User-mode faults only: that is what an unprivileged process may ask
// for where vm.unprivileged_userfaultfd is 0.
static int open_userfaultfd(void) {
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0) return -1;
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
    errno = 0;
    if (ioctl(fd, UFFDIO_API, &api) != 0 || (api.features & UFFD_FEATURE_WP_ASYNC) == 0) {
        int error = errno != 0 ? errno : EOPNOTSUPP;
        close(fd);
        errno = error;
        return -2;
    }
    return fd;
}

// One mapping of /proc/self/smaps: its range, whether it is a private file mapping (read-only,
// or writable: data, whose read faults fault around too), and whether it is known to hold no
// page written since it was mapped (relocations, data, a debugger's breakpoints), which
// unmapping would lose. A written page is counted under Anonymous while resident, under Swap
// once swapped out, under Private_Hugetlb in a hugetlb mapping: all three must have been read,
// and read as 0.
struct mapping {
    unsigned long start, end;
    int eligible;
    int hugetlb;
    // Bit per field read as 0 (unwritten); a field read as more than 0 clears `unwritten`.
    unsigned zero_fields;
    int written;
};

enum { ANONYMOUS_ZERO = 1, SWAP_ZERO = 2, HUGETLB_ZERO = 4, ALL_ZERO = 7 };

static int never_written(const struct mapping *mapping) {
    return !mapping->written && !mapping->hugetlb && mapping->zero_fields == ALL_ZERO;
}

static void settle(int fd, const struct mapping *mapping, int may_unmap, struct pilot_code_pages *result) {
    if (!mapping->eligible) return;
    unsigned long length = mapping->end - mapping->start;
    struct uffdio_register registration = {.range = {.start = mapping->start, .len = length}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(fd, UFFDIO_REGISTER, &registration) != 0) {
        result->refused += 1;
        return;
    }
    result->registered += 1;
    result->registered_bytes += length;
    // Unwritten pages of a file mapping are the file's: unmapped, they are mapped again from the
    // page cache at their next use. A mapping with any written page, or not known to have none,
    // is left as it is.
    if (may_unmap && never_written(mapping) && madvise((void *)mapping->start, length, MADV_DONTNEED) == 0) result->unmapped_bytes += length;
}

// The mappings of /proc/self/smaps, all read before any is changed (a registration may merge
// or split mappings under a reader); NULL with errno set on failure, a read error included.
static struct mapping *read_mappings(size_t *count) {
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (smaps == NULL) return NULL;
    struct mapping *mappings = NULL;
    size_t capacity = 0;
    *count = 0;
    char *line = NULL;
    size_t line_capacity = 0;
    while (getline(&line, &line_capacity, smaps) != -1) {
        unsigned long start, end, offset, inode;
        char permissions[5];
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %4s %lx %*x:%*x %lu %n", &start, &end, permissions, &offset, &inode, &path_at) >= 5) {
            if (*count == capacity) {
                capacity = capacity == 0 ? 64 : capacity * 2;
                struct mapping *grown = realloc(mappings, capacity * sizeof *mappings);
                if (grown == NULL) {
                    free(mappings);
                    free(line);
                    fclose(smaps);
                    errno = ENOMEM;
                    return NULL;
                }
                mappings = grown;
            }
            // Readable, private, backed by a file (not [vdso], [vsyscall], the heap, ...).
            int file = inode != 0 && path_at > 0 && line[path_at] == '/';
            mappings[(*count)++] = (struct mapping){
                .start = start, .end = end, .eligible = permissions[0] == 'r' && permissions[3] == 'p' && file,
            };
        } else if (*count > 0) {
            struct mapping *mapping = &mappings[*count - 1];
            unsigned long kb;
            unsigned field = 0;
            if (sscanf(line, "Anonymous: %lu kB", &kb) == 1) field = ANONYMOUS_ZERO;
            else if (sscanf(line, "Swap: %lu kB", &kb) == 1) field = SWAP_ZERO;
            else if (sscanf(line, "Private_Hugetlb: %lu kB", &kb) == 1) field = HUGETLB_ZERO;
            else if (strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " ht") != NULL) mapping->hugetlb = 1;
            if (field != 0) {
                if (kb == 0) mapping->zero_fields |= field; else mapping->written = 1;
            }
        }
    }
    int failed = ferror(smaps);
    free(line);
    fclose(smaps);
    if (failed) {
        free(mappings);
        errno = EIO;
        return NULL;
    }
    return mappings;
}

// Whether this process has one thread (/proc/self/status); 0 when it cannot tell.
static int only_thread(void) {
    FILE *status = fopen("/proc/self/status", "re");
    if (status == NULL) return 0;
    char line[256];
    int threads = 0;
    while (fgets(line, sizeof line, status) != NULL) {
        if (sscanf(line, "Threads: %d", &threads) == 1) break;
    }
    fclose(status);
    return threads == 1;
}

static int descriptor = -1;
static struct pilot_code_pages outcome = {.error = 0, .failed_step = "not run: PILOT_MAP_CODE_ON_DEMAND=no"};

static struct pilot_code_pages map_on_demand(void) {
    int fd = open_userfaultfd();
    if (fd == -1) return failure("userfaultfd", errno);
    if (fd == -2) return failure("UFFDIO_API", errno);
    size_t count = 0;
    struct mapping *mappings = read_mappings(&count);
    if (mappings == NULL) {
        int error = errno;
        close(fd);
        return failure("/proc/self/smaps", error);
    }
    // Unmapping is safe only while no other thread can write a page between smaps and madvise:
    // a preloaded library may have started one before this constructor.
    int may_unmap = only_thread();
    struct pilot_code_pages result = {0};
    for (size_t index = 0; index < count; index++) settle(fd, &mappings[index], may_unmap, &result);
    free(mappings);
    if (result.registered == 0) close(fd); else descriptor = fd;
    return result;
}

__attribute__((constructor)) static void map_on_demand_at_load(void) {
    const char *choice = getenv("PILOT_MAP_CODE_ON_DEMAND");
    if (choice != NULL && strcmp(choice, "no") == 0) return;
    outcome = map_on_demand();
}

struct pilot_code_pages pilot_code_pages(void) { return outcome; }

int pilot_undo_code_pages(void) {
    if (descriptor < 0) return 0;
    close(descriptor);
    descriptor = -1;
    return 1;
}
