#ifndef PILOT_CODE_PAGES_H
#define PILOT_CODE_PAGES_H

// Pages of code mapped one at a time: see code_pages.c.

struct pilot_code_pages {
    // 0, or the errno of the step that failed (nothing was changed then).
    int error;
    // Which step failed: "userfaultfd", "UFFDIO_API", "/proc/self/smaps"; or why it did not
    // run (error 0); NULL when it ran.
    const char *failed_step;
    // Readable private file mappings registered, and those the kernel would not take.
    int registered;
    int refused;
    // Bytes they span, and bytes of them whose pages were unmapped to be faulted in again.
    unsigned long registered_bytes;
    unsigned long unmapped_bytes;
};

// What was done as the process was loaded: from then on, its private file mappings (its code,
// its libraries' code, their data) are mapped a page at a time as they are used, instead of
// with the up to 64 KiB of cached neighbours that Linux maps around each page fault
// ("fault-around"); and what was mapped of those never written was unmapped, to come back a
// page at a time. See code_pages.c.
struct pilot_code_pages pilot_code_pages(void);

// Gives the mappings back to the kernel's fault-around; 1 if there was something to undo.
int pilot_undo_code_pages(void);

#endif
