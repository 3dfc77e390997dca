/* AVX2 + FMA + F16C kernels. Compiled for every x86-64 target via per-function `target` attributes;
 * reachable only through the avx2 table, which the runtime CPU check hands out on capable CPUs. */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T2 __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) T2

/* 8 elements at column c, widened to float. */
INL __m256 ld8_f32(const uint8_t *p, int32_t c) { return _mm256_loadu_ps((const float *)(p + 4 * (size_t)c)); }
INL __m256 ld8_f16(const uint8_t *p, int32_t c) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * (size_t)c)));
}
INL __m256 ld8_i8(const uint8_t *p, int32_t c) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + c))));
}
/* 4 elements at column c (the tail when cols % 8 == 4): reads exactly 4 elements. */
INL __m128 ld4_f32(const uint8_t *p, int32_t c) { return _mm_loadu_ps((const float *)(p + 4 * (size_t)c)); }
INL __m128 ld4_f16(const uint8_t *p, int32_t c) {
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(p + 2 * (size_t)c)));
}
INL __m128 ld4_i8(const uint8_t *p, int32_t c) {
    int32_t v;
    memcpy(&v, p + c, 4);
    return _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(v)));
}

/* Same addition order as lane 0 of hsum4x128, so dot, gather and scan give bit-identical scores. */
INL float hsum128(__m128 v) {
    v = _mm_hadd_ps(v, v);
    return _mm_cvtss_f32(_mm_hadd_ps(v, v));
}

/* Lane i of the result is the sum of the 4 lanes of a_i. */
INL __m128 hsum4x128(__m128 a0, __m128 a1, __m128 a2, __m128 a3) {
    return _mm_hadd_ps(_mm_hadd_ps(a0, a1), _mm_hadd_ps(a2, a3));
}

/* Indices i < n with s[i] > t (NaN never passes), in order; usually none once a top-k threshold is set. */
T2 size_t ckk_filter_gt_avx2(const float *s, size_t n, float t, uint32_t *idx) {
    const __m256 tv = _mm256_set1_ps(t);
    size_t count = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        uint32_t m = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i), tv, _CMP_GT_OQ)) |
                     ((uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i + 8), tv, _CMP_GT_OQ)) << 8);
        while (m) {
            idx[count++] = (uint32_t)i + (uint32_t)__builtin_ctz(m);
            m &= m - 1;
        }
    }
    for (; i < n; i++)
        if (s[i] > t) idx[count++] = (uint32_t)i;
    return count;
}

/* Four accumulators over 32-column steps hide FMA latency; the 4-wide tail folds in before the final sum. */
#define DEF_AVX2(ENC, ESIZE)                                                                            \
    INL __m128 row_acc_##ENC(const float *q, const uint8_t *p, int32_t cols) {                          \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                      \
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                                      \
        int32_t c = 0;                                                                                  \
        for (; c + 32 <= cols; c += 32) {                                                               \
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), ld8_##ENC(p, c), a0);                          \
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), ld8_##ENC(p, c + 8), a1);                  \
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 16), ld8_##ENC(p, c + 16), a2);                \
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 24), ld8_##ENC(p, c + 24), a3);                \
        }                                                                                               \
        for (; c + 8 <= cols; c += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), ld8_##ENC(p, c), a0); \
        a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));                               \
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));                \
        if (c < cols) s = _mm_fmadd_ps(_mm_loadu_ps(q + c), ld4_##ENC(p, c), s);                        \
        return s;                                                                                       \
    }                                                                                                   \
    INL float row_dot_##ENC(const float *q, const uint8_t *p, int32_t cols) {                           \
        return hsum128(row_acc_##ENC(q, p, cols));                                                      \
    }                                                                                                   \
    T2 float ckk_dot_##ENC##_avx2(const float *q, const void *row, float scale, int32_t cols) {         \
        return row_dot_##ENC(q, (const uint8_t *)row, cols) * scale;                                    \
    }                                                                                                   \
    T2 void ckk_scan_##ENC##_avx2(const float *q, const void *base, size_t stride, const float *scales,  \
                                  size_t start, size_t n, int32_t cols, float *out) {                   \
        const uint8_t *p = (const uint8_t *)base + start * stride;                                      \
        size_t i = 0;                                                                                   \
        /* Four rows per step share one horizontal reduction. */                                        \
        for (; i + 4 <= n; i += 4, p += 4 * stride) {                                                   \
            CKK_PREFETCH_RANGE((uintptr_t)p + CKK_SCAN_PREFETCH_BYTES, 4 * stride);                     \
            __m128 s = hsum4x128(row_acc_##ENC(q, p, cols), row_acc_##ENC(q, p + stride, cols),         \
                                 row_acc_##ENC(q, p + 2 * stride, cols),                                \
                                 row_acc_##ENC(q, p + 3 * stride, cols));                               \
            if (ESIZE == 1) s = _mm_mul_ps(s, _mm_loadu_ps(scales + start + i));                        \
            _mm_storeu_ps(out + i, s);                                                                  \
        }                                                                                               \
        for (; i < n; i++, p += stride) {                                                               \
            float s = row_dot_##ENC(q, p, cols);                                                        \
            out[i] = (ESIZE == 1) ? s * scales[start + i] : s;                                          \
        }                                                                                               \
    }                                                                                                   \
    T2 void ckk_gather_##ENC##_avx2(const float *q, const void *base, size_t stride, const float *scales, \
                                    const int32_t *rows, size_t n, int32_t cols, float *out) {          \
        const uint8_t *b = (const uint8_t *)base;                                                       \
        const size_t bytes = (size_t)cols * ESIZE;                                                      \
        for (size_t i = 0; i < n && i < CKK_GATHER_PREFETCH_DISTANCE; i++)                              \
            CKK_PREFETCH_RANGE_L2(b + (size_t)rows[i] * stride, bytes);                                 \
        for (size_t i = 0; i < n; i++) {                                                                \
            if (i + CKK_GATHER_PREFETCH_DISTANCE < n) {                                                 \
                size_t ahead = (size_t)rows[i + CKK_GATHER_PREFETCH_DISTANCE];                          \
                CKK_PREFETCH_RANGE_L2(b + ahead * stride, bytes);                                       \
                if (ESIZE == 1) __builtin_prefetch(scales + ahead, 0, 3);                               \
            }                                                                                           \
            size_t r = (size_t)rows[i];                                                                 \
            float s = row_dot_##ENC(q, b + r * stride, cols);                                           \
            out[i] = (ESIZE == 1) ? s * scales[r] : s;                                                  \
        }                                                                                               \
    }

DEF_AVX2(f32, 4)
DEF_AVX2(f16, 2)
DEF_AVX2(i8, 1)

T2 void ckk_f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(src[i]), _MM_FROUND_TO_NEAREST_INT), 0);
}

#else
/* Never called off x86-64 (the avx2 level is never supported there); defined so the symbol exists. */
void ckk_f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    (void)src;
    (void)dst;
    (void)n;
    __builtin_trap();
}
#endif
