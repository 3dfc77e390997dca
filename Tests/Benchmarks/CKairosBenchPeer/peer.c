#include "ckairos_bench_peer.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CKAIROS_BENCH_X86 1
#endif

/* Eight independent accumulators everywhere: one chain of dependent adds would be bound by add latency (4 cycles
 * per vector), not by memory; eight in flight keep the loads, not the adds, the bottleneck. */

static float stream_sum_scalar(const float *p, size_t n) {
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 += p[i + 0];
        a1 += p[i + 1];
        a2 += p[i + 2];
        a3 += p[i + 3];
        a4 += p[i + 4];
        a5 += p[i + 5];
        a6 += p[i + 6];
        a7 += p[i + 7];
    }
    for (; i < n; i++) a0 += p[i];
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

#ifdef CKAIROS_BENCH_X86

__attribute__((target("avx2"))) static float stream_sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) { /* 256 bytes = 4 cache lines per iteration */
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i + 0));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
        a4 = _mm256_add_ps(a4, _mm256_loadu_ps(p + i + 32));
        a5 = _mm256_add_ps(a5, _mm256_loadu_ps(p + i + 40));
        a6 = _mm256_add_ps(a6, _mm256_loadu_ps(p + i + 48));
        a7 = _mm256_add_ps(a7, _mm256_loadu_ps(p + i + 56));
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float total = _mm_cvtss_f32(h);
    for (; i < n; i++) total += p[i];
    return total;
}

__attribute__((target("avx512f"))) static float stream_sum_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) { /* 512 bytes = 8 cache lines per iteration */
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i + 0));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
        a4 = _mm512_add_ps(a4, _mm512_loadu_ps(p + i + 64));
        a5 = _mm512_add_ps(a5, _mm512_loadu_ps(p + i + 80));
        a6 = _mm512_add_ps(a6, _mm512_loadu_ps(p + i + 96));
        a7 = _mm512_add_ps(a7, _mm512_loadu_ps(p + i + 112));
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    float total = _mm512_reduce_add_ps(s);
    for (; i < n; i++) total += p[i];
    return total;
}

#endif /* CKAIROS_BENCH_X86 */

typedef float (*stream_sum_fn)(const float *, size_t);

static stream_sum_fn chosen_fn;
static const char *chosen_name;

static void choose(void) {
    if (chosen_fn) return;
#ifdef CKAIROS_BENCH_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        chosen_name = "avx512f";
        chosen_fn = stream_sum_avx512;
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        chosen_name = "avx2";
        chosen_fn = stream_sum_avx2;
        return;
    }
#endif
    chosen_name = "scalar";
    chosen_fn = stream_sum_scalar;
}

float ckairos_bench_stream_sum_f32(const float *values, size_t count) {
    choose();
    return chosen_fn(values, count);
}

const char *ckairos_bench_stream_sum_isa(void) {
    choose();
    return chosen_name;
}

uint64_t ckairos_bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void ckairos_bench_escape(const void *p) {
    __asm__ volatile("" : : "g"(p) : "memory");
}

void ckairos_bench_cpu_model(char *out, size_t capacity) {
    if (capacity == 0) return;
    snprintf(out, capacity, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t') colon++;
        snprintf(out, capacity, "%s", colon);
        size_t len = strlen(out);
        while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' ')) out[--len] = 0;
        break;
    }
    fclose(f);
}

void ckairos_bench_utc_date(char *out, size_t capacity) {
    if (capacity == 0) return;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    if (strftime(out, capacity, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) out[0] = 0;
}
