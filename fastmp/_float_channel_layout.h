/* Shared-memory layout and memory-ordering primitives of fastmp.FloatChannel
 * (fastmp/_float_channel.pyx).
 *
 * The header sits at offset 0 of the segment; the slots (float64) follow it
 * at `header_size`, one power of two of them (`mask + 1`), of which at most
 * `capacity` hold unread values.  Positions (`head`, `tail`) count floats
 * since creation and never wrap: slot = position & mask.
 *
 * Cache lines, by who writes them:
 *   0  config          creator, once; read-only afterwards
 *   1  claims          the claiming writer / reader, rarely (claim, close)
 *   2  tail            the writer, on every publication
 *   3  head            the reader, on every take
 *   4  data wake-up    the reader (sleep flag) and the writer (sequence bump),
 *                      only around a sleep
 *   5  room wake-up    the writer (wants) and the reader (sequence bump),
 *                      only around a sleep
 *   6  latest value    the writer (latest=True only): sequence + 7 slots
 * so a reader polling `tail` never bounces the line the reader's own `head`
 * is on, and the wake-up words stay quiet (Shared in both caches) while
 * nobody sleeps.
 *
 * Memory ordering
 * ---------------
 * Data: the writer fills slots, then stores `tail`; the reader loads `tail`
 * (acquire) before reading slots below it, then stores `head` once it has
 * copied them out; the writer loads `head` (acquire) before reusing slots.
 * Every position store is seq_cst (below), which includes release.
 *
 * Sleeping: one eventcount per direction (_eventcount.h, which holds the
 * argument for why no wake-up is lost): the reader announces itself with
 * reader_sleeping and sleeps on data_seq; the writer announces how much room
 * it wants in writer_wants and sleeps on room_seq.  Publishers skip the
 * FUTEX_WAKE whenever nobody sleeps.  Waits also time out every 50 ms
 * (WAIT_SLICE) as a backstop for dead peers.
 *
 * Claims (writer_claim, reader_claim) follow _claims.h.
 *
 * Latest mode: a sequence number and 7 value slots share one cache line.
 * Publication k writes slot k % 7, then stores seq = k.  A reader loads seq
 * (s1), the slot s1 % 7, then seq again (s2): the slot is only rewritten by
 * publication s1 + 7, which starts after seq = s1 + 6 is visible (release
 * fence before each slot store), so s2 - s1 <= 5 proves the value belongs
 * to s1.  There is no "odd = being written" state: a writer killed
 * mid-publication leaves the last complete value readable, and a reader
 * never waits on the writer to finish.
 *
 * Bumping FASTMP_FC_LAYOUT_VERSION is required whenever this struct changes. */
#ifndef FASTMP_FLOAT_CHANNEL_LAYOUT_H
#define FASTMP_FLOAT_CHANNEL_LAYOUT_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_claims.h"
#include "_eventcount.h"

#define FASTMP_FC_MAGIC 0x4c4e484346504d46ULL /* "FMPFCHNL" little-endian */
#define FASTMP_FC_LAYOUT_VERSION 1
#define FASTMP_FC_LATEST_SLOTS 7
/* A claim word (_claims.h): CLOSED = the holder called close(). */
#define FASTMP_FC_CLOSED FASTMP_CLAIM_CLOSED

typedef struct {
    /* line 0: written once by the creator, read-only afterwards */
    _Alignas(64) uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;       /* offset of the slots */
    uint64_t capacity;          /* most unread floats at a time */
    uint64_t mask;              /* slots - 1 (slots: a power of two >= capacity) */
    uint32_t latest;            /* 1: latest-value mode (no slots) */

    /* line 1: who may send and who may receive (compare-and-swap) */
    _Alignas(64) uint64_t writer_claim;
    uint64_t reader_claim;

    /* line 2: writer-owned: floats published since creation */
    _Alignas(64) uint64_t tail;
    /* line 3: reader-owned: floats taken since creation; in latest mode
     * the sequence number of the last value the reader took */
    _Alignas(64) uint64_t head;

    /* line 4: the reader's eventcount (futex word + "I sleep" flag) */
    _Alignas(64) uint32_t data_seq;
    uint32_t reader_sleeping;
    /* line 5: the writer's eventcount: it sleeps until this much room is
     * free (0: not sleeping), so a reader taking one float at a time does
     * not wake it for every slot */
    _Alignas(64) uint32_t room_seq;
    uint32_t reserved;
    uint64_t writer_wants;

    /* line 6: latest mode: sequence and values on one line (see above);
     * values are stored as their bit patterns */
    _Alignas(64) uint64_t latest_seq;
    uint64_t latest_slots[FASTMP_FC_LATEST_SLOTS];
} fastmp_fc_header;

_Static_assert(sizeof(fastmp_fc_header) == 7 * 64, "one field group per cache line");
/* check_layout (_args.pxd) reads these two first, as every fastmp header has them. */
_Static_assert(offsetof(fastmp_fc_header, magic) == 0 && offsetof(fastmp_fc_header, layout_version) == 8,
               "magic, then layout_version");

/* -- plain atomics ----------------------------------------------------------- */

static inline uint64_t fastmp_fc_load_relaxed(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline uint64_t fastmp_fc_load_acquire(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint64_t fastmp_fc_load_seqcst(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* -- ring mode --------------------------------------------------------------- */

/* Writer: the slots below `tail` are filled; make them visible, and wake the
 * reader if (and only if) it announced a sleep: steps (a), (b) above. */
static inline void fastmp_fc_publish_tail(fastmp_fc_header *h, uint64_t tail) {
    __atomic_store_n(&h->tail, tail, __ATOMIC_SEQ_CST);
    fastmp_ec_notify(&h->reader_sleeping, &h->data_seq);
}

/* Reader: the slots below `head` are copied out; give them back, and wake
 * the writer if it sleeps and now has the room it asked for. */
static inline void fastmp_fc_publish_head(fastmp_fc_header *h, uint64_t head) {
    uint64_t wants, tail;
    __atomic_store_n(&h->head, head, __ATOMIC_SEQ_CST);
    wants = __atomic_load_n(&h->writer_wants, __ATOMIC_SEQ_CST);
    if (wants) {
        /* seq_cst: after (b) in the total order (_eventcount.h), so it sees
         * the tail the sleeping writer re-checked with: the room computed
         * here is the room it will find. */
        tail = __atomic_load_n(&h->tail, __ATOMIC_SEQ_CST);
        if (h->capacity - (tail - head) >= wants)
            fastmp_ec_wake(&h->room_seq);
    }
}

/* -- latest mode ------------------------------------------------------------- */

static inline void fastmp_fc_publish_latest(fastmp_fc_header *h, double value) {
    uint64_t bits;
    uint64_t seq = __atomic_load_n(&h->latest_seq, __ATOMIC_RELAXED) + 1; /* writer-owned */
    memcpy(&bits, &value, sizeof bits);
    /* Orders the previous publication's seq store before this slot store:
     * a reader that sees these bits then also sees seq >= seq - 1. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&h->latest_slots[seq % FASTMP_FC_LATEST_SLOTS], bits, __ATOMIC_RELAXED);
    __atomic_store_n(&h->latest_seq, seq, __ATOMIC_SEQ_CST);
    fastmp_ec_notify(&h->reader_sleeping, &h->data_seq);
}

/* A consistent (sequence, value) snapshot: 1, or 0 if the writer lapped the
 * reader meanwhile (five publications within a few nanoseconds): try again. */
static inline int fastmp_fc_read_latest(const fastmp_fc_header *h, uint64_t *seq, double *value) {
    uint64_t s1, s2, bits;
    s1 = __atomic_load_n(&h->latest_seq, __ATOMIC_ACQUIRE);
    bits = __atomic_load_n(&h->latest_slots[s1 % FASTMP_FC_LATEST_SLOTS], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    s2 = __atomic_load_n(&h->latest_seq, __ATOMIC_RELAXED);
    if (s2 - s1 > FASTMP_FC_LATEST_SLOTS - 2)
        return 0;
    *seq = s1;
    memcpy(value, &bits, sizeof bits);
    return 1;
}

/* -- sleeping ---------------------------------------------------------------- */

/* Reader: sleep (at most `slice`) unless data - or in latest mode a newer
 * value - is there, or the writer has closed its end.  Steps (1)-(5) of
 * _eventcount.h. */
static inline void fastmp_fc_sleep_until_readable(fastmp_fc_header *h,
                                                  const struct timespec *slice) {
    uint32_t seen;
    uint64_t have, head = __atomic_load_n(&h->head, __ATOMIC_RELAXED); /* reader-owned */
    seen = fastmp_ec_prepare(&h->reader_sleeping, &h->data_seq);
    have = __atomic_load_n(h->latest ? &h->latest_seq : &h->tail, __ATOMIC_SEQ_CST);
    if (have == head && fastmp_claim_load(&h->writer_claim) != FASTMP_FC_CLOSED)
        fastmp_ec_sleep(&h->data_seq, seen, slice);
    fastmp_ec_retract(&h->reader_sleeping);
}

/* Writer: sleep (at most `slice`) unless `wanted` slots are free or the
 * reader has closed its end. */
static inline void fastmp_fc_sleep_until_room(fastmp_fc_header *h, uint64_t wanted,
                                              const struct timespec *slice) {
    uint32_t seen;
    uint64_t head, tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED); /* writer-owned */
    /* The announcement is a 64-bit count here, so steps (1)+(2) by hand. */
    __atomic_store_n(&h->writer_wants, wanted, __ATOMIC_SEQ_CST);
    seen = __atomic_load_n(&h->room_seq, __ATOMIC_SEQ_CST);
    head = __atomic_load_n(&h->head, __ATOMIC_SEQ_CST);
    if (h->capacity - (tail - head) < wanted
            && fastmp_claim_load(&h->reader_claim) != FASTMP_FC_CLOSED)
        fastmp_ec_sleep(&h->room_seq, seen, slice);
    __atomic_store_n(&h->writer_wants, 0, __ATOMIC_RELAXED);
}

#endif
