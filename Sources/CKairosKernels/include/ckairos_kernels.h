#ifndef CKAIROS_KERNELS_H
#define CKAIROS_KERNELS_H

/*
 * Dot-product kernels over dense row-major matrices, one function table per ISA level.
 *
 * No CPU-specific compiler flags are used anywhere: SIMD functions carry per-function
 * `target` attributes and are only reachable through a table the runtime CPU check allows,
 * so the same binary runs (portable path) on any x86-64 and builds on other architectures.
 *
 * Encodings use the RowEncoding raw values (1 = float32, 2 = float16, 3 = int8 with one
 * float32 scale per row). Kernels never read past `cols` elements of a row.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CKK_ISA_PORTABLE = 0,
    CKK_ISA_AVX2 = 1,
    CKK_ISA_AVX512 = 2,
    CKK_ISA_COUNT = 3,
};

enum {
    CKK_ENC_F32 = 1,
    CKK_ENC_F16 = 2,
    CKK_ENC_I8 = 3,
    CKK_ENC_COUNT = 4, /* index 0 unused so the Swift raw value indexes directly */
};

/* Dot product of q[0..cols) with one row; `scale` multiplies the result (int8 rows; 1 otherwise). */
typedef float (*ckk_dot_fn)(const float *q, const void *row, float scale, int32_t cols);

/* out[i] = dot(q, row start+i) for i in [0, n); rows are `stride` bytes apart from `base`;
 * `scales` (int8 only, else ignored) is indexed by absolute row. */
typedef void (*ckk_scan_fn)(const float *q, const void *base, size_t stride, const float *scales,
                            size_t start, size_t n, int32_t cols, float *out);

/* out[i] = dot(q, row rows[i]) for i in [0, n), prefetching a few rows ahead. */
typedef void (*ckk_gather_fn)(const float *q, const void *base, size_t stride, const float *scales,
                              const int32_t *rows, size_t n, int32_t cols, float *out);

/* Writes the indices i < n with s[i] > t (NaN never passes) to idx in increasing order; returns their count.
 * idx must hold n entries. Used by top-k to skip a block's rows below the current threshold quickly. */
typedef size_t (*ckk_filter_gt_fn)(const float *s, size_t n, float t, uint32_t *idx);

typedef struct ckk_kernel_table {
    ckk_dot_fn dot[CKK_ENC_COUNT];
    ckk_scan_fn scan[CKK_ENC_COUNT];
    ckk_gather_fn gather[CKK_ENC_COUNT];
    ckk_filter_gt_fn filter_gt;
} ckk_kernel_table;

/* Bit mask of ISA levels this CPU (and OS) supports; bit CKK_ISA_PORTABLE is always set. */
int ckk_supported_isa_mask(void);

/* The table for `isa`, or NULL when isa is out of range or unsupported by this CPU. */
const ckk_kernel_table *ckk_table(int isa);

/* Hint the CPU to fetch the cache line at p (never faults, any address). Batched lookups issue these for every
 * element before touching any, so their cache misses overlap instead of queueing. */
static inline void ckk_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/* xxHash64 (XXH64, as specified by the xxHash project) of bytes[0..n) with `seed`. */
uint64_t ckk_xxh64(const void *bytes, size_t n, uint64_t seed);

/* The hash that places ids in the in-memory id table (wyhash's; not part of the file format). */
uint64_t ckk_id_hash(const void *bytes, size_t n);

/* An id -> row lookup over a model file's string table (its ids). The caller validates at load that `offsets`
 * holds count + 1 non-decreasing values ending at the blob's length. `entries` is a table the reader builds in
 * memory with ckk_id_index_build (the file's own slot section is not read): (mask + 1) 32-byte entries, each the
 * row + 1 (0 when empty) and the id's key, so a lookup of an id up to CKK_ID_INLINE_BYTES long touches one cache
 * line before the row instead of three (slot, offset, bytes). */
typedef struct ckk_id_index {
    const uint8_t *entries;  /* (mask + 1) * CKK_ID_ENTRY_BYTES, 32-byte aligned */
    uint64_t mask;           /* entry count - 1 (a power of two - 1, greater than count) */
    const uint32_t *offsets; /* little-endian: string i is blob[offsets[i] ..< offsets[i + 1]] */
    const uint8_t *blob;
    uint64_t count;          /* rows */
} ckk_id_index;

#define CKK_ID_ENTRY_BYTES 32
/* Ids up to this many bytes are held whole in their entry; longer ones hold a hash tag and are confirmed against
 * the string table. */
#define CKK_ID_INLINE_BYTES 27

/* Entries for a table of `count` ids: the smallest power of two above 1.5 x count (load factor <= 2/3). */
uint64_t ckk_id_index_capacity(uint64_t count);

/* Fills ix->entries (which must be (mask + 1) * CKK_ID_ENTRY_BYTES zeroed, writable bytes, mask + 1 greater than
 * count) from the string table. Home entry ckk_id_hash(id) & mask, linear probing. When an id occurs twice, the
 * lower row wins. Returns how many rows were duplicates. */
uint64_t ckk_id_index_build(const ckk_id_index *ix);

/* The row of the id id[0..len), or -1 when unknown. */
int64_t ckk_id_row(const ckk_id_index *ix, const uint8_t *id, size_t len);

/* Looks up n ids stored back to back in packed[0..packed_len), each a little-endian u16 byte count then its
 * bytes, writing each row (or -1 when unknown) to rows[0..n). An entry that overruns the buffer and every id after
 * it are unknown. Ids go in blocks whose cache misses overlap. Unless then_base is NULL, each found row's
 * then_bytes at then_base + row * then_stride are prefetched (the caller's next read of it overlaps the lookup). */
void ckk_id_rows_packed(const ckk_id_index *ix, const uint8_t *packed, size_t packed_len, size_t n,
                        int32_t *rows, const void *then_base, size_t then_stride, size_t then_bytes);

/* --- Bounded scans (TOPK): an integer pass over an int8 copy of the rows bounds every row's score from above, and
 * only rows whose bound beats the current k-th best are scored exactly, by the same operations as the scan of the
 * matrix's own encoding (so the top k, scores and ties, are identical to an exact scan). */

/* Lays out an int8 matrix (rows x cols, cols a multiple of 4; for float matrices a quantized copy) for bounded
 * scans: `blocked` gets the rows in blocks of 16, each block as cols / 4 groups of 64 bytes (row 0's 4 bytes of the
 * group, row 1's, ...), so one instruction takes a 4-byte group of 16 rows; it must hold ceil(rows / 16) * cols *
 * 16 zeroed bytes. corr[r] = 128 x the sum of row r's values, l1[r] = the sum of their magnitudes. */
void ckk_i8_bound_tables(const void *base, size_t stride, size_t rows, int32_t cols, int8_t *blocked,
                         int32_t *corr, int32_t *l1);

/* Quantizes float rows (enc float32 or float16) for bounded scans: codes[r * cols + j] = round(v / scale[r]) with
 * scale[r] = max|v| / 127 (1 for a zero row), err[r] >= the largest |v - scale[r] * code| plus room for float
 * rounding. Returns 0, having stopped, at a row holding a NaN or infinity; else 1. */
int ckk_quantize_rows(const void *base, size_t stride, size_t rows, int32_t cols, int enc, int8_t *codes,
                      float *scale, float *err);

/* Quantizes the query for a bounded scan: qq[j] = round(q[j] / s) + 128 with s = max|q| / 127, the returned scale.
 * *slack bounds |q[j] - s * (qq[j] - 128)| with room for the exact kernel's rounding; *l1 is sum |q[j]| (rounded
 * up). Returns 0 (use the exact scan) when q is all zeros or holds a NaN or infinity. */
float ckk_quantize_query_u8(const float *q, int32_t cols, uint8_t *qq, float *slack, float *l1);

/* out[i] for rows start + i, i < n (start a multiple of 16): the exact score of row start + i in encoding `enc`
 * (plus add[row] when add is not NULL) where the row's upper bound exceeds `threshold`, else -infinity (such a row
 * cannot beat the threshold). The bound of row r is row_scale[r] * (qs * (codes . qq - corr[r]) + slack * l1[r])
 * + q_l1 * row_err[r], where row r is row_scale[r] * codes + an error of at most row_err[r] per element. `scales`
 * are the matrix's own (int8 only). */
typedef void (*ckk_scan_bounded_fn)(const float *q, const uint8_t *qq, float qs, float slack, float q_l1,
                                    const int8_t *blocked, const int32_t *corr, const int32_t *l1,
                                    const float *row_scale, const float *row_err, int enc, const void *base,
                                    size_t stride, const float *scales, const float *add, size_t start, size_t n,
                                    int32_t cols, float threshold, float *out);

/* The bounded scan at ISA level `isa`, or NULL when there is none (it needs AVX-512 VNNI). */
ckk_scan_bounded_fn ckk_scan_bounded(int isa);

/* float32 -> binary16 with round-to-nearest-even (IEEE, like Swift's Float16(_:)) using F16C.
 * Only call when the avx2 level is supported (it implies F16C). */
void ckk_f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n);

/* dst[c] = clamp(round_half_away_from_zero(src[c] / scale), -127, 127) for c < cols (like Swift's
 * `(x / scale).rounded()`); src must be finite. Plain C the compiler vectorizes. */
void ckk_quantize_i8(const float *src, int8_t *dst, size_t cols, float scale);

/* The first of `rows` rows (enc float32 or float16, `stride` bytes apart, 4-byte aligned) holding a NaN, an
 * infinity or a value of magnitude above `limit` (float16: NaN or infinity only), or -1. Plain C the compiler
 * vectorizes: it reads every factor of a model at load. */
int64_t ckk_first_row_beyond(const void *base, size_t stride, size_t rows, int32_t cols, int enc, float limit);

/* The least-squares real-time fold (KairosKernels/LeastSquaresFold.swift): with the Gram `gram` (k x k doubles,
 * row-major; the lower triangle is read), `lambda` and `alpha`, solves the weighted-ALS user system over the n
 * rows (k floats each) with confidence weights `before`, and again with `after`, and writes u + x_after - x_before
 * to `out` (k floats). Returns 1; 0 when a system is not positive definite or a result not finite (out untouched);
 * -1 when scratch memory could not be had. k at most 128. */
/* total[i][j] += sum_r rows[r][i] rows[r][j] for j <= i (the lower triangle of the Gram, k x k doubles, row-major)
 * over n rows of k floats: float partial sums per 256 rows, added into the doubles. */
void ckk_gram_accumulate(const float *rows, size_t n, int32_t k, double *total);

int ckk_least_squares_fold(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                           const double *before, const double *after, size_t n, const float *u, float *out);

/* The fold in two halves, with the same arithmetic as ckk_least_squares_fold (so the same bits). The history's:
 * for the n history rows with weights `weights` (the fold's `before`), writes k x k + 2 k doubles of `state` (the
 * factor of the system before any event); returns 1, 0 when the system is not positive definite, -1 without
 * scratch memory. The events': for the m rows whose weight the events change (before != after, in the fold's
 * order), writes u + x_after - x_before to `out` from `state` (read only, so one state serves many threads);
 * returns 1, 0 when the low-rank system is singular or a result not finite, 2 when more than 16 rows change the
 * system (both: run ckk_least_squares_fold instead). k at most 128. */
int ckk_fold_history(const double *gram, int32_t k, double lambda, double alpha, const float *rows,
                     const double *weights, size_t n, double *state);
int ckk_fold_events(const double *state, int32_t k, double alpha, const float *rows, const double *before,
                    const double *after, size_t m, const float *u, float *out);

#ifdef __cplusplus
}
#endif
#endif
