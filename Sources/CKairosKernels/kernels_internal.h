/* Declarations shared by the per-ISA kernel files and the dispatcher (not part of the module API). */
#ifndef CKAIROS_KERNELS_INTERNAL_H
#define CKAIROS_KERNELS_INTERNAL_H

#include "ckairos_kernels.h"
#include <string.h>

/* Rows ahead of the current one that gather prefetches: enough in-flight misses to hide DRAM latency. */
#define CKK_GATHER_PREFETCH_DISTANCE 10

/* Bytes ahead of the current rows that SIMD scans prefetch. The hardware prefetcher alone left the scans
 * ~20% slower for float16/int8 (measured, 1M x 64 rows); prefetches past the matrix end never fault (the
 * address is formed as an integer, not as a pointer past the object). */
#define CKK_SCAN_PREFETCH_BYTES 8192

#if defined(__x86_64__)
void ckk_scan_bounded_avx512(const float *q, const uint8_t *qq, float qs, float slack, float q_l1,
                             const int8_t *blocked, const int32_t *corr, const int32_t *l1, const float *row_scale,
                             const float *row_err, int enc, const void *base, size_t stride, const float *scales,
                             const float *add, size_t start, size_t n, int32_t cols, float threshold, float *out);
#endif

#define CKK_DECLARE_LEVEL(SUFFIX)                                                                       \
    float ckk_dot_f32_##SUFFIX(const float *, const void *, float, int32_t);                            \
    float ckk_dot_f16_##SUFFIX(const float *, const void *, float, int32_t);                            \
    float ckk_dot_i8_##SUFFIX(const float *, const void *, float, int32_t);                             \
    void ckk_scan_f32_##SUFFIX(const float *, const void *, size_t, const float *, size_t, size_t,      \
                               int32_t, float *);                                                       \
    void ckk_scan_f16_##SUFFIX(const float *, const void *, size_t, const float *, size_t, size_t,      \
                               int32_t, float *);                                                       \
    void ckk_scan_i8_##SUFFIX(const float *, const void *, size_t, const float *, size_t, size_t,       \
                              int32_t, float *);                                                        \
    void ckk_gather_f32_##SUFFIX(const float *, const void *, size_t, const float *, const int32_t *,   \
                                 size_t, int32_t, float *);                                             \
    void ckk_gather_f16_##SUFFIX(const float *, const void *, size_t, const float *, const int32_t *,   \
                                 size_t, int32_t, float *);                                             \
    void ckk_gather_i8_##SUFFIX(const float *, const void *, size_t, const float *, const int32_t *,    \
                                size_t, int32_t, float *);                                             \
    size_t ckk_filter_gt_##SUFFIX(const float *, size_t, float, uint32_t *);

CKK_DECLARE_LEVEL(portable)
#if defined(__x86_64__)
CKK_DECLARE_LEVEL(avx2)
CKK_DECLARE_LEVEL(avx512)
#endif

/* Scalar binary16 -> binary32 (exact; handles subnormals, infinities, NaN). */
static inline float ckk_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else {
        float f = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24, exact */
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* Issues prefetches for every cache line of [p, p + bytes), with __builtin_prefetch's `locality` (3: into L1,
 * 2: into L2). Prefetches never fault. */
#define CKK_PREFETCH_LINES(p, bytes, locality)                                                          \
    do {                                                                                                \
        uintptr_t ckk_a_ = (uintptr_t)(p) & ~(uintptr_t)63;                                             \
        uintptr_t ckk_e_ = (uintptr_t)(p) + (uintptr_t)(bytes);                                         \
        for (; ckk_a_ < ckk_e_; ckk_a_ += 64) __builtin_prefetch((const void *)ckk_a_, 0, locality);    \
    } while (0)

/* Into L1, for sequential scans (the data is used within the next few rows). */
#define CKK_PREFETCH_RANGE(p, bytes) CKK_PREFETCH_LINES(p, bytes, 3)

/* Into L2 only (prefetcht1), for scattered rows (a SCORE's gather, and the id lookup ahead of it). Prefetches into
 * L1 each hold one of its few miss buffers until the line arrives, so a SCORE's ~400 row lines queued behind each
 * other; into L2 they overlap far more. Interleaved A/B on an AVX-512 EPYC (SCORE of 100 from a 100k x 64 float32
 * model, run-server-ab.sh): +17-24% unpipelined and at pipeline 16. */
#define CKK_PREFETCH_RANGE_L2(p, bytes) CKK_PREFETCH_LINES(p, bytes, 2)

#endif
