// Counts the process's heap allocations, for pilot-bench only (never linked by what is
// installed): the executable that links this target defines malloc and its kin, which glibc
// lets a program do; each call is counted and handed to glibc's own allocator.
#pragma once
#include <stdint.h>

/// Allocations (malloc, calloc, realloc of a null pointer, the aligned ones) since start.
uint64_t pilot_allocation_count(void);
/// Bytes those allocations asked for.
uint64_t pilot_allocated_bytes(void);
