/* xxHash64 and the id -> row lookup over a model file's ids (string table layout in proto-spec/MODEL_FORMAT.md).
 *
 * In C because a SCORE looks up every candidate id: the Swift batched lookup spent about 310 instructions per id
 * (hash, probe, compare); the C one about 200 including the row prefetches, with no runtime calls between, and
 * about 154 since it hashes with wyhash's body and builds keys without a memcpy call (callgrind, 100-candidate
 * SCORE). The table is built in memory at load rather than read from the file's slot section: with the id's bytes
 * in its entry, a lookup waits on one cache miss instead of three. */

#include "kernels_internal.h"
#include <string.h>

static inline uint64_t load64le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t load32le(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint16_t load16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xxh_round(uint64_t acc, uint64_t input) { return rotl64(acc + input * P2, 31) * P1; }
static inline uint64_t xxh_merge(uint64_t acc, uint64_t val) { return (acc ^ xxh_round(0, val)) * P1 + P4; }

/* Inlined into the id lookups: for a 10-byte id the call itself was a third of the hash's instructions. */
static inline __attribute__((always_inline)) uint64_t xxh64(const void *bytes, size_t n, uint64_t seed) {
    const uint8_t *p = (const uint8_t *)bytes;
    const uint8_t *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = xxh_round(v1, load64le(p));
            v2 = xxh_round(v2, load64le(p + 8));
            v3 = xxh_round(v3, load64le(p + 16));
            v4 = xxh_round(v4, load64le(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = xxh_merge(h, v1);
        h = xxh_merge(h, v2);
        h = xxh_merge(h, v3);
        h = xxh_merge(h, v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)n;
    while (p + 8 <= end) {
        h ^= xxh_round(0, load64le(p));
        h = rotl64(h, 27) * P1 + P4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)load32le(p) * P1;
        h = rotl64(h, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl64(h, 11) * P1;
        p++;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t ckk_xxh64(const void *bytes, size_t n, uint64_t seed) { return xxh64(bytes, n, seed); }

/* The in-memory table's hash. Not the file index's XXH64: the table is built at load, so any well-mixed hash will
 * do, and the lookups hash every candidate id of every SCORE. It is wyhash's (final v4) body with a fixed seed:
 * ids up to 16 bytes take two loads and two 64x64->128 multiplies (XXH64 of a 10-byte id: a chain of five). */
static inline uint64_t mum_fold(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)(r >> 64) ^ (uint64_t)r;
}

static inline __attribute__((always_inline)) uint64_t id_hash(const uint8_t *p, size_t n) {
    const uint64_t s0 = 0xa0761d6478bd642fULL, s1 = 0xe7037ed1a0b428dbULL, s2 = 0x8ebc6af09c88c6e3ULL;
    uint64_t seed = s0, a, b;
    if (n <= 16) {
        if (n >= 4) {
            a = ((uint64_t)load32le(p) << 32) | load32le(p + ((n >> 3) << 2));
            b = ((uint64_t)load32le(p + n - 4) << 32) | load32le(p + n - 4 - ((n >> 3) << 2));
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = n;
        const uint8_t *q = p;
        uint64_t see1 = seed, see2 = seed;
        while (i > 48) {
            seed = mum_fold(load64le(q) ^ s1, load64le(q + 8) ^ seed);
            see1 = mum_fold(load64le(q + 16) ^ s2, load64le(q + 24) ^ see1);
            see2 = mum_fold(load64le(q + 32) ^ s0, load64le(q + 40) ^ see2);
            q += 48;
            i -= 48;
        }
        seed ^= see1 ^ see2;
        while (i > 16) {
            seed = mum_fold(load64le(q) ^ s1, load64le(q + 8) ^ seed);
            i -= 16;
            q += 16;
        }
        a = load64le(q + i - 16);
        b = load64le(q + i - 8);
    }
    a ^= s1;
    b ^= seed;
    __uint128_t r = (__uint128_t)a * b;
    a = (uint64_t)r;
    b = (uint64_t)(r >> 64);
    return mum_fold(a ^ s0 ^ (uint64_t)n, b ^ s1);
}

uint64_t ckk_id_hash(const void *bytes, size_t n) { return id_hash((const uint8_t *)bytes, n); }

/* Byte equality of two n-byte strings; ids are short, so up to 16 bytes compare as two overlapping words. */
static inline int bytes_equal(const uint8_t *a, const uint8_t *b, size_t n) {
    if (n >= 8 && n <= 16) {
        return load64le(a) == load64le(b) && load64le(a + n - 8) == load64le(b + n - 8);
    }
    if (n >= 4 && n < 8) {
        return load32le(a) == load32le(b) && load32le(a + n - 4) == load32le(b + n - 4);
    }
    return memcmp(a, b, n) == 0;
}

/* Whether string `row` of the table is exactly id[0..len) (row < count, checked by the caller). */
static inline int row_matches(const ckk_id_index *ix, uint32_t row, const uint8_t *id, size_t len) {
    uint32_t start = load32le(ix->offsets + row);
    uint32_t stop = load32le(ix->offsets + row + 1);
    return stop - start == len && bytes_equal(ix->blob + start, id, len);
}

/* An entry (in memory only, native byte order): u32 row + 1 (0 = empty), then a 28-byte key. The key of an id of
 * up to CKK_ID_INLINE_BYTES bytes is its length and its bytes, zero-padded, so equal keys mean equal ids. A longer
 * id's key is 0xFF and the high half of its hash: equal keys only mean "compare with the string table". */
typedef struct { uint32_t head; uint64_t w[3]; } id_key; /* head: key bytes 0-3; w: key bytes 4-27 */

/* Copies n <= 32 bytes as two overlapping fixed-size moves: a variable-length memcpy here was a libc call per id. */
static inline void copy_short(uint8_t *dst, const uint8_t *src, size_t n) {
    if (n >= 16) {
        memcpy(dst, src, 16);
        memcpy(dst + n - 16, src + n - 16, 16);
    } else if (n >= 8) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 8, src + n - 8, 8);
    } else if (n >= 4) {
        memcpy(dst, src, 4);
        memcpy(dst + n - 4, src + n - 4, 4);
    } else if (n > 0) {
        dst[0] = src[0];
        dst[n >> 1] = src[n >> 1];
        dst[n - 1] = src[n - 1];
    }
}

static inline void make_key(id_key *k, const uint8_t *id, size_t len, uint64_t h) {
    uint8_t b[28] = {0};
    if (len <= CKK_ID_INLINE_BYTES) {
        b[0] = (uint8_t)len;
        copy_short(b + 1, id, len);
    } else {
        uint32_t tag = (uint32_t)(h >> 32);
        b[0] = 0xFF;
        memcpy(b + 1, &tag, 4);
    }
    memcpy(&k->head, b, 4);
    memcpy(k->w, b + 4, 24);
}

static inline uint32_t entry_row(const uint8_t *e) {
    uint32_t r;
    memcpy(&r, e, 4);
    return r;
}

static inline int key_equal(const uint8_t *e, const id_key *k) {
    uint32_t head;
    uint64_t w[3];
    memcpy(&head, e + 4, 4);
    memcpy(w, e + 8, 24);
    return ((head ^ k->head) | (w[0] ^ k->w[0]) | (w[1] ^ k->w[1]) | (w[2] ^ k->w[2])) == 0;
}

/* Whether entry e (holding row + 1 = r, non-zero) is the id. */
static inline int entry_matches(const ckk_id_index *ix, const uint8_t *e, uint32_t r, const id_key *k,
                                const uint8_t *id, size_t len) {
    return key_equal(e, k) && (len <= CKK_ID_INLINE_BYTES || row_matches(ix, r - 1, id, len));
}

uint64_t ckk_id_index_capacity(uint64_t count) {
    uint64_t capacity = 2;
    while (capacity < count + count / 2 + 1) capacity <<= 1;
    return capacity;
}

/* Rows inserted per block: their home entries are prefetched together, so a big table's cache misses (one per id,
 * into tens of MB) overlap instead of queueing; one at a time, 1M ids took ~100 ms. Insertion stays in row order. */
#define BUILD_BLOCK 32

uint64_t ckk_id_index_build(const ckk_id_index *ix) {
    uint8_t *entries = (uint8_t *)ix->entries;
    uint64_t duplicates = 0;
    for (uint64_t b0 = 0; b0 < ix->count; b0 += BUILD_BLOCK) {
        uint64_t bn = ix->count - b0 < BUILD_BLOCK ? ix->count - b0 : BUILD_BLOCK;
        uint64_t home[BUILD_BLOCK];
        id_key key[BUILD_BLOCK];
        const uint8_t *id[BUILD_BLOCK];
        size_t len[BUILD_BLOCK];
        for (uint64_t j = 0; j < bn; j++) {
            uint32_t start = load32le(ix->offsets + b0 + j);
            id[j] = ix->blob + start;
            len[j] = load32le(ix->offsets + b0 + j + 1) - start;
            uint64_t h = id_hash(id[j], len[j]);
            make_key(&key[j], id[j], len[j], h);
            home[j] = h & ix->mask;
            __builtin_prefetch(entries + home[j] * CKK_ID_ENTRY_BYTES, 1, 3);
        }
        for (uint64_t j = 0; j < bn; j++) {
            uint64_t row = b0 + j;
            uint64_t i = home[j];
            int duplicate = 0;
            /* mask + 1 > count, so an empty entry is always ahead. */
            for (uint32_t r; (r = entry_row(entries + i * CKK_ID_ENTRY_BYTES)) != 0; i = (i + 1) & ix->mask) {
                if (entry_matches(ix, entries + i * CKK_ID_ENTRY_BYTES, r, &key[j], id[j], len[j])) {
                    duplicate = 1;
                    break;
                }
            }
            if (duplicate) {
                duplicates++;
                continue;
            }
            uint8_t *e = entries + i * CKK_ID_ENTRY_BYTES;
            uint32_t r = (uint32_t)(row + 1);
            memcpy(e, &r, 4);
            memcpy(e + 4, &key[j].head, 4);
            memcpy(e + 8, key[j].w, 24);
        }
    }
    return duplicates;
}

int64_t ckk_id_row(const ckk_id_index *ix, const uint8_t *id, size_t len) {
    uint64_t h = id_hash(id, len);
    id_key k;
    make_key(&k, id, len, h);
    uint64_t i = h & ix->mask;
    for (uint64_t probe = 0; probe <= ix->mask; probe++, i = (i + 1) & ix->mask) {
        const uint8_t *e = ix->entries + i * CKK_ID_ENTRY_BYTES;
        uint32_t r = entry_row(e);
        if (r == 0) return -1;
        if (entry_matches(ix, e, r, &k, id, len)) return (int64_t)(r - 1);
    }
    return -1;
}

/* Ids looked up together, so that their cache misses overlap. Each round of a block waits out one miss per
 * pending id (its entry); most ids resolve in the first round. Blocks of 64 were chosen when a lookup took three
 * dependent misses (see the git history of this file: 128 looked worse for TOPK's tail beside a SCORE load). */
#define ID_BLOCK 64

void ckk_id_rows_packed(const ckk_id_index *ix, const uint8_t *packed, size_t packed_len, size_t n,
                        int32_t *rows, const void *then_base, size_t then_stride, size_t then_bytes) {
    size_t at = 0;
    for (size_t b0 = 0; b0 < n; b0 += ID_BLOCK) {
        size_t bn = n - b0 < ID_BLOCK ? n - b0 : ID_BLOCK;
        const uint8_t *id[ID_BLOCK];
        uint32_t len[ID_BLOCK];
        uint64_t slot[ID_BLOCK];
        id_key key[ID_BLOCK];
        uint8_t pending[ID_BLOCK];
        size_t open = 0;

        /* Split, hash, prefetch each home entry. An entry that overruns the payload ends the list: it and every
         * id after it are unknown. */
        for (size_t i = 0; i < bn; i++) {
            rows[b0 + i] = -1;
            if (at + 2 > packed_len) continue;
            size_t l = load16le(packed + at);
            if (at + 2 + l <= packed_len) {
                id[i] = packed + at + 2;
                len[i] = (uint32_t)l;
                uint64_t h = id_hash(id[i], l);
                make_key(&key[i], id[i], l, h);
                slot[i] = h & ix->mask;
                ckk_prefetch(ix->entries + slot[i] * CKK_ID_ENTRY_BYTES);
                pending[open++] = (uint8_t)i;
            }
            at += 2 + l;
        }

        /* Rounds of linear probing over all pending ids at once; an id whose entry held another id moves to the
         * next entry in the next round (bounded: the table always has an empty entry, but the bound costs nothing). */
        for (uint64_t round = 0; open > 0 && round <= ix->mask; round++) {
            size_t kept = 0;
            for (size_t p = 0; p < open; p++) {
                size_t i = pending[p];
                const uint8_t *e = ix->entries + slot[i] * CKK_ID_ENTRY_BYTES;
                uint32_t r = entry_row(e);
                if (r == 0) continue; /* empty entry: unknown id */
                if (entry_matches(ix, e, r, &key[i], id[i], len[i])) {
                    rows[b0 + i] = (int32_t)(r - 1);
                    if (then_base)
                        CKK_PREFETCH_RANGE_L2((const uint8_t *)then_base + (size_t)(r - 1) * then_stride, then_bytes);
                } else {
                    slot[i] = (slot[i] + 1) & ix->mask;
                    ckk_prefetch(ix->entries + slot[i] * CKK_ID_ENTRY_BYTES);
                    pending[kept++] = (uint8_t)i;
                }
            }
            open = kept;
        }
    }
}
