#ifndef PILOT_CRC32_FOLD_H
#define PILOT_CRC32_FOLD_H

#include <stddef.h>
#include <stdint.h>

// CRC-32/IEEE by carry-less multiplication: see crc32_fold.c.

// 1 where pilot_crc32_fold runs (an x86-64 processor with PCLMULQDQ), else 0.
int pilot_crc32_fold_available(void);

// Folds `count` bytes (a multiple of 16, at least 64), with the CRC register `crc` xored into
// the first four, into 16 bytes whose CRC from a register of 0 is the register after all
// `count` bytes from `crc`: writes them to `folded`. Call it only where it is available.
void pilot_crc32_fold(uint32_t crc, const uint8_t *bytes, size_t count, uint8_t folded[16]);

#endif
