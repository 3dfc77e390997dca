#ifndef CKAIROS_TRAINER_KERNELS_H
#define CKAIROS_TRAINER_KERNELS_H
#include <stdint.h>

/* Instruction-set levels of the trainer's conjugate-gradient solver. */
enum { CKT_ISA_PORTABLE = 0, CKT_ISA_AVX2 = 1, CKT_ISA_AVX512 = 2 };

/* The best level this CPU (and OS) supports; detected once. */
int ckt_best_isa(void);

/* Conjugate-gradient solve of rows [begin, end) of X for weighted ALS (Hu-Koren-Volinsky):
 *   (G + sum_i w_i y_i y_i^T) x_u = sum_i (1 + w_i) y_i,  G = Y^T Y + lambda I (stride x stride, row-major)
 * warm-started from x_u, `steps` CG steps. X, Y rows hold `stride` floats (a multiple of 16, padding lanes 0).
 * Row u's entries are indices/values[indptr[u] ..< indptr[u+1]], values w = alpha * r (confidence - 1).
 * `isa` must be <= ckt_best_isa(); each row only reads Y, G and its own entries, so disjoint ranges may run
 * concurrently. */
void ckt_cg_solve(int isa, float *X, const float *Y, int stride, const float *G, const int64_t *indptr,
                  const int32_t *indices, const float *values, int64_t begin, int64_t end, int steps);

/* Adds rows [lo, hi) of Y (`stride` floats each, a multiple of 16) into G = Y^T Y (stride x stride, row-major): for
 * each row in order, G[a][j] += y[a] * y[j] for j from a's 16-column chunk on (the upper block triangle; the caller
 * mirrors it), rows with y[a] == 0 skipped. Products and sums are rounded separately, so every level gives the same
 * bits. `isa` is capped at ckt_best_isa(). */
void ckt_gram_add(int isa, float *G, const float *Y, int stride, int64_t lo, int64_t hi);

/* Asks for the cache line holding `p` ahead of its read (ingest's id lookups, batched per read chunk). */
static inline void ckt_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/* Hands freed heap memory back to the system (glibc's malloc_trim; nothing elsewhere). */
void ckt_release_free_memory(void);

/* What `path` is: CKT_PATH_NONE (stat fails), CKT_PATH_FILE (regular), CKT_PATH_DIR or CKT_PATH_OTHER; its size in
 * bytes goes to `*size` when `size` is not null. In C because Swift's view of `struct stat` depends on which module
 * owns <sys/stat.h> in a given build. */
enum { CKT_PATH_NONE = 0, CKT_PATH_FILE = 1, CKT_PATH_DIR = 2, CKT_PATH_OTHER = 3 };
int ckt_path_kind(const char *path, int64_t *size);

#endif
