/* xxHash64 and the model file's id -> row hash index (layout in proto-spec/MODEL_FORMAT.md).
 *
 * In C because a SCORE looks up every candidate id: the Swift batched lookup spent about 310 instructions per id
 * (hash, probe, compare); this one spends about 200 including the row prefetches, with no runtime calls between
 * (callgrind, 100-candidate SCORE). */

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
static inline int slot_matches(const ckk_id_index *ix, uint32_t row, const uint8_t *id, size_t len) {
    uint32_t start = load32le(ix->offsets + row);
    uint32_t stop = load32le(ix->offsets + row + 1);
    return stop - start == len && bytes_equal(ix->blob + start, id, len);
}

int64_t ckk_id_row(const ckk_id_index *ix, const uint8_t *id, size_t len) {
    uint64_t i = xxh64(id, len, 0) & ix->mask;
    /* Bounded probing: a corrupt (but checksummed) index can cause misses, never a loop or a wild read. */
    for (uint64_t probe = 0; probe <= ix->mask; probe++) {
        uint32_t slot = load32le(ix->slots + i);
        if (slot == 0) return -1;
        if (slot - 1 < ix->count && slot_matches(ix, slot - 1, id, len)) return (int64_t)(slot - 1);
        i = (i + 1) & ix->mask;
    }
    return -1;
}

/* Ids looked up together. Each block waits out three rounds of memory latency (slot, offset, bytes), so bigger
 * blocks overlap more misses: in SCORE throughput (100 candidates, 100k items) 64 beat 32 by 1-3% (measured before
 * the row prefetch) and 128 beat 64 by 2-3%. But beside a full SCORE load, TOPK's p99 (a noisy number) looked worse
 * with 128: medians of 8-trial runs 4.7-6.2 ms in three runs of four, against 3.3 ms in both runs with 64 and
 * 3.2-3.9 ms for the old lookup. Bursts of that many misses may crowd the other core's scan; 64 it is. */
#define ID_BLOCK 64

void ckk_id_rows_packed(const ckk_id_index *ix, const uint8_t *packed, size_t packed_len, size_t n,
                        int32_t *rows, const void *then_base, size_t then_stride, size_t then_bytes) {
    size_t at = 0;
    for (size_t b0 = 0; b0 < n; b0 += ID_BLOCK) {
        size_t bn = n - b0 < ID_BLOCK ? n - b0 : ID_BLOCK;
        const uint8_t *id[ID_BLOCK];
        uint32_t len[ID_BLOCK];
        uint64_t home[ID_BLOCK];
        uint32_t candidate[ID_BLOCK]; /* row + 1 met in this round; 0 when the slot was corrupt */
        uint8_t pending[ID_BLOCK];
        size_t open = 0;

        /* Split, hash, prefetch each home slot. An entry that overruns the payload ends the list: it and
         * every id after it are unknown. */
        for (size_t i = 0; i < bn; i++) {
            rows[b0 + i] = -1;
            if (at + 2 > packed_len) continue;
            size_t l = load16le(packed + at);
            if (at + 2 + l <= packed_len) {
                id[i] = packed + at + 2;
                len[i] = (uint32_t)l;
                home[i] = xxh64(id[i], l, 0) & ix->mask;
                ckk_prefetch(ix->slots + home[i]);
                pending[open++] = (uint8_t)i;
            }
            at += 2 + l;
        }

        /* Rounds of linear probing over all pending ids at once, so their misses (slot, offset, bytes: three
         * dependent loads each) overlap; an id that met another moves to its next slot in the next round. */
        for (uint64_t round = 0; open > 0 && round <= ix->mask; round++) {
            size_t kept = 0;
            for (size_t p = 0; p < open; p++) {
                size_t i = pending[p];
                uint32_t slot = load32le(ix->slots + ((home[i] + round) & ix->mask));
                if (slot == 0) continue; /* empty slot: unknown id */
                candidate[i] = slot - 1 < ix->count ? slot : 0;
                if (candidate[i]) ckk_prefetch(ix->offsets + (slot - 1));
                pending[kept++] = (uint8_t)i;
            }
            open = kept;
            for (size_t p = 0; p < open; p++) {
                size_t i = pending[p];
                if (candidate[i]) ckk_prefetch(ix->blob + load32le(ix->offsets + (candidate[i] - 1)));
            }
            kept = 0;
            for (size_t p = 0; p < open; p++) {
                size_t i = pending[p];
                if (candidate[i] && slot_matches(ix, candidate[i] - 1, id[i], len[i])) {
                    rows[b0 + i] = (int32_t)(candidate[i] - 1);
                    if (then_base)
                        CKK_PREFETCH_RANGE((const uint8_t *)then_base + (size_t)(candidate[i] - 1) * then_stride,
                                           then_bytes);
                } else {
                    pending[kept++] = (uint8_t)i;
                }
            }
            open = kept;
        }
    }
}
