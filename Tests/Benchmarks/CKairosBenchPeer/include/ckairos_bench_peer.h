#ifndef CKAIROS_BENCH_PEER_H
#define CKAIROS_BENCH_PEER_H

/*
 * The C peer of the kernel benchmark: a streaming vectorized sum of a float buffer, which reads every byte once
 * and does almost no work per byte, so its time is the memory-bandwidth limit for a full scan of the same bytes.
 * Plus the few libc-level helpers the benchmark needs (clock, optimization barrier, CPU model, date).
 *
 * No build flags: the vector variants use __attribute__((target(...))) and are picked once at run time with
 * __builtin_cpu_supports, with a scalar fallback for any other CPU.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sum of the `count` floats at `values` (any alignment), with the fastest variant this CPU supports. */
float ckairos_bench_stream_sum_f32(const float *values, size_t count);

/* Name of the variant ckairos_bench_stream_sum_f32 runs: "avx512f", "avx2" or "scalar". */
const char *ckairos_bench_stream_sum_isa(void);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t ckairos_bench_now_ns(void);

/* Optimization barrier: the compiler must assume the bytes at `p` are read and may have been written. */
void ckairos_bench_escape(const void *p);

/* Copies the first "model name" of /proc/cpuinfo (or "unknown") into `out`, NUL-terminated. */
void ckairos_bench_cpu_model(char *out, size_t capacity);

/* Copies the current UTC time as "YYYY-MM-DDTHH:MM:SSZ" into `out`, NUL-terminated. */
void ckairos_bench_utc_date(char *out, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif /* CKAIROS_BENCH_PEER_H */
