/* Runtime ISA detection and the per-level function tables. Tables are immutable; callers pick one
 * explicitly, so several levels can run side by side in one process (tests run them all). */
#include "kernels_internal.h"

#define CKK_TABLE(SUFFIX, I8Q)                                                                          \
    {                                                                                                   \
        .dot = {NULL, ckk_dot_f32_##SUFFIX, ckk_dot_f16_##SUFFIX, ckk_dot_i8_##SUFFIX},                 \
        .scan = {NULL, ckk_scan_f32_##SUFFIX, ckk_scan_f16_##SUFFIX, ckk_scan_i8_##SUFFIX},             \
        .gather = {NULL, ckk_gather_f32_##SUFFIX, ckk_gather_f16_##SUFFIX, ckk_gather_i8_##SUFFIX},     \
        .scan_i8q = I8Q,                                                                                \
    }

static const ckk_kernel_table tables_plain[CKK_ISA_COUNT] = {
    CKK_TABLE(portable, ckk_scan_i8q_portable),
#if defined(__x86_64__)
    CKK_TABLE(avx2, ckk_scan_i8q_portable),
    CKK_TABLE(avx512, ckk_scan_i8q_portable),
#else
    CKK_TABLE(portable, ckk_scan_i8q_portable),
    CKK_TABLE(portable, ckk_scan_i8q_portable),
#endif
};

#if defined(__x86_64__)
/* The avx512 level on a CPU with VNNI: same exact kernels, integer scan_i8q. */
static const ckk_kernel_table table_avx512_vnni = CKK_TABLE(avx512, ckk_scan_i8q_vnni);
#endif

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

static int detect_vnni(void) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    __builtin_cpu_init();
    return (detect_mask() & (1 << CKK_ISA_AVX512)) && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/* Cached after the first call; a race only recomputes the same value. */
static volatile int cached_mask = -1;
static volatile int cached_vnni = -1;

int ckk_supported_isa_mask(void) {
    int m = cached_mask;
    if (m < 0) cached_mask = m = detect_mask();
    return m;
}

int ckk_has_vnni(void) {
    int v = cached_vnni;
    if (v < 0) cached_vnni = v = detect_vnni();
    return v;
}

const ckk_kernel_table *ckk_table(int isa) {
    if (isa < 0 || isa >= CKK_ISA_COUNT || !(ckk_supported_isa_mask() & (1 << isa))) return NULL;
#if defined(__x86_64__)
    if (isa == CKK_ISA_AVX512 && ckk_has_vnni()) return &table_avx512_vnni;
#endif
    return &tables_plain[isa];
}
