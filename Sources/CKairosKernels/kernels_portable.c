/* Portable scalar kernels: any CPU, and the tested fallback. Eight partial sums keep the float error
 * close to the SIMD kernels' (and let the compiler vectorize with baseline SSE2). */
#include "kernels_internal.h"

static inline float load_f32(const uint8_t *p, int32_t c) {
    float v;
    memcpy(&v, p + 4 * (size_t)c, 4);
    return v;
}
static inline float load_f16(const uint8_t *p, int32_t c) {
    uint16_t h;
    memcpy(&h, p + 2 * (size_t)c, 2);
    return ckk_half_to_float(h);
}
static inline float load_i8(const uint8_t *p, int32_t c) { return (float)(int8_t)p[c]; }

#define DEF_PORTABLE(ENC, LOAD, ESIZE)                                                                  \
    static inline float row_dot_##ENC(const float *q, const uint8_t *p, int32_t cols) {                 \
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                        \
        int32_t c = 0;                                                                                  \
        for (; c + 8 <= cols; c += 8)                                                                   \
            for (int j = 0; j < 8; j++) acc[j] += q[c + j] * LOAD(p, c + j);                            \
        for (int j = 0; c + j < cols; j++) acc[j] += q[c + j] * LOAD(p, c + j);                         \
        return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));       \
    }                                                                                                   \
    float ckk_dot_##ENC##_portable(const float *q, const void *row, float scale, int32_t cols) {        \
        return row_dot_##ENC(q, (const uint8_t *)row, cols) * scale;                                    \
    }                                                                                                   \
    void ckk_scan_##ENC##_portable(const float *q, const void *base, size_t stride, const float *scales, \
                                   size_t start, size_t n, int32_t cols, float *out) {                  \
        const uint8_t *p = (const uint8_t *)base + start * stride;                                      \
        for (size_t i = 0; i < n; i++, p += stride) {                                                   \
            float s = row_dot_##ENC(q, p, cols);                                                        \
            out[i] = (ESIZE == 1) ? s * scales[start + i] : s;                                          \
        }                                                                                               \
    }                                                                                                   \
    void ckk_gather_##ENC##_portable(const float *q, const void *base, size_t stride,                   \
                                     const float *scales, const int32_t *rows, size_t n, int32_t cols,  \
                                     float *out) {                                                      \
        const uint8_t *b = (const uint8_t *)base;                                                       \
        for (size_t i = 0; i < n; i++) {                                                                \
            if (i + CKK_GATHER_PREFETCH_DISTANCE < n)                                                   \
                CKK_PREFETCH_RANGE(b + (size_t)rows[i + CKK_GATHER_PREFETCH_DISTANCE] * stride,         \
                                   (size_t)cols * ESIZE);                                               \
            size_t r = (size_t)rows[i];                                                                 \
            float s = row_dot_##ENC(q, b + r * stride, cols);                                           \
            out[i] = (ESIZE == 1) ? s * scales[r] : s;                                                  \
        }                                                                                               \
    }

DEF_PORTABLE(f32, load_f32, 4)
DEF_PORTABLE(f16, load_f16, 2)
DEF_PORTABLE(i8, load_i8, 1)

size_t ckk_filter_gt_portable(const float *s, size_t n, float t, uint32_t *idx) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        idx[count] = (uint32_t)i;
        count += s[i] > t; /* branchless: NaN compares false */
    }
    return count;
}

void ckk_quantize_i8(const float *src, int8_t *dst, size_t cols, float scale) {
    for (size_t c = 0; c < cols; c++) {
        float v = src[c] / scale;
        /* |v| <= 127 (up to rounding) as scale = max|x| / 127; clamp first so the conversion is defined. */
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        int32_t t = (int32_t)v;      /* toward zero */
        float frac = v - (float)t;  /* exact */
        t += (frac >= 0.5f) - (frac <= -0.5f);
        dst[c] = (int8_t)t;
    }
}

int64_t ckk_first_row_beyond(const void *base, size_t stride, size_t rows, int32_t cols, int enc, float limit) {
    /* IEEE magnitudes order as their bit patterns, NaN and infinity above every finite value, so one integer
     * compare per element finds all three. The OR over a row has no early exit, so it vectorizes. */
    const uint8_t *p = (const uint8_t *)base;
    if (enc == CKK_ENC_F32) {
        int32_t lim;
        memcpy(&lim, &limit, 4);
        for (size_t r = 0; r < rows; r++, p += stride) {
            const int32_t *v = (const int32_t *)(const void *)p;
            int32_t bad = 0;
            for (int32_t c = 0; c < cols; c++) bad |= (v[c] & 0x7FFFFFFF) > lim;
            if (bad) return (int64_t)r;
        }
    } else if (enc == CKK_ENC_F16) {
        /* float16's largest finite value (65504) is below any limit worth setting: look for NaN and infinity. */
        for (size_t r = 0; r < rows; r++, p += stride) {
            const int16_t *v = (const int16_t *)(const void *)p;
            int16_t bad = 0;
            for (int32_t c = 0; c < cols; c++) bad |= (v[c] & 0x7FFF) > 0x7BFF;
            if (bad) return (int64_t)r;
        }
    }
    return -1;
}
