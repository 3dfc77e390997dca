/* The least-squares real-time fold (KairosKernels/LeastSquaresFold.swift): two weighted-ALS user solves, before and
 * after a request's events, in one call. The rank-one sums over the user's history are the cost (n k^2), so they
 * run as register-tiled outer products, and the two Cholesky solves (k^3 / 6 each) as independent row updates, with
 * AVX2 + FMA where the CPU has them. */
#include "kernels_internal.h"
#include <math.h>
#include <stdlib.h>

typedef float v8f __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));

/* Macros, not functions: a function taking or returning a 32-byte vector would have a different ABI in the
 * portable and the AVX2 versions of the body. */
#define ld8(p)                                                                                          \
    ({                                                                                                  \
        v8f v_;                                                                                         \
        memcpy(&v_, (p), sizeof v_);                                                                    \
        v_;                                                                                             \
    })
#define st8(p, v)                                                                                       \
    do {                                                                                                \
        v8f t_ = (v);                                                                                   \
        memcpy((p), &t_, sizeof t_);                                                                    \
    } while (0)

/* The most factors the fold takes (LeastSquaresFold.maxDimensions). */
#define CKK_MAX_FOLD_DIMENSIONS 128

/* Rows per chunk of the outer-product sum: a chunk of y and z (2 x 64 x 256 bytes at 64 factors) stays in L1. */
#define CKK_FOLD_CHUNK 64

/* out[a][b] += sum_r z_r[a] y_r[b] over the tiles of 4 rows x 16 columns that reach the lower triangle. y and z are
 * n rows of kp floats (kp a multiple of 16), out is kp x kp. */
#define CKK_OUTER_SUM_BODY                                                                              \
    for (size_t r0 = 0; r0 < n; r0 += CKK_FOLD_CHUNK) {                                                 \
        size_t r1 = r0 + CKK_FOLD_CHUNK < n ? r0 + CKK_FOLD_CHUNK : n;                                  \
        for (int32_t ta = 0; ta < kp; ta += 4) {                                                        \
            for (int32_t tb = 0; tb <= ta + 3 && tb < kp; tb += 16) {                                   \
                v8f acc[4][2];                                                                          \
                for (int i = 0; i < 4; i++) {                                                           \
                    acc[i][0] = ld8(out + (size_t)(ta + i) * kp + tb);                                  \
                    acc[i][1] = ld8(out + (size_t)(ta + i) * kp + tb + 8);                              \
                }                                                                                       \
                for (size_t r = r0; r < r1; r++) {                                                      \
                    const float *yr = y + r * kp, *zr = z + r * kp;                                     \
                    v8f y0 = ld8(yr + tb), y1 = ld8(yr + tb + 8);                                       \
                    for (int i = 0; i < 4; i++) {                                                       \
                        v8f s = (v8f){0} + zr[ta + i];                                                  \
                        acc[i][0] += s * y0;                                                            \
                        acc[i][1] += s * y1;                                                            \
                    }                                                                                   \
                }                                                                                       \
                for (int i = 0; i < 4; i++) {                                                           \
                    st8(out + (size_t)(ta + i) * kp + tb, acc[i][0]);                                   \
                    st8(out + (size_t)(ta + i) * kp + tb + 8, acc[i][1]);                               \
                }                                                                                       \
            }                                                                                           \
        }                                                                                               \
    }

static void outer_sum_portable(const float *y, const float *z, size_t n, int32_t kp, float *out) { CKK_OUTER_SUM_BODY }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void outer_sum_avx2(const float *y, const float *z, size_t n, int32_t kp,
                                                               float *out) {
    CKK_OUTER_SUM_BODY
}
#endif

static void outer_sum(const float *y, const float *z, size_t n, int32_t kp, float *out) {
#if defined(__x86_64__)
    if (ckk_supported_isa_mask() & (1 << CKK_ISA_AVX2)) {
        outer_sum_avx2(y, z, n, kp, out);
        return;
    }
#endif
    outer_sum_portable(y, z, n, kp, out);
}

void ckk_gram_accumulate(const float *rows, size_t n, int32_t k, double *total) {
    const int32_t kp = (k + 15) & ~15;
    const size_t pp = (size_t)kp * kp;
    float *part = NULL, *y = NULL;
    if (posix_memalign((void **)&part, 64, pp * sizeof(float)) != 0) abort();
    if (posix_memalign((void **)&y, 64, (size_t)CKK_FOLD_CHUNK * kp * sizeof(float)) != 0) abort();
    memset(y, 0, (size_t)CKK_FOLD_CHUNK * kp * sizeof(float));
    /* Float partial sums over blocks of 256 rows, added into doubles after each block: a million rows lose no more
     * than one block's float rounding. */
    for (size_t b0 = 0; b0 < n; b0 += 256) {
        size_t b1 = b0 + 256 < n ? b0 + 256 : n;
        memset(part, 0, pp * sizeof(float));
        for (size_t r0 = b0; r0 < b1; r0 += CKK_FOLD_CHUNK) {
            size_t r1 = r0 + CKK_FOLD_CHUNK < b1 ? r0 + CKK_FOLD_CHUNK : b1;
            for (size_t r = r0; r < r1; r++) memcpy(y + (r - r0) * kp, rows + r * k, (size_t)k * sizeof(float));
            outer_sum(y, y, r1 - r0, kp, part);
        }
        for (int32_t i = 0; i < k; i++)
            for (int32_t j = 0; j <= i; j++) total[(size_t)i * k + j] += part[(size_t)i * kp + j];
    }
    free(part);
    free(y);
}

/* Factors A = L L' over A's lower triangle (row-major, k x k, overwritten by L; `col` is k doubles of scratch).
 * Right-looking: after column j is scaled, every later row i loses L[i][j] times the column, a contiguous loop with
 * no dependency between its steps (a left-looking dot product per entry waited on its own additions and on one
 * division per entry, and cost 3x). Returns 0 when A is not positive definite. */
#define CKK_FACTOR_BODY                                                                                 \
    for (int32_t j = 0; j < k; j++) {                                                                   \
        double d = a[(size_t)j * k + j];                                                                \
        if (!(d > 0) || !isfinite(d)) return 0;                                                         \
        double l = sqrt(d), inv = 1 / l;                                                                \
        a[(size_t)j * k + j] = l;                                                                       \
        for (int32_t i = j + 1; i < k; i++) col[i] = a[(size_t)i * k + j] *= inv;                       \
        /* Four rows at a time over the columns they share (j, i], then the rest of their triangle. */      \
        int32_t i = j + 1;                                                                              \
        for (; i + 4 <= k; i += 4) {                                                                    \
            double l0 = col[i], l1 = col[i + 1], l2 = col[i + 2], l3 = col[i + 3];                      \
            double *restrict r0 = a + (size_t)i * k, *restrict r1 = r0 + k;                             \
            double *restrict r2 = r1 + k, *restrict r3 = r2 + k;                                        \
            for (int32_t c = j + 1; c <= i; c++) {                                                      \
                double v = col[c];                                                                      \
                r0[c] -= l0 * v;                                                                        \
                r1[c] -= l1 * v;                                                                        \
                r2[c] -= l2 * v;                                                                        \
                r3[c] -= l3 * v;                                                                        \
            }                                                                                           \
            r1[i + 1] -= l1 * col[i + 1];                                                               \
            r2[i + 1] -= l2 * col[i + 1];                                                               \
            r2[i + 2] -= l2 * col[i + 2];                                                               \
            r3[i + 1] -= l3 * col[i + 1];                                                               \
            r3[i + 2] -= l3 * col[i + 2];                                                               \
            r3[i + 3] -= l3 * col[i + 3];                                                               \
        }                                                                                               \
        for (; i < k; i++) {                                                                            \
            double lij = col[i], *restrict ri = a + (size_t)i * k;                                      \
            for (int32_t c = j + 1; c <= i; c++) ri[c] -= lij * col[c];                                 \
        }                                                                                               \
    }                                                                                                   \
    return 1;

static int factor_portable(double *a, double *restrict col, int32_t k) { CKK_FACTOR_BODY }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int factor_avx2(double *a, double *restrict col, int32_t k) {
    CKK_FACTOR_BODY
}
#endif

static int factor(double *a, double *col, int32_t k) {
#if defined(__x86_64__)
    if (ckk_supported_isa_mask() & (1 << CKK_ISA_AVX2)) return factor_avx2(a, col, k);
#endif
    return factor_portable(a, col, k);
}

/* sum x[i] y[i] for i < n in four independent lanes (a single running sum waits on every addition). */
static inline double dot(const double *x, const double *y, int32_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++) s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

/* x = (L L')^-1 x for the factor `l` of factor(); 0 when the result is not finite. Both halves read rows of L: the
 * forward one as dot products, the backward one (L' x = z) as x[0..i) -= x[i] L[i][0..i), with no chain between
 * the steps of a row (reading L' by columns, one chained subtraction per entry, was half the fold's time). */
static int solve(const double *l, double *x, int32_t k) {
    for (int32_t i = 0; i < k; i++) {
        const double *ri = l + (size_t)i * k;
        x[i] = (x[i] - dot(ri, x, i)) / ri[i];
    }
    for (int32_t i = k - 1; i >= 0; i--) {
        const double *restrict ri = l + (size_t)i * k;
        double xi = x[i] / ri[i];
        x[i] = xi;
        for (int32_t p = 0; p < i; p++) x[p] -= xi * ri[p];
    }
    for (int32_t i = 0; i < k; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Most changed entries solved by the Woodbury identity on the history's factor instead of a second factorization:
 * m + 1 solves (k^2 each) and an m x m system, against k^3 / 6 (measured: 2x faster at 4 events and 64 factors). */
#define CKK_FOLD_LOW_RANK 16

/* x = (A + sum_t c_t v_t v_t')^-1 b (x holds b on entry) for the factor `l` of A, the m <= CKK_FOLD_LOW_RANK rows
 * v_t (k floats each, `stride` apart) and c_t != 0; `z` is m x k doubles of scratch. 0 when the small system is
 * singular or a result not finite (the caller then factors the whole matrix). */
static int solve_low_rank(const double *l, const float *v, size_t stride, const double *c, int32_t m, double *x,
                          double *z, int32_t k) {
    double s[CKK_FOLD_LOW_RANK][CKK_FOLD_LOW_RANK + 1];
    if (!solve(l, x, k)) return 0;
    for (int32_t t = 0; t < m; t++) {
        double *zt = z + (size_t)t * k;
        for (int32_t d = 0; d < k; d++) zt[d] = v[t * stride + d];
        if (!solve(l, zt, k)) return 0;
    }
    /* S = C^-1 + V' A^-1 V and S q = V' x, then x -= A^-1 V q. */
    for (int32_t t = 0; t < m; t++) {
        const float *vt = v + t * stride;
        for (int32_t u = 0; u < m; u++) {
            double dot = 0;
            for (int32_t d = 0; d < k; d++) dot += vt[d] * z[(size_t)u * k + d];
            s[t][u] = dot + (t == u ? 1 / c[t] : 0);
        }
        double dot = 0;
        for (int32_t d = 0; d < k; d++) dot += vt[d] * x[d];
        s[t][m] = dot;
    }
    for (int32_t col = 0; col < m; col++) {
        int32_t pivot = col;
        for (int32_t r = col + 1; r < m; r++)
            if (fabs(s[r][col]) > fabs(s[pivot][col])) pivot = r;
        if (!(fabs(s[pivot][col]) > 0) || !isfinite(s[pivot][col])) return 0;
        if (pivot != col)
            for (int32_t q = 0; q <= m; q++) {
                double t = s[col][q];
                s[col][q] = s[pivot][q];
                s[pivot][q] = t;
            }
        for (int32_t r = 0; r < m; r++) {
            if (r == col) continue;
            double f = s[r][col] / s[col][col];
            for (int32_t q = col; q <= m; q++) s[r][q] -= f * s[col][q];
        }
    }
    for (int32_t t = 0; t < m; t++) {
        double q = s[t][m] / s[t][t];
        for (int32_t d = 0; d < k; d++) x[d] -= q * z[(size_t)t * k + d];
    }
    for (int32_t i = 0; i < k; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int ckk_least_squares_fold(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                           const double *before, const double *after, size_t n, const float *u, float *out) {
    const int32_t kp = (k + 15) & ~15;
    const size_t kk = (size_t)k * k, pp = (size_t)kp * kp;
    /* One block: y and z rows (n x kp floats each), two kp x kp float partials, two k x k systems, three k vectors,
     * CKK_FOLD_LOW_RANK x k scratch and the changes' weights. */
    size_t floats = 2 * n * kp + 2 * pp, doubles = 2 * kk + 3 * (size_t)k + CKK_FOLD_LOW_RANK * (size_t)k + n;
    void *block = NULL;
    if (posix_memalign(&block, 64, doubles * sizeof(double) + floats * sizeof(float)) != 0) return -1;
    double *a1 = block, *a2 = a1 + kk, *x1 = a2 + kk, *x2 = x1 + k, *col = x2 + k, *zs = col + k, *c = zs + CKK_FOLD_LOW_RANK * (size_t)k;
    float *y = (float *)(c + n), *z = y + n * kp, *p1 = z + n * kp, *p2 = p1 + pp;
    /* The partials start at 0, and so do the rows' padding columns (kp > k); the rows' first k are copied in. */
    memset(p1, 0, 2 * pp * sizeof(float));
    if (kp > k) memset(y, 0, 2 * n * kp * sizeof(float));
    memset(x1, 0, 2 * (size_t)k * sizeof(double));

    /* A and b before the events over the history's rows, and b after them. */
    size_t m = 0;
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + r * k;
        double cb = before[r] > 0 ? 1 + alpha * before[r] : 0, ca = after[r] > 0 ? 1 + alpha * after[r] : 0;
        for (int32_t d = 0; d < k; d++) {
            x1[d] += cb * row[d];
            x2[d] += ca * row[d];
        }
        if (!(before[r] > 0)) continue;
        float w = (float)(alpha * before[r]);
        memcpy(y + m * kp, row, (size_t)k * sizeof(float));
        for (int32_t d = 0; d < k; d++) z[m * kp + d] = w * row[d];
        m++;
    }
    outer_sum(y, z, m, kp, p1);
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j <= i; j++)
            a1[(size_t)i * k + j] = a2[(size_t)i * k + j] = gram[(size_t)i * k + j] + (i == j ? lambda : 0) + p1[(size_t)i * kp + j];

    /* The events' changes: c_t = alpha (after - before) on the changed rows, gathered (k floats, kp apart). */
    m = 0;
    for (size_t r = 0; r < n; r++) {
        if (after[r] == before[r]) continue;
        c[m] = alpha * (after[r] - before[r]);
        memcpy(y + m * kp, rows + r * k, (size_t)k * sizeof(float));
        m++;
    }
    int ok = factor(a1, col, k) && solve(a1, x1, k);
    int done = 0;
    if (ok && m <= CKK_FOLD_LOW_RANK) {
        double b2[CKK_MAX_FOLD_DIMENSIONS];
        memcpy(b2, x2, (size_t)k * sizeof(double));
        done = solve_low_rank(a1, y, (size_t)kp, c, (int32_t)m, x2, zs, k);
        if (!done) memcpy(x2, b2, (size_t)k * sizeof(double));
    }
    if (ok && !done) {
        for (size_t t = 0; t < m; t++) {
            float w = (float)c[t];
            for (int32_t d = 0; d < k; d++) z[t * kp + d] = w * y[t * kp + d];
        }
        outer_sum(y, z, m, kp, p2);
        for (int32_t i = 0; i < k; i++)
            for (int32_t j = 0; j <= i; j++) a2[(size_t)i * k + j] += p2[(size_t)i * kp + j];
        ok = factor(a2, col, k) && solve(a2, x2, k);
    }
    if (ok) {
        for (int32_t d = 0; d < k; d++) {
            float v = (float)((double)u[d] + (x2[d] - x1[d]));
            if (!isfinite(v)) ok = 0;
        }
    }
    if (ok)
        for (int32_t d = 0; d < k; d++) out[d] = (float)((double)u[d] + (x2[d] - x1[d]));
    free(block);
    return ok;
}
