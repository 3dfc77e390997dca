/* The least-squares real-time fold (KairosKernels/LeastSquaresFold.swift): two weighted-ALS user solves, before and
 * after a request's events, in one call. The rank-one sums over the user's history (n k^2) run as register-tiled
 * outer products; one Cholesky factorization (k^3 / 6) in panels of 4 columns, with the events' few changes solved on
 * it by the Woodbury identity; each whole fold compiled once for AVX2 + FMA and once for the baseline. */
#include "kernels_internal.h"
#include <math.h>
#include <pthread.h>
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
 * n rows of kp floats (kp a multiple of 16), out is kp x kp. Always inlined: each caller's target (AVX2 + FMA or
 * the baseline) compiles it. */
static inline __attribute__((always_inline)) void outer_sum_inline(const float *y, const float *z, size_t n, int32_t kp,
                                                                    float *out) {
    for (size_t r0 = 0; r0 < n; r0 += CKK_FOLD_CHUNK) {
        size_t r1 = r0 + CKK_FOLD_CHUNK < n ? r0 + CKK_FOLD_CHUNK : n;
        for (int32_t ta = 0; ta < kp; ta += 4) {
            for (int32_t tb = 0; tb <= ta + 3 && tb < kp; tb += 16) {
                v8f acc[4][2];
                for (int i = 0; i < 4; i++) {
                    acc[i][0] = ld8(out + (size_t)(ta + i) * kp + tb);
                    acc[i][1] = ld8(out + (size_t)(ta + i) * kp + tb + 8);
                }
                for (size_t r = r0; r < r1; r++) {
                    const float *yr = y + r * kp, *zr = z + r * kp;
                    v8f y0 = ld8(yr + tb), y1 = ld8(yr + tb + 8);
                    for (int i = 0; i < 4; i++) {
                        v8f s = (v8f){0} + zr[ta + i];
                        acc[i][0] += s * y0;
                        acc[i][1] += s * y1;
                    }
                }
                for (int i = 0; i < 4; i++) {
                    st8(out + (size_t)(ta + i) * kp + tb, acc[i][0]);
                    st8(out + (size_t)(ta + i) * kp + tb + 8, acc[i][1]);
                }
            }
        }
    }
}

static void outer_sum_portable(const float *y, const float *z, size_t n, int32_t kp, float *out) {
    outer_sum_inline(y, z, n, kp, out);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void outer_sum_avx2(const float *y, const float *z, size_t n, int32_t kp,
                                                               float *out) {
    outer_sum_inline(y, z, n, kp, out);
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

/* Factors A = L L' over A's lower triangle (row-major, k x k, overwritten by L) and writes 1 / L[j][j] to inv[j];
 * `panel` is 4 x k doubles of scratch. Right-looking in panels of 4 columns: the panel's 4 x 4 diagonal block is
 * factored entry by entry, the panel's rows below it a column at a time across all rows (panel[t][i] = L[i][j0 + t]:
 * contiguous, no chain from one row to the next; entry by entry, each waiting on the one before, this was 30% of the
 * fold at 10 history items), and every later row then loses the panel's rank-4 contribution in one vectorised pass,
 * one load and store of each entry per 4 columns (one column at a time, the update was bound by those stores).
 * Returns 0 when A is not positive definite. */
static inline __attribute__((always_inline)) int factor_inline(double *a, double *restrict inv, double *restrict panel,
                                                                int32_t k) {
    for (int32_t j0 = 0; j0 < k; j0 += 4) {
        const int32_t j1 = j0 + 4 < k ? j0 + 4 : k;
        for (int32_t i = j0; i < j1; i++) {
            double *ri = a + (size_t)i * k;
            for (int32_t j = j0; j <= i; j++) {
                const double *rj = a + (size_t)j * k;
                double s = ri[j];
                for (int32_t t = j0; t < j; t++) s -= ri[t] * rj[t];
                if (j == i) {
                    if (!(s > 0) || !isfinite(s)) return 0;
                    double l = sqrt(s);
                    ri[j] = l;
                    inv[j] = 1 / l;
                } else {
                    ri[j] = s * inv[j];
                }
            }
        }
        if (j1 >= k) break;
        for (int32_t t = 0; t < 4; t++) {
            double *restrict pt = panel + (size_t)t * k;
            if (j0 + t >= j1) {
                for (int32_t i = j1; i < k; i++) pt[i] = 0;
                continue;
            }
            for (int32_t i = j1; i < k; i++) pt[i] = a[(size_t)i * k + j0 + t];
            for (int32_t q = 0; q < t; q++) {
                const double *restrict pq = panel + (size_t)q * k;
                const double l = a[(size_t)(j0 + t) * k + j0 + q];
                for (int32_t i = j1; i < k; i++) pt[i] -= pq[i] * l;
            }
            const double iv = inv[j0 + t];
            for (int32_t i = j1; i < k; i++) a[(size_t)i * k + j0 + t] = pt[i] *= iv;
        }
        const double *restrict p0 = panel, *restrict p1 = p0 + k, *restrict p2 = p1 + k, *restrict p3 = p2 + k;
        for (int32_t i = j1; i < k; i++) {
            double *restrict ri = a + (size_t)i * k;
            const double l0 = p0[i], l1 = p1[i], l2 = p2[i], l3 = p3[i];
            for (int32_t c = j1; c <= i; c++) ri[c] -= (l0 * p0[c] + l1 * p1[c]) + (l2 * p2[c] + l3 * p3[c]);
        }
    }
    return 1;
}

/* sum x[i] y[i] for i < n in four independent lanes (a single running sum waits on every addition). */
static inline __attribute__((always_inline)) double dot(const double *x, const double *y, int32_t n) {
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

/* Row i of L: rows k apart in a k x k matrix (`packed` 0), or the lower triangle packed row after row (`packed` 1:
 * row i at i (i + 1) / 2), as the fold cache keeps it in half the bytes. The solves read the same values either way. */
static inline __attribute__((always_inline)) const double *lrow(const double *l, int32_t i, int32_t k, int packed) {
    return l + (packed ? (size_t)i * (size_t)(i + 1) / 2 : (size_t)i * k);
}

/* z_r = L^-1 z_r for the `count` vectors of k doubles at z (k apart), L from factor_inline: one pass over L's rows
 * with the vectors' steps interleaved, so each waits only on its own earlier entries. */
static inline __attribute__((always_inline)) void forward(const double *l, const double *inv, double *z, int32_t count,
                                                           int32_t k, int packed) {
    for (int32_t i = 0; i < k; i++) {
        const double *ri = lrow(l, i, k, packed);
        for (int32_t r = 0; r < count; r++) {
            double *zr = z + (size_t)r * k;
            zr[i] = (zr[i] - dot(ri, zr, i)) * inv[i];
        }
    }
}

/* x = L'^-1 x, reading L by rows: x[0..i) -= x[i] L[i][0..i), no chain between the steps of a row (reading L' by
 * columns, one chained subtraction per entry, was half the fold's time). */
static inline __attribute__((always_inline)) void backward(const double *l, const double *inv, double *x, int32_t k,
                                                            int packed) {
    for (int32_t i = k - 1; i >= 0; i--) {
        const double *restrict ri = lrow(l, i, k, packed);
        double xi = x[i] * inv[i];
        x[i] = xi;
        for (int32_t p = 0; p < i; p++) x[p] -= xi * ri[p];
    }
}

/* Changed weights up to this many are solved by the Woodbury identity on the history's factor instead of a second
 * factorization: m + 2 triangular solves (k^2 / 2 each), one back and an m x m system, against k^3 / 6. */
#define CKK_FOLD_LOW_RANK 16

/* e = (L L' + V C V')^-1 b2 - (L L')^-1 b1, through L^-1: with w1 = L^-1 b1, d = L^-1 (b2 - b1), W = L^-1 V and
 * S = C^-1 + W'W, e = L'^-1 (d - W S^-1 W' (w1 + d)). On entry w1 holds L^-1 b1, w holds b2 - b1 and the m rows of
 * V (k doubles each; m + 1 vectors, overwritten) and c the m weights (none 0); e gets the result. 0 when S is
 * singular (the caller then factors the whole matrix). Each vector's solve is the same arithmetic whether or not
 * others share its pass, so the history's half can be solved once and kept (ckk_fold_history). */
static inline __attribute__((always_inline)) int solve_low_rank(const double *l, const double *inv, const double *w1,
                                                                 double *w, const double *c, int32_t m, double *e,
                                                                 int32_t k, int packed) {
    double s[CKK_FOLD_LOW_RANK][CKK_FOLD_LOW_RANK + 1];
    forward(l, inv, w, m + 1, k, packed);
    const double *d = w, *v = w + k;
    for (int32_t i = 0; i < k; i++) e[i] = w1[i] + d[i];
    for (int32_t t = 0; t < m; t++) {
        const double *vt = v + (size_t)t * k;
        for (int32_t u = 0; u <= t; u++) s[t][u] = s[u][t] = dot(vt, v + (size_t)u * k, k);
        s[t][t] += 1 / c[t];
        s[t][m] = dot(vt, e, k);
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
    memcpy(e, d, (size_t)k * sizeof(double));
    for (int32_t t = 0; t < m; t++) {
        double q = s[t][m] / s[t][t];
        const double *vt = v + (size_t)t * k;
        for (int32_t i = 0; i < k; i++) e[i] -= q * vt[i];
    }
    backward(l, inv, e, k, packed);
    return 1;
}

/* A user's system for the `n` rows (k floats each) with confidence weights `weights`: A = gram + lambda I +
 * sum alpha w y y' over the rows with w > 0, into the lower triangle of `a` (k x k), and b = sum (1 + alpha w) y into
 * `b`. y and z (n x kp floats each) and p (kp x kp floats) are scratch. */
static inline __attribute__((always_inline)) void system_inline(const double *gram, int32_t k, double lambda,
                                                                 double alpha, const float *rows, const double *weights,
                                                                 size_t n, double *a, double *b, float *y, float *z,
                                                                 float *p) {
    const int32_t kp = (k + 15) & ~15;
    const size_t kd = (size_t)k;
    /* The partial starts at 0, and so do the rows' padding columns (kp > k); the rows' first k are copied in. */
    memset(p, 0, (size_t)kp * kp * sizeof(float));
    if (kp > k) {
        memset(y, 0, n * kp * sizeof(float));
        memset(z, 0, n * kp * sizeof(float));
    }
    memset(b, 0, kd * sizeof(double));
    size_t m = 0;
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + r * k;
        double cb = weights[r] > 0 ? 1 + alpha * weights[r] : 0;
        for (int32_t i = 0; i < k; i++) b[i] += cb * row[i];
        if (!(weights[r] > 0)) continue;
        float wr = (float)(alpha * weights[r]);
        memcpy(y + m * kp, row, kd * sizeof(float));
        for (int32_t i = 0; i < k; i++) z[m * kp + i] = wr * row[i];
        m++;
    }
    outer_sum_inline(y, z, m, kp, p);
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j <= i; j++)
            a[(size_t)i * k + j] = gram[(size_t)i * k + j] + (i == j ? lambda : 0) + p[(size_t)i * kp + j];
}

/* e = x_after - x_before on the history's factor (l, packed or not, 1 / diag(L) and w1 = L^-1 b_before) for the
 * rows among `m` whose weight the events change (b's change and the changes to A: c_t = alpha (after - before), none
 * when alpha is 0). `w` is (CKK_FOLD_LOW_RANK + 1) x k doubles of scratch, `c` CKK_FOLD_LOW_RANK. 1; 0 when the
 * low-rank system is singular; 2 when more than CKK_FOLD_LOW_RANK rows change A (both: factor A after the events). */
static inline __attribute__((always_inline)) int delta_inline(const double *l, const double *inv, const double *w1,
                                                               int packed, int32_t k, double alpha, const float *rows,
                                                               const double *before, const double *after, size_t m,
                                                               double *e, double *w, double *c) {
    const size_t kd = (size_t)k;
    memset(w, 0, kd * sizeof(double));
    int32_t t = 0;
    for (size_t r = 0; r < m; r++) {
        const float *row = rows + r * k;
        double cb = before[r] > 0 ? 1 + alpha * before[r] : 0, ca = after[r] > 0 ? 1 + alpha * after[r] : 0;
        if (ca != cb)
            for (int32_t i = 0; i < k; i++) w[i] += (ca - cb) * row[i];
        if (after[r] == before[r]) continue;
        double ct = alpha * (after[r] - before[r]);
        if (ct == 0) continue;
        if (t == CKK_FOLD_LOW_RANK) return 2;
        c[t] = ct;
        for (int32_t i = 0; i < k; i++) w[(1 + (size_t)t) * kd + i] = row[i];
        t++;
    }
    return solve_low_rank(l, inv, w1, w, c, t, e, k, packed);
}

/* out = u + e, when every value is finite as a float: 1, else 0 (out untouched). */
static inline __attribute__((always_inline)) int finish_inline(const float *u, const double *e, int32_t k, float *out) {
    for (int32_t i = 0; i < k; i++)
        if (!isfinite((float)((double)u[i] + e[i]))) return 0;
    for (int32_t i = 0; i < k; i++) out[i] = (float)((double)u[i] + e[i]);
    return 1;
}

/* Bytes of scratch the fold takes: y and z rows (n x kp floats each), two kp x kp float partials; a k x k system
 * (and a second for a second factorization), the inverse diagonal, the 4 x k panel, w1, the low-rank solve's
 * vectors, b before the events, x before them, e, b's change and the changes' weights. */
static size_t fold_scratch_bytes(int32_t k, size_t n) {
    const size_t kp = (size_t)((k + 15) & ~15), kd = (size_t)k;
    size_t floats = 2 * n * kp + 2 * kp * kp;
    size_t doubles = 2 * kd * kd + kd + 4 * kd + kd + (CKK_FOLD_LOW_RANK + 1) * kd + 4 * kd + n;
    return doubles * sizeof(double) + floats * sizeof(float);
}

/* The whole fold (see the header) in `block` (fold_scratch_bytes, 64-byte aligned), always inlined into one
 * function per target: the history's system factored, the events' change solved on it (delta_inline, as the two
 * halves do), or with more changes a second factorization after the events. */
static inline __attribute__((always_inline)) int fold_inline(const double *gram, int32_t k, double lambda, double alpha,
                                                              const float *rows, const double *before,
                                                              const double *after, size_t n, const float *u,
                                                              float *out, void *block) {
    const int32_t kp = (k + 15) & ~15;
    const size_t kk = (size_t)k * k, pp = (size_t)kp * kp, kd = (size_t)k;
    double *a = block, *a2 = a + kk, *inv = a2 + kk, *panel = inv + kd, *w1 = panel + 4 * kd;
    double *w = w1 + kd, *b1 = w + (CKK_FOLD_LOW_RANK + 1) * kd, *x = b1 + kd, *e = x + kd, *db = e + kd, *c = db + kd;
    float *y = (float *)(c + n), *z = y + n * kp, *p1 = z + n * kp, *p2 = p1 + pp;

    system_inline(gram, k, lambda, alpha, rows, before, n, a, b1, y, z, p1);
    if (!factor_inline(a, inv, panel, k)) return 0;
    memcpy(w1, b1, kd * sizeof(double));
    forward(a, inv, w1, 1, k, 0);
    if (delta_inline(a, inv, w1, 0, k, alpha, rows, before, after, n, e, w, c) == 1) return finish_inline(u, e, k, out);

    /* x1 = A^-1 b1 on the history's factor; then A and b after the events, factored anew: e = x2 - x1. */
    memcpy(x, w1, kd * sizeof(double));
    backward(a, inv, x, k, 0);
    memset(db, 0, kd * sizeof(double));
    size_t m = 0;
    for (size_t r = 0; r < n; r++) {
        const float *row = rows + r * k;
        double cb = before[r] > 0 ? 1 + alpha * before[r] : 0, ca = after[r] > 0 ? 1 + alpha * after[r] : 0;
        if (ca != cb)
            for (int32_t i = 0; i < k; i++) db[i] += (ca - cb) * row[i];
        if (after[r] == before[r]) continue;
        double ct = alpha * (after[r] - before[r]);
        if (ct == 0) continue;
        float wt = (float)ct;
        memcpy(y + m * kp, row, kd * sizeof(float));
        for (int32_t i = 0; i < k; i++) z[m * kp + i] = wt * row[i];
        m++;
    }
    memset(p2, 0, pp * sizeof(float));
    outer_sum_inline(y, z, m, kp, p2);
    for (int32_t i = 0; i < k; i++)
        for (int32_t j = 0; j <= i; j++)
            a2[(size_t)i * k + j] =
                gram[(size_t)i * k + j] + (i == j ? lambda : 0) + p1[(size_t)i * kp + j] + p2[(size_t)i * kp + j];
    if (!factor_inline(a2, inv, panel, k)) return 0;
    for (int32_t i = 0; i < k; i++) e[i] = b1[i] + db[i];
    forward(a2, inv, e, 1, k, 0);
    backward(a2, inv, e, k, 0);
    for (int32_t i = 0; i < k; i++) e[i] -= x[i];
    return finish_inline(u, e, k, out);
}

static int fold_portable(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                         const double *before, const double *after, size_t n, const float *u, float *out,
                         void *block) {
    return fold_inline(gram, k, lambda, alpha, rows, before, after, n, u, out, block);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int fold_avx2(const double *gram, int32_t k, double lambda, double alpha,
                                                         const float *rows, const double *before, const double *after,
                                                         size_t n, const float *u, float *out, void *block) {
    return fold_inline(gram, k, lambda, alpha, rows, before, after, n, u, out, block);
}
#endif

/* Each thread keeps its fold scratch from call to call, up to this size: the fold runs on a request's path, where
 * a fresh block per call spent about 10% of the fold in malloc and free. Larger blocks are allocated per call. */
#define CKK_FOLD_KEPT_SCRATCH (1u << 20)

struct fold_scratch {
    size_t size;
    void *memory;
};

static pthread_key_t fold_scratch_key;
static pthread_once_t fold_scratch_once = PTHREAD_ONCE_INIT;
static int fold_scratch_key_ok;

static void fold_scratch_release(void *p) {
    struct fold_scratch *s = p;
    free(s->memory);
    free(s);
}

static void fold_scratch_key_create(void) { fold_scratch_key_ok = pthread_key_create(&fold_scratch_key, fold_scratch_release) == 0; }

/* This thread's kept scratch of at least `bytes`, or NULL (then the caller allocates its own). */
static void *fold_scratch_kept(size_t bytes) {
    if (bytes > CKK_FOLD_KEPT_SCRATCH) return NULL;
    pthread_once(&fold_scratch_once, fold_scratch_key_create);
    if (!fold_scratch_key_ok) return NULL;
    struct fold_scratch *s = pthread_getspecific(fold_scratch_key);
    if (s && s->size >= bytes) return s->memory;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(fold_scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    free(s->memory);
    s->memory = NULL;
    s->size = 0;
    /* At least 64 KiB, so that histories growing a little do not reallocate each time. */
    size_t size = bytes < (64u << 10) ? (64u << 10) : bytes;
    if (posix_memalign(&s->memory, 64, size) != 0) {
        s->memory = NULL;
        return NULL;
    }
    s->size = size;
    return s->memory;
}

int ckk_least_squares_fold(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                           const double *before, const double *after, size_t n, const float *u, float *out) {
    size_t bytes = fold_scratch_bytes(k, n);
    void *own = NULL, *block = fold_scratch_kept(bytes);
    if (!block) {
        if (posix_memalign(&own, 64, bytes) != 0) return -1;
        block = own;
    }
    int ok;
#if defined(__x86_64__)
    if (ckk_supported_isa_mask() & (1 << CKK_ISA_AVX2))
        ok = fold_avx2(gram, k, lambda, alpha, rows, before, after, n, u, out, block);
    else
#endif
        ok = fold_portable(gram, k, lambda, alpha, rows, before, after, n, u, out, block);
    free(own);
    return ok;
}

/* The fold in two halves (header): the history's, once per user and model, and the events', per request. */

/* Scratch of the history's half: y and z rows (n x kp floats each), a kp x kp float partial, the 4 x k panel and the
 * k x k system. */
static size_t history_scratch_bytes(int32_t k, size_t n) {
    const size_t kp = (size_t)((k + 15) & ~15);
    return (2 * n * kp + kp * kp) * sizeof(float) + (4 * (size_t)k + (size_t)k * k) * sizeof(double);
}

/* state = L (its lower triangle packed, k (k + 1) / 2), 1 / diag(L) (k), L^-1 b (k) for the history rows `rows`
 * (k floats each) with weights `weights` (rows of weight 0 or less contribute nothing); fold_inline's arithmetic.
 * 0: not positive definite. */
static inline __attribute__((always_inline)) int history_inline(const double *gram, int32_t k, double lambda,
                                                                 double alpha, const float *rows,
                                                                 const double *weights, size_t n, double *state,
                                                                 void *block) {
    const int32_t kp = (k + 15) & ~15;
    const size_t pp = (size_t)kp * kp, kd = (size_t)k;
    double *packed = state, *inv = packed + kd * (kd + 1) / 2, *w1 = inv + kd;
    float *y = block, *z = y + n * kp, *p1 = z + n * kp;
    double *panel = (double *)(p1 + pp), *a = panel + 4 * kd;
    system_inline(gram, k, lambda, alpha, rows, weights, n, a, w1, y, z, p1);
    if (!factor_inline(a, inv, panel, k)) return 0;
    forward(a, inv, w1, 1, k, 0);
    for (int32_t i = 0; i < k; i++) memcpy(packed + (size_t)i * (size_t)(i + 1) / 2, a + (size_t)i * k, ((size_t)i + 1) * sizeof(double));
    return 1;
}

/* out = u + the events' change on `state` (read only) for the m changed rows; 2 when more than CKK_FOLD_LOW_RANK
 * of them change A (the caller then runs the whole fold), 0 when S is singular or the result not finite. */
static inline __attribute__((always_inline)) int events_inline(const double *state, int32_t k, double alpha,
                                                                const float *rows, const double *before,
                                                                const double *after, size_t m, const float *u,
                                                                float *out, double *block) {
    const size_t kd = (size_t)k;
    const double *l = state, *inv = l + kd * (kd + 1) / 2, *w1 = inv + kd;
    double *w = block, *e = w + (CKK_FOLD_LOW_RANK + 1) * kd, *c = e + kd;
    int status = delta_inline(l, inv, w1, 1, k, alpha, rows, before, after, m, e, w, c);
    return status == 1 ? finish_inline(u, e, k, out) : status;
}

static int history_portable(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                            const double *weights, size_t n, double *state, void *block) {
    return history_inline(gram, k, lambda, alpha, rows, weights, n, state, block);
}

static int events_portable(const double *state, int32_t k, double alpha, const float *rows, const double *before,
                           const double *after, size_t m, const float *u, float *out, double *block) {
    return events_inline(state, k, alpha, rows, before, after, m, u, out, block);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static int history_avx2(const double *gram, int32_t k, double lambda, double alpha,
                                                            const float *rows, const double *weights, size_t n,
                                                            double *state, void *block) {
    return history_inline(gram, k, lambda, alpha, rows, weights, n, state, block);
}

__attribute__((target("avx2,fma"))) static int events_avx2(const double *state, int32_t k, double alpha,
                                                           const float *rows, const double *before,
                                                           const double *after, size_t m, const float *u, float *out,
                                                           double *block) {
    return events_inline(state, k, alpha, rows, before, after, m, u, out, block);
}
#endif

int ckk_fold_history(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                     const double *weights, size_t n, double *state) {
    size_t bytes = history_scratch_bytes(k, n);
    void *own = NULL, *block = fold_scratch_kept(bytes);
    if (!block) {
        if (posix_memalign(&own, 64, bytes) != 0) return -1;
        block = own;
    }
    int ok;
#if defined(__x86_64__)
    if (ckk_supported_isa_mask() & (1 << CKK_ISA_AVX2))
        ok = history_avx2(gram, k, lambda, alpha, rows, weights, n, state, block);
    else
#endif
        ok = history_portable(gram, k, lambda, alpha, rows, weights, n, state, block);
    free(own);
    return ok;
}

int ckk_fold_events(const double *state, int32_t k, double alpha, const float *rows, const double *before,
                    const double *after, size_t m, const float *u, float *out) {
    /* The low-rank vectors, e and the weights: at most (16 + 2) x 128 + 16 doubles, on the stack. */
    double block[(CKK_FOLD_LOW_RANK + 2) * CKK_MAX_FOLD_DIMENSIONS + CKK_FOLD_LOW_RANK];
    if (k > CKK_MAX_FOLD_DIMENSIONS) return 0;
#if defined(__x86_64__)
    if (ckk_supported_isa_mask() & (1 << CKK_ISA_AVX2)) return events_avx2(state, k, alpha, rows, before, after, m, u, out, block);
#endif
    return events_portable(state, k, alpha, rows, before, after, m, u, out, block);
}
