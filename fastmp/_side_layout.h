/* Shared layout of a side arena (fastmp/_side.pyx): the memory that carries
 * the out-of-band buffers (NumPy arrays) of large messages beside a framed
 * ring, so they cross with one copy instead of two.
 *
 * The arena is one memfd.  Its first page holds this header; regions of
 * message memory lie beyond it, at page-aligned offsets handed out by
 * `file_end` (a byte count that only grows: a region whose memory is given
 * back is punched out of the file, and a new region takes fresh offsets, so
 * the file is sparse and never shrinks under a mapping).
 *
 * Each region entry is owned through one 64-bit word, `owner` =
 * (state << 32) | pid, changed only by compare-and-swap:
 *
 *   EMPTY   no memory (offset/size meaningless)
 *   FREE    memory kept for reuse, nobody uses it
 *   WRITING pid is copying a message's buffers in (or holds them while its
 *           put waits for room); it publishes QUEUED before the ring record
 *           that names the region becomes visible
 *   QUEUED  named by a record in the ring; nobody may take it back (the
 *           writer may have exited: the message must still arrive)
 *   HELD    pid took the record and its arrays are alive; FREE again when
 *           the last array over it goes away
 *   BUSY    pid is giving the memory back or sizing it (rare, brief)
 *
 * Who may write what: offset, size and generation are written only by the
 * process that holds the entry WRITING or BUSY, before it publishes the next
 * state with a release store; a process that acquires the owner word reads
 * them after.  A WRITING, HELD or BUSY entry whose pid is gone (dead, or a
 * zombie) may be taken over by anyone: that is how the memory of a receiver
 * killed while holding an array, or of a sender killed mid-copy, comes back.
 * A QUEUED entry is never taken over.  The records say which generation
 * they mean, so a stale record can never reach memory that was reused.
 *
 * Bump FASTMP_SIDE_LAYOUT_VERSION whenever this struct changes. */
#ifndef FASTMP_SIDE_LAYOUT_H
#define FASTMP_SIDE_LAYOUT_H
#include <stdint.h>

#define FASTMP_SIDE_MAGIC 0x45444953504d5446ULL /* "FTMPSIDE" little-endian */
#define FASTMP_SIDE_LAYOUT_VERSION 1
#define FASTMP_SIDE_REGIONS 64
#define FASTMP_SIDE_HEADER_BYTES 4096

enum {
    FASTMP_SIDE_EMPTY = 0,
    FASTMP_SIDE_FREE = 1,
    FASTMP_SIDE_WRITING = 2,
    FASTMP_SIDE_QUEUED = 3,
    FASTMP_SIDE_HELD = 4,
    FASTMP_SIDE_BUSY = 5,
};

typedef struct {
    uint64_t owner;         /* state << 32 | pid: CAS only */
    uint64_t offset;        /* in the arena file, page aligned */
    uint64_t size;          /* bytes, page multiple; 0 when EMPTY */
    uint64_t generation;    /* bumped by every allocation of this entry */
} fastmp_side_region;

typedef struct {
    /* line 0: written once by the creator */
    _Alignas(64) uint64_t magic;
    uint32_t layout_version;
    /* line 1: fetch-and-add by any allocating writer */
    _Alignas(64) uint64_t file_end;
    /* Region entries are touched once or twice per large message (a
     * megabyte or more), so they share lines without harm. */
    _Alignas(64) fastmp_side_region regions[FASTMP_SIDE_REGIONS];
} fastmp_side_header;

_Static_assert(sizeof(fastmp_side_header) <= FASTMP_SIDE_HEADER_BYTES,
               "the side arena header must fit its first page");

static inline uint64_t fastmp_side_owner(uint32_t state, uint32_t pid) {
    return ((uint64_t)state << 32) | pid;
}

static inline uint64_t fastmp_side_load(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void fastmp_side_store(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Acquire on success (the new owner then reads offset/size/generation),
 * and release (what the old owner wrote before is published with it). */
static inline int fastmp_side_cas(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static inline uint64_t fastmp_side_fetch_add(uint64_t *p, uint64_t n) {
    return __atomic_fetch_add(p, n, __ATOMIC_RELAXED);
}
#endif
