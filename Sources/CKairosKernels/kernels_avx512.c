/* AVX-512 (F/BW/VL) kernels: 16 lanes, masked loads for the column tail so no byte past `cols`
 * elements is read (masked-off lanes never fault). Reachable only through the avx512 table. */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
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

/* Same addition order as lane 0 of hsum4x512, so dot, gather and scan give bit-identical scores. */
INL float hsum512(__m512 v) {
    __m256 f = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m256 h = _mm256_hadd_ps(f, f);
    h = _mm256_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

/* Lane i of the result is the sum of all 16 lanes of a_i. */
INL __m128 hsum4x512(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
#define CKK_FOLD(v) _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(CKK_FOLD(a0), CKK_FOLD(a1)), _mm256_hadd_ps(CKK_FOLD(a2), CKK_FOLD(a3)));
#undef CKK_FOLD
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Indices i < n with s[i] > t (NaN never passes), in order; usually none once a top-k threshold is set. */
T5 size_t ckk_filter_gt_avx512(const float *s, size_t n, float t, uint32_t *idx) {
    const __m512 tv = _mm512_set1_ps(t);
    size_t count = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        uint32_t m = _mm512_cmp_ps_mask(_mm512_loadu_ps(s + i), tv, _CMP_GT_OQ);
        while (m) {
            idx[count++] = (uint32_t)i + (uint32_t)__builtin_ctz(m);
            m &= m - 1;
        }
    }
    if (i < n) {
        __mmask16 lanes = (__mmask16)((1u << (n - i)) - 1u);
        uint32_t m = _mm512_mask_cmp_ps_mask(lanes, _mm512_maskz_loadu_ps(lanes, s + i), tv, _CMP_GT_OQ);
        while (m) {
            idx[count++] = (uint32_t)i + (uint32_t)__builtin_ctz(m);
            m &= m - 1;
        }
    }
    return count;
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
    /* cols == 64 (the common width) with the query held in registers: the same operations in the same order \
     * as row_acc (so scores stay bit-identical), without the column loop. */                            \
    INL __m512 row_acc64_##ENC(__m512 q0, __m512 q1, __m512 q2, __m512 q3, const uint8_t *p) {           \
        const __m512 z = _mm512_setzero_ps();                                                           \
        __m512 a0 = _mm512_fmadd_ps(q0, ld16_##ENC(p, 0), z);                                           \
        __m512 a1 = _mm512_fmadd_ps(q1, ld16_##ENC(p, 16), z);                                          \
        __m512 a2 = _mm512_fmadd_ps(q2, ld16_##ENC(p, 32), z);                                          \
        __m512 a3 = _mm512_fmadd_ps(q3, ld16_##ENC(p, 48), z);                                          \
        return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));                             \
    }                                                                                                   \
    T5 float ckk_dot_##ENC##_avx512(const float *q, const void *row, float scale, int32_t cols) {       \
        return hsum512(row_acc_##ENC(q, (const uint8_t *)row, cols)) * scale;                           \
    }                                                                                                   \
    T5 void ckk_scan_##ENC##_avx512(const float *q, const void *base, size_t stride, const float *scales, \
                                    size_t start, size_t n, int32_t cols, float *out) {                 \
        const uint8_t *p = (const uint8_t *)base + start * stride;                                      \
        size_t i = 0;                                                                                   \
        if (cols == 64) {                                                                               \
            const __m512 q0 = _mm512_loadu_ps(q), q1 = _mm512_loadu_ps(q + 16);                         \
            const __m512 q2 = _mm512_loadu_ps(q + 32), q3 = _mm512_loadu_ps(q + 48);                    \
            for (; i + 4 <= n; i += 4, p += 4 * stride) {                                               \
                CKK_PREFETCH_RANGE((uintptr_t)p + CKK_SCAN_PREFETCH_BYTES, 4 * stride);                 \
                __m128 s = hsum4x512(row_acc64_##ENC(q0, q1, q2, q3, p), row_acc64_##ENC(q0, q1, q2, q3, p + stride), \
                                     row_acc64_##ENC(q0, q1, q2, q3, p + 2 * stride),                   \
                                     row_acc64_##ENC(q0, q1, q2, q3, p + 3 * stride));                  \
                if (ESIZE == 1) s = _mm_mul_ps(s, _mm_loadu_ps(scales + start + i));                    \
                _mm_storeu_ps(out + i, s);                                                              \
            }                                                                                           \
        }                                                                                               \
        /* Four rows per step share one horizontal reduction (about a third of the shuffles). */        \
        for (; i + 4 <= n; i += 4, p += 4 * stride) {                                                   \
            CKK_PREFETCH_RANGE((uintptr_t)p + CKK_SCAN_PREFETCH_BYTES, 4 * stride);                     \
            __m128 s = hsum4x512(row_acc_##ENC(q, p, cols), row_acc_##ENC(q, p + stride, cols),         \
                                 row_acc_##ENC(q, p + 2 * stride, cols),                                \
                                 row_acc_##ENC(q, p + 3 * stride, cols));                               \
            if (ESIZE == 1) s = _mm_mul_ps(s, _mm_loadu_ps(scales + start + i));                        \
            _mm_storeu_ps(out + i, s);                                                                  \
        }                                                                                               \
        for (; i < n; i++, p += stride) {                                                               \
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
            CKK_PREFETCH_RANGE_L2(b + (size_t)rows[i] * stride, bytes);                                 \
        for (size_t i = 0; i < n; i++) {                                                                \
            if (i + CKK_GATHER_PREFETCH_DISTANCE < n) {                                                 \
                size_t ahead = (size_t)rows[i + CKK_GATHER_PREFETCH_DISTANCE];                          \
                CKK_PREFETCH_RANGE_L2(b + ahead * stride, bytes);                                       \
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

/* Bounded scan (ckairos_kernels.h). Per block of 16 rows, one VNNI multiply-add per 4-byte group gives all 16
 * integer dot products with the quantized query at once (about one instruction per row at 64 columns, against ~18
 * for the exact int8 path and 4 cache lines per float32 row); rows whose bound cannot beat the threshold are
 * skipped, the others scored by row_acc_* exactly as the dot, gather and scan kernels of their encoding do. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
void ckk_scan_bounded_avx512(const float *q, const uint8_t *qq, float qs, float slack, float q_l1,
                             const int8_t *blocked, const int32_t *corr, const int32_t *l1, const float *row_scale,
                             const float *row_err, int enc, const void *base, size_t stride, const float *scales,
                             const float *add, size_t start, size_t n, int32_t cols, float threshold, float *out) {
    const size_t groups = (size_t)cols / 4;
    const uint8_t *b = (const uint8_t *)base;
    const __m512 vqs = _mm512_set1_ps(qs), vslack = _mm512_set1_ps(slack), vql1 = _mm512_set1_ps(q_l1);
    const __m512 vt = _mm512_set1_ps(threshold);
    for (size_t i0 = 0; i0 < n; i0 += 16) {
        const size_t r0 = start + i0;
        const size_t m = n - i0 < 16 ? n - i0 : 16;
        const __mmask16 live = (__mmask16)((1u << m) - 1u);
        const int8_t *block = blocked + (r0 / 16) * groups * 64;
        __m512i acc = _mm512_setzero_si512();
        for (size_t g = 0; g < groups; g++) {
            uint32_t qg;
            memcpy(&qg, qq + 4 * g, 4);
            acc = _mm512_dpbusd_epi32(acc, _mm512_set1_epi32((int)qg), _mm512_load_si512((const void *)(block + g * 64)));
        }
        __m512 d = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_maskz_loadu_epi32(live, corr + r0)));
        __m512 s = _mm512_maskz_loadu_ps(live, row_scale + r0);
        __m512 mag = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(live, l1 + r0));
        /* scale * (qs * d) + |scale| * slack * L1 + |q|_1 * err >= the exact score, with float rounding too. */
        __m512 ub = _mm512_add_ps(_mm512_mul_ps(s, _mm512_mul_ps(vqs, d)),
                                  _mm512_mul_ps(_mm512_abs_ps(s), _mm512_mul_ps(vslack, mag)));
        ub = _mm512_add_ps(ub, _mm512_mul_ps(vql1, _mm512_maskz_loadu_ps(live, row_err + r0)));
        if (add) ub = _mm512_add_ps(ub, _mm512_maskz_loadu_ps(live, add + r0));
        uint32_t pass = _mm512_mask_cmp_ps_mask(live, ub, vt, _CMP_GT_OQ);
        _mm512_mask_storeu_ps(out + i0, live, _mm512_set1_ps(-__builtin_inff()));
        while (pass) {
            const size_t j = (size_t)__builtin_ctz(pass);
            pass &= pass - 1;
            const size_t r = r0 + j;
            const uint8_t *row = b + r * stride;
            float exact;
            switch (enc) {
            case CKK_ENC_F32: exact = hsum512(row_acc_f32(q, row, cols)); break;
            case CKK_ENC_F16: exact = hsum512(row_acc_f16(q, row, cols)); break;
            default: exact = hsum512(row_acc_i8(q, row, cols)) * scales[r]; break;
            }
            out[i0 + j] = add ? exact + add[r] : exact;
        }
    }
}

#endif
