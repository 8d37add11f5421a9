// Counts the process's heap allocations, for pilot-bench only (never linked by what is
// installed): the executable that links this target defines malloc and its kin, which glibc
// lets a program do; each call is counted and handed to glibc's own allocator.
#pragma once
#include <stdint.h>

/// Allocations since start: every malloc, calloc, realloc and aligned allocation.
uint64_t pilot_allocation_count(void);
