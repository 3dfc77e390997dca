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
