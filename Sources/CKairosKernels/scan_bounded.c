/* Bounded scans (see ckairos_kernels.h): the tables, the query quantizer and the dispatch. The kernel itself
 * is in kernels_avx512.c, beside the exact kernels whose operations it repeats for the rows it scores. */
#include "kernels_internal.h"
#include <math.h>
#include <string.h>

/* MatrixView.maxCols: the most columns a matrix can have. */
#define CKK_MAX_COLS 1024

void ckk_i8_bound_tables(const void *base, size_t stride, size_t rows, int32_t cols, int8_t *blocked,
                         int32_t *corr, int32_t *l1) {
    const size_t groups = (size_t)cols / 4;
    for (size_t r = 0; r < rows; r++) {
        const int8_t *row = (const int8_t *)((const uint8_t *)base + r * stride);
        int8_t *block = blocked + (r / 16) * groups * 64 + (r % 16) * 4;
        int32_t sum = 0, mag = 0;
        for (size_t g = 0; g < groups; g++) memcpy(block + g * 64, row + 4 * g, 4);
        for (int32_t j = 0; j < cols; j++) {
            sum += row[j];
            mag += row[j] < 0 ? -row[j] : row[j];
        }
        corr[r] = 128 * sum;
        l1[r] = mag;
    }
}

int ckk_quantize_rows(const void *base, size_t stride, size_t rows, int32_t cols, int enc, int8_t *codes,
                      float *scale, float *err) {
    float v[CKK_MAX_COLS];
    if (cols < 0 || cols > CKK_MAX_COLS) return 0;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)base + r * stride;
        float m = 0;
        int finite = 1;
        for (int32_t j = 0; j < cols; j++) {
            if (enc == CKK_ENC_F32) {
                memcpy(&v[j], row + 4 * (size_t)j, 4);
            } else {
                uint16_t h;
                memcpy(&h, row + 2 * (size_t)j, 2);
                v[j] = ckk_half_to_float(h);
            }
            finite &= isfinite(v[j]) != 0;
            m = fmaxf(m, fabsf(v[j]));
        }
        if (!finite) return 0;
        const float s = m > 0 ? m / 127.0f : 1.0f;
        int8_t *c = codes + r * (size_t)cols;
        ckk_quantize_i8(v, c, (size_t)cols, s); /* vectorized; rintf would be a libm call per value here */
        float worst = 0;
        for (int32_t j = 0; j < cols; j++) worst = fmaxf(worst, fabsf(v[j] - s * (float)c[j]));
        scale[r] = s;
        /* Room for float rounding here and in the exact kernel (~cols/4 * 2^-24 * sum|q||v|, below
         * 1e-6 * |q|_1 * max|v| at 64 columns). */
        err[r] = worst * 1.0001f + 2e-6f * m;
    }
    return 1;
}

float ckk_quantize_query_u8(const float *q, int32_t cols, uint8_t *qq, float *slack, float *l1) {
    float m = 0, sum = 0;
    for (int32_t j = 0; j < cols; j++) {
        if (!isfinite(q[j])) return 0;
        m = fmaxf(m, fabsf(q[j]));
        sum += fabsf(q[j]);
    }
    if (m == 0 || !isfinite(m / 127.0f) || m / 127.0f == 0) return 0;
    const float s = m / 127.0f;
    float worst = 0;
    for (int32_t j = 0; j < cols; j++) {
        float t = rintf(q[j] / s);
        t = t > 127 ? 127 : (t < -127 ? -127 : t);
        qq[j] = (uint8_t)((int)t + 128);
        worst = fmaxf(worst, fabsf(q[j] - s * t));
    }
    /* The bound is exact in real arithmetic with `worst`; the exact kernel's float rounding is below
     * ~cols/4 * 2^-24 * sum|q||v| (about 1e-6 of max|q| * L1 at 64 columns): 2e-5 leaves a wide margin. */
    *slack = worst * 1.0001f + 2e-5f * m;
    *l1 = sum * 1.0001f;
    return s;
}

ckk_scan_bounded_fn ckk_scan_bounded(int isa) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    if (isa == CKK_ISA_AVX512 && (ckk_supported_isa_mask() & (1 << CKK_ISA_AVX512)) &&
        __builtin_cpu_supports("avx512vnni"))
        return ckk_scan_bounded_avx512;
#endif
    (void)isa;
    return NULL;
}
