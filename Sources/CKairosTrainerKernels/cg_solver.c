/* Weighted-ALS conjugate-gradient row solver, compiled three times (portable, AVX2+FMA, AVX-512) from one body and
 * chosen at run time: no CPU-specific build flags, so the binary runs on any x86-64 (same pattern as CKairosKernels).
 * Float reductions are written with explicit 16-lane partial sums so the compiler vectorizes them without
 * -ffast-math, and so the summation order (hence the result) is fixed for a given level. */
#include "ckairos_trainer_kernels.h"
#include <stdatomic.h>

#define LANES 16

/* dot of two stride-long rows; stride is a multiple of 16. */
#define CKT_DOT(a, b, stride, out)                                                                                \
    do {                                                                                                          \
        float acc_[LANES] = {0};                                                                                  \
        for (int c_ = 0; c_ < (stride); c_ += LANES)                                                              \
            for (int l_ = 0; l_ < LANES; l_++) acc_[l_] += (a)[c_ + l_] * (b)[c_ + l_];                           \
        /* Tree reduction: short dependency chains and a fixed order. */                                          \
        for (int l_ = 0; l_ < 8; l_++) acc_[l_] += acc_[l_ + 8];                                                  \
        for (int l_ = 0; l_ < 4; l_++) acc_[l_] += acc_[l_ + 4];                                                  \
        (out) = (acc_[0] + acc_[2]) + (acc_[1] + acc_[3]);                                                        \
    } while (0)

#define CKT_DEFINE_SOLVER(SUFFIX, ATTR)                                                                            \
    ATTR static void ckt_cg_solve_##SUFFIX(float *X, const float *Y, int stride, const float *G,                 \
                                           const int64_t *indptr, const int32_t *indices, const float *values,  \
                                           int64_t begin, int64_t end, int steps) {                              \
        float r[1024] __attribute__((aligned(64)));                                                              \
        float p[1024] __attribute__((aligned(64)));                                                              \
        float ap[1024] __attribute__((aligned(64)));                                                             \
        for (int64_t u = begin; u < end; u++) {                                                                  \
            float *restrict x = X + u * stride;                                                                  \
            const int64_t lo = indptr[u], hi = indptr[u + 1];                                                    \
            /* r = b - A x = sum (1 + w - w (y.x)) y - G x */                                                    \
            for (int j = 0; j < stride; j++) r[j] = 0;                                                           \
            for (int a = 0; a < stride; a++) {                                                                   \
                const float s = -x[a];                                                                           \
                const float *restrict g = G + (int64_t)a * stride;                                               \
                for (int j = 0; j < stride; j++) r[j] += s * g[j];                                               \
            }                                                                                                    \
            for (int64_t e = lo; e < hi; e++) {                                                                  \
                const float *restrict y = Y + (int64_t)indices[e] * stride;                                      \
                const float w = values[e];                                                                       \
                float d;                                                                                         \
                CKT_DOT(y, x, stride, d);                                                                        \
                const float coef = 1 + w - w * d;                                                                \
                for (int j = 0; j < stride; j++) r[j] += coef * y[j];                                            \
            }                                                                                                    \
            for (int j = 0; j < stride; j++) p[j] = r[j];                                                        \
            float rs;                                                                                            \
            CKT_DOT(r, r, stride, rs);                                                                           \
            for (int it = 0; it < steps; it++) {                                                                 \
                if (rs < 1e-20f) break;                                                                          \
                for (int j = 0; j < stride; j++) ap[j] = 0;                                                      \
                for (int a = 0; a < stride; a++) {                                                               \
                    const float s = p[a];                                                                        \
                    const float *restrict g = G + (int64_t)a * stride;                                           \
                    for (int j = 0; j < stride; j++) ap[j] += s * g[j];                                          \
                }                                                                                                \
                for (int64_t e = lo; e < hi; e++) {                                                              \
                    const float *restrict y = Y + (int64_t)indices[e] * stride;                                  \
                    float d;                                                                                     \
                    CKT_DOT(y, p, stride, d);                                                                    \
                    const float coef = values[e] * d;                                                            \
                    for (int j = 0; j < stride; j++) ap[j] += coef * y[j];                                       \
                }                                                                                                \
                float pap;                                                                                       \
                CKT_DOT(p, ap, stride, pap);                                                                     \
                if (!(pap > 0)) break;                                                                           \
                const float alpha = rs / pap;                                                                    \
                for (int j = 0; j < stride; j++) {                                                               \
                    x[j] += alpha * p[j];                                                                        \
                    r[j] -= alpha * ap[j];                                                                       \
                }                                                                                                \
                float next;                                                                                      \
                CKT_DOT(r, r, stride, next);                                                                     \
                const float beta = next / rs;                                                                    \
                for (int j = 0; j < stride; j++) p[j] = r[j] + beta * p[j];                                      \
                rs = next;                                                                                       \
            }                                                                                                    \
        }                                                                                                        \
    }

CKT_DEFINE_SOLVER(portable, )
#if defined(__x86_64__)
CKT_DEFINE_SOLVER(avx2, __attribute__((target("avx2,fma"))))
CKT_DEFINE_SOLVER(avx512, __attribute__((target("avx512f,avx512vl,avx2,fma"))))
#endif

/* Y^T Y, upper block triangle, added row by row into G. Products and sums are rounded one by one (no fused
 * multiply-add), and each entry adds the rows in order, skipping rows whose factor `a` is 0: the bits are those of
 * the Swift loop this replaced, at every level. Rows go in blocks that stay in L1 while every `a` passes over them,
 * which changes no entry's order.
 * At 64 factors, four rows of G (a..a+3, one chunk's `from`) are summed in registers over a block of rows: 16
 * independent chains instead of one stored-and-reloaded row of G per Y row, whose store-to-load latency bounded the
 * plain loop. `from` is a literal at each call so the loops unroll. */
#define CKT_GRAM64_GROUP(G, Y, A, FROM, R0, R1)                                                                    \
    do {                                                                                                          \
        float acc_[4][64] __attribute__((aligned(64)));                                                           \
        for (int i_ = 0; i_ < 4; i_++)                                                                            \
            for (int j_ = (FROM); j_ < 64; j_++) acc_[i_][j_] = (G)[((A) + i_) * 64 + j_];                        \
        for (int64_t r_ = (R0); r_ < (R1); r_++) {                                                                \
            const float *restrict y_ = (Y) + r_ * 64;                                                             \
            for (int i_ = 0; i_ < 4; i_++) {                                                                      \
                const float s_ = y_[(A) + i_];                                                                    \
                if (s_ == 0) continue;                                                                            \
                for (int j_ = (FROM); j_ < 64; j_++) acc_[i_][j_] = acc_[i_][j_] + s_ * y_[j_];                   \
            }                                                                                                     \
        }                                                                                                         \
        for (int i_ = 0; i_ < 4; i_++)                                                                            \
            for (int j_ = (FROM); j_ < 64; j_++) (G)[((A) + i_) * 64 + j_] = acc_[i_][j_];                        \
    } while (0)

#define CKT_DEFINE_GRAM(SUFFIX, ATTR)                                                                              \
    ATTR static void ckt_gram_add_##SUFFIX(float *restrict G, const float *restrict Y, int stride, int64_t lo,    \
                                           int64_t hi) {                                                         \
        _Pragma("clang fp contract(off)");                                                                       \
        if (stride == 64) {                                                                                      \
            for (int64_t r0 = lo; r0 < hi; r0 += 256) {                                                          \
                const int64_t r1 = r0 + 256 < hi ? r0 + 256 : hi;                                                \
                for (int a = 0; a < 16; a += 4) CKT_GRAM64_GROUP(G, Y, a, 0, r0, r1);                            \
                for (int a = 16; a < 32; a += 4) CKT_GRAM64_GROUP(G, Y, a, 16, r0, r1);                          \
                for (int a = 32; a < 48; a += 4) CKT_GRAM64_GROUP(G, Y, a, 32, r0, r1);                          \
                for (int a = 48; a < 64; a += 4) CKT_GRAM64_GROUP(G, Y, a, 48, r0, r1);                          \
            }                                                                                                    \
            return;                                                                                              \
        }                                                                                                        \
        const int64_t block = stride <= 64 ? 64 : 16;                                                            \
        for (int64_t r0 = lo; r0 < hi; r0 += block) {                                                            \
            const int64_t r1 = r0 + block < hi ? r0 + block : hi;                                                \
            for (int a = 0; a < stride; a++) {                                                                   \
                float *restrict g = G + (int64_t)a * stride;                                                     \
                const int from = a / LANES * LANES;                                                              \
                for (int64_t r = r0; r < r1; r++) {                                                              \
                    const float *restrict y = Y + r * stride;                                                    \
                    const float s = y[a];                                                                        \
                    if (s == 0) continue;                                                                        \
                    for (int j = from; j < stride; j++) g[j] = g[j] + s * y[j];                                  \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }

CKT_DEFINE_GRAM(portable, )
#if defined(__x86_64__)
CKT_DEFINE_GRAM(avx2, __attribute__((target("avx2,fma"))))
CKT_DEFINE_GRAM(avx512, __attribute__((target("avx512f,avx512vl,avx2,fma"))))
#endif

static int detect(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return CKT_ISA_AVX512;
        return CKT_ISA_AVX2;
    }
#endif
    return CKT_ISA_PORTABLE;
}

static _Atomic int cached = -1;

int ckt_best_isa(void) {
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = detect();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

void ckt_cg_solve(int isa, float *X, const float *Y, int stride, const float *G, const int64_t *indptr,
                  const int32_t *indices, const float *values, int64_t begin, int64_t end, int steps) {
    if (stride <= 0 || stride > 1024 || stride % LANES != 0) return;
    if (isa > ckt_best_isa()) isa = ckt_best_isa();
#if defined(__x86_64__)
    if (isa == CKT_ISA_AVX512) {
        ckt_cg_solve_avx512(X, Y, stride, G, indptr, indices, values, begin, end, steps);
        return;
    }
    if (isa == CKT_ISA_AVX2) {
        ckt_cg_solve_avx2(X, Y, stride, G, indptr, indices, values, begin, end, steps);
        return;
    }
#endif
    ckt_cg_solve_portable(X, Y, stride, G, indptr, indices, values, begin, end, steps);
}

void ckt_gram_add(int isa, float *G, const float *Y, int stride, int64_t lo, int64_t hi) {
    if (stride <= 0 || stride > 1024 || stride % LANES != 0) return;
    if (isa > ckt_best_isa()) isa = ckt_best_isa();
#if defined(__x86_64__)
    if (isa == CKT_ISA_AVX512) {
        ckt_gram_add_avx512(G, Y, stride, lo, hi);
        return;
    }
    if (isa == CKT_ISA_AVX2) {
        ckt_gram_add_avx2(G, Y, stride, lo, hi);
        return;
    }
#endif
    ckt_gram_add_portable(G, Y, stride, lo, hi);
}
