/* AVX-512 (F/BW/VL) kernels: 16 lanes, masked loads for the column tail so no byte past `cols`
 * elements is read (masked-off lanes never fault). Reachable only through the avx512 table. */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T5V __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) T5

/* 16 elements at column c, widened to float. */
INL __m512 ld16_f32(const uint8_t *p, int32_t c) { return _mm512_loadu_ps((const float *)(p + 4 * (size_t)c)); }
INL __m512 ld16_f16(const uint8_t *p, int32_t c) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * (size_t)c)));
}
INL __m512 ld16_i8(const uint8_t *p, int32_t c) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + c))));
}
/* The first popcount(m) elements at column c; masked-off lanes are zero and not accessed. */
INL __m512 ldm_f32(const uint8_t *p, int32_t c, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, (const float *)(p + 4 * (size_t)c));
}
INL __m512 ldm_f16(const uint8_t *p, int32_t c, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * (size_t)c));
}
INL __m512 ldm_i8(const uint8_t *p, int32_t c, __mmask16 m) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p + c)));
}

INL float hsum512(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

#define DEF_AVX512(ENC, ESIZE)                                                                          \
    INL __m512 row_acc_##ENC(const float *q, const uint8_t *p, int32_t cols) {                          \
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();                                      \
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();                                      \
        int32_t c = 0;                                                                                  \
        for (; c + 64 <= cols; c += 64) {                                                               \
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), ld16_##ENC(p, c), a0);                         \
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 16), ld16_##ENC(p, c + 16), a1);               \
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 32), ld16_##ENC(p, c + 32), a2);               \
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c + 48), ld16_##ENC(p, c + 48), a3);               \
        }                                                                                               \
        for (; c + 16 <= cols; c += 16) a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), ld16_##ENC(p, c), a1); \
        if (c < cols) {                                                                                 \
            __mmask16 m = (__mmask16)((1u << (cols - c)) - 1u);                                         \
            a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), ldm_##ENC(p, c, m), a2);              \
        }                                                                                               \
        return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));                             \
    }                                                                                                   \
    T5 float ckk_dot_##ENC##_avx512(const float *q, const void *row, float scale, int32_t cols) {       \
        return hsum512(row_acc_##ENC(q, (const uint8_t *)row, cols)) * scale;                           \
    }                                                                                                   \
    T5 void ckk_scan_##ENC##_avx512(const float *q, const void *base, size_t stride, const float *scales, \
                                    size_t start, size_t n, int32_t cols, float *out) {                 \
        const uint8_t *p = (const uint8_t *)base + start * stride;                                      \
        for (size_t i = 0; i < n; i++, p += stride) {                                                   \
            float s = hsum512(row_acc_##ENC(q, p, cols));                                               \
            out[i] = (ESIZE == 1) ? s * scales[start + i] : s;                                          \
        }                                                                                               \
    }                                                                                                   \
    T5 void ckk_gather_##ENC##_avx512(const float *q, const void *base, size_t stride,                  \
                                      const float *scales, const int32_t *rows, size_t n, int32_t cols, \
                                      float *out) {                                                     \
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
            float s = hsum512(row_acc_##ENC(q, b + r * stride, cols));                                  \
            out[i] = (ESIZE == 1) ? s * scales[r] : s;                                                  \
        }                                                                                               \
    }

DEF_AVX512(f32, 4)
DEF_AVX512(f16, 2)
DEF_AVX512(i8, 1)

/* Opt-in approximate int8 scan with a pre-quantized query. vpdpbusd multiplies unsigned by signed bytes,
 * so rows are biased to unsigned (x ^ 0x80 == x + 128) and the constant 128 * sum(qq) is subtracted. */
T5V void ckk_scan_i8q_vnni(const int8_t *qq, float qscale, const void *base, size_t stride, const float *scales,
                           size_t start, size_t n, int32_t cols, float *out) {
    int32_t qsum = 0;
    for (int32_t c = 0; c < cols; c++) qsum += qq[c];
    const int32_t correction = 128 * qsum;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const int32_t full = cols & ~63;
    const __mmask64 tail = (cols & 63) ? (((__mmask64)1 << (cols & 63)) - 1) : 0;
    /* Masked-off query bytes are zero, so the biased zero row bytes there contribute nothing. */
    const __m512i qtail = _mm512_maskz_loadu_epi8(tail, qq + full);
    const uint8_t *p = (const uint8_t *)base + start * stride;
    for (size_t i = 0; i < n; i++, p += stride) {
        __m512i acc = _mm512_setzero_si512();
        for (int32_t c = 0; c < full; c += 64) {
            __m512i x = _mm512_xor_si512(_mm512_loadu_si512((const void *)(p + c)), bias);
            acc = _mm512_dpbusd_epi32(acc, x, _mm512_loadu_si512((const void *)(qq + c)));
        }
        if (tail) {
            __m512i x = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, p + full), bias);
            acc = _mm512_dpbusd_epi32(acc, x, qtail);
        }
        int32_t s = _mm512_reduce_add_epi32(acc) - correction;
        out[i] = (float)s * (qscale * scales[start + i]);
    }
}

#endif
