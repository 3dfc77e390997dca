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

INL float hsum128(__m128 v) {
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

/* Four accumulators over 32-column steps hide FMA latency; the 4-wide tail folds in before the final sum. */
#define DEF_AVX2(ENC, ESIZE)                                                                            \
    INL float row_dot_##ENC(const float *q, const uint8_t *p, int32_t cols) {                           \
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
        return hsum128(s);                                                                              \
    }                                                                                                   \
    T2 float ckk_dot_##ENC##_avx2(const float *q, const void *row, float scale, int32_t cols) {         \
        return row_dot_##ENC(q, (const uint8_t *)row, cols) * scale;                                    \
    }                                                                                                   \
    T2 void ckk_scan_##ENC##_avx2(const float *q, const void *base, size_t stride, const float *scales,  \
                                  size_t start, size_t n, int32_t cols, float *out) {                   \
        const uint8_t *p = (const uint8_t *)base + start * stride;                                      \
        for (size_t i = 0; i < n; i++, p += stride) {                                                   \
            float s = row_dot_##ENC(q, p, cols);                                                        \
            out[i] = (ESIZE == 1) ? s * scales[start + i] : s;                                          \
        }                                                                                               \
    }                                                                                                   \
    T2 void ckk_gather_##ENC##_avx2(const float *q, const void *base, size_t stride, const float *scales, \
                                    const int32_t *rows, size_t n, int32_t cols, float *out) {          \
        const uint8_t *b = (const uint8_t *)base;                                                       \
        const size_t bytes = (size_t)cols * ESIZE;                                                      \
        for (size_t i = 0; i < n && i < CKK_GATHER_PREFETCH_DISTANCE; i++)                              \
            CKK_PREFETCH_RANGE(b + (size_t)rows[i] * stride, bytes);                                    \
        for (size_t i = 0; i < n; i++) {                                                                \
            if (i + CKK_GATHER_PREFETCH_DISTANCE < n) {                                                 \
                size_t ahead = (size_t)rows[i + CKK_GATHER_PREFETCH_DISTANCE];                          \
                CKK_PREFETCH_RANGE(b + ahead * stride, bytes);                                          \
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

#endif
