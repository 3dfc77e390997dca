/* Runtime ISA detection and the per-level function tables. Tables are immutable; callers pick one
 * explicitly, so several levels can run side by side in one process (tests run them all). */
#include "kernels_internal.h"
#include <stdatomic.h>

#define CKK_TABLE(SUFFIX)                                                                               \
    {                                                                                                   \
        .dot = {NULL, ckk_dot_f32_##SUFFIX, ckk_dot_f16_##SUFFIX, ckk_dot_i8_##SUFFIX},                 \
        .scan = {NULL, ckk_scan_f32_##SUFFIX, ckk_scan_f16_##SUFFIX, ckk_scan_i8_##SUFFIX},             \
        .gather = {NULL, ckk_gather_f32_##SUFFIX, ckk_gather_f16_##SUFFIX, ckk_gather_i8_##SUFFIX},     \
        .filter_gt = ckk_filter_gt_##SUFFIX,                                                            \
    }

static const ckk_kernel_table tables[CKK_ISA_COUNT] = {
    CKK_TABLE(portable),
#if defined(__x86_64__)
    CKK_TABLE(avx2),
    CKK_TABLE(avx512),
#else
    CKK_TABLE(portable),
    CKK_TABLE(portable),
#endif
};

static int detect_mask(void) {
    int mask = 1 << CKK_ISA_PORTABLE;
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    /* __builtin_cpu_supports also requires OS support (XCR0) for the AVX/AVX-512 register state. */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        mask |= 1 << CKK_ISA_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl"))
            mask |= 1 << CKK_ISA_AVX512;
    }
#endif
    return mask;
}

/* Cached after the first call; concurrent first calls only compute the same value twice. */
static _Atomic int cached_mask = -1;

int ckk_supported_isa_mask(void) {
    int m = atomic_load_explicit(&cached_mask, memory_order_relaxed);
    if (m < 0) {
        m = detect_mask();
        atomic_store_explicit(&cached_mask, m, memory_order_relaxed);
    }
    return m;
}

const ckk_kernel_table *ckk_table(int isa) {
    if (isa < 0 || isa >= CKK_ISA_COUNT || !(ckk_supported_isa_mask() & (1 << isa))) return NULL;
    return &tables[isa];
}
