// The bulk of a CRC-32/IEEE (reflected polynomial 0xEDB88320) by carry-less multiplication,
// as Intel's paper "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction"
// describes it. PilotWire's table-driven CRC32 does what is left: the 16 folded bytes and the
// tail shorter than 16.
//
// Why folding works: a CRC is the message's remainder modulo the polynomial P, and it is
// linear. A 16-byte block's two 64-bit halves, each carry-less multiplied by a constant that
// stands for a distance of D bytes (x^(8D ± 32) mod P, in the reflected bit order), give at most
// 96 bits that leave the same remainder D bytes further on as the block did where it was: they
// are xored into the block there instead. Repeating this leaves 16 bytes with the CRC of the
// whole. The register of a CRC already under way is xored into the first 4 bytes: that is the
// same as starting from it.
//
// Four blocks are folded at once, each 64 bytes ahead, so four chains of multiplications run
// side by side; they are folded into one at the end, and that one over the blocks left.

#include "CCRC32.h"

#if defined(__x86_64__)

#include <cpuid.h>
#include <immintrin.h>

// x^(8·64 + 32) and x^(8·64 - 32) mod P, bit-reflected and shifted by one: the constants of
// the low and the high half of a block folded 64 bytes on (from the paper).
static const uint64_t fold64_low = 0x154442bd4, fold64_high = 0x1c6e41596;
// The same for 16 bytes on.
static const uint64_t fold16_low = 0x1751997d0, fold16_high = 0x0ccaa009e;

int pilot_crc32_fold_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    return (ecx & bit_PCLMUL) != 0 && (edx & bit_SSE2) != 0;
}

// `block` carried on by the distance of `constants` (its halves times theirs), onto `next`.
__attribute__((target("pclmul,sse2"))) static inline __m128i fold(__m128i block, __m128i constants, __m128i next) {
    __m128i low = _mm_clmulepi64_si128(block, constants, 0x00);
    __m128i high = _mm_clmulepi64_si128(block, constants, 0x11);
    return _mm_xor_si128(_mm_xor_si128(low, high), next);
}

__attribute__((target("pclmul,sse2"))) void pilot_crc32_fold(uint32_t crc, const uint8_t *bytes, size_t count, uint8_t folded[16]) {
    const __m128i by64 = _mm_set_epi64x((long long)fold64_high, (long long)fold64_low);
    const __m128i by16 = _mm_set_epi64x((long long)fold16_high, (long long)fold16_low);
    __m128i lane0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)bytes), _mm_cvtsi32_si128((int)crc));
    __m128i lane1 = _mm_loadu_si128((const __m128i *)(bytes + 16));
    __m128i lane2 = _mm_loadu_si128((const __m128i *)(bytes + 32));
    __m128i lane3 = _mm_loadu_si128((const __m128i *)(bytes + 48));
    size_t offset = 64;
    for (; offset + 64 <= count; offset += 64) {
        lane0 = fold(lane0, by64, _mm_loadu_si128((const __m128i *)(bytes + offset)));
        lane1 = fold(lane1, by64, _mm_loadu_si128((const __m128i *)(bytes + offset + 16)));
        lane2 = fold(lane2, by64, _mm_loadu_si128((const __m128i *)(bytes + offset + 32)));
        lane3 = fold(lane3, by64, _mm_loadu_si128((const __m128i *)(bytes + offset + 48)));
    }
    // The lanes in order: each folded 16 bytes onto the next.
    __m128i block = fold(lane0, by16, lane1);
    block = fold(block, by16, lane2);
    block = fold(block, by16, lane3);
    for (; offset + 16 <= count; offset += 16) {
        block = fold(block, by16, _mm_loadu_si128((const __m128i *)(bytes + offset)));
    }
    _mm_storeu_si128((__m128i *)folded, block);
}

#else

int pilot_crc32_fold_available(void) { return 0; }

void pilot_crc32_fold(uint32_t crc, const uint8_t *bytes, size_t count, uint8_t folded[16]) {
    (void)crc, (void)bytes, (void)count, (void)folded;
}

#endif
