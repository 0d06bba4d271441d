/* Shared-memory layout and memory-ordering primitives of fastmp.Ring
 * (fastmp/_typed_ring.pyx): a single-producer single-consumer ring of
 * fixed-size typed frames.
 *
 * The header sits at offset 0 of the segment; `slots` frames follow it at
 * `header_size`, each `stride` bytes apart (frame_bytes rounded up to 64,
 * so every frame starts on a cache line of its own and the writer filling
 * frame k never shares a line with the reader reading frame k-1).
 * Positions (`head`, `tail`) count frames since creation and never wrap:
 * frame at position p lives in slot p % slots; tail - head frames are
 * unread (0 ... slots).
 *
 * Cache lines, by who writes them:
 *   0  config          creator, once; read-only afterwards
 *   1  frame shape     creator, once (attach-time validation only)
 *   2  claims          the claiming writer / reader, rarely (claim, close)
 *   3  tail            the writer, once per committed frame
 *   4  head            the reader, once per released frame
 *   5  data wake-up    the reader (sleep flag) and the writer (sequence bump),
 *                      only around a sleep
 *   6  room wake-up    the writer (sleep flag) and the reader (sequence bump),
 *                      only around a sleep
 * The writer reads the reader's `head` line only when its private lower
 * bound of it (cached_head in the handle) says "full", and the reader reads
 * `tail` only when its bound says "empty": a stream costs one coherence miss
 * per direction per ring-full of frames, not per frame.  The claims line
 * is read on every call (is this thread still the holder? has the reader
 * closed?) but written only on claim/close, so it stays Shared in both
 * caches.  The wake-up lines likewise while nobody sleeps.
 *
 * Memory ordering
 * ---------------
 * Data: the writer fills a slot (through a reservation view or a copy),
 * then stores `tail` = p + 1 (seq_cst, which includes release); the reader
 * loads `tail` with acquire before it reads any slot below it, so it sees
 * the frame's bytes.  Symmetrically the reader stores `head` = p + 1 only
 * once it is done with slot p (copy finished, or recv_view released), and
 * the writer loads `head` with acquire before it reuses a slot, so the
 * reader's reads of the old frame happen-before the writer's overwrite.
 *
 * Crash safety follows from "positions are published only after the work
 * they cover": a writer killed inside reserve() or mid-copy never stored
 * `tail`, so the half-written slot is invisible and a new writer
 * (claiming over the dead one) reuses it; a reader killed while holding a
 * recv_view slot never stored `head`, so the next reader gets that same
 * frame again.  Nothing needs repairing: there is no lock.
 *
 * Sleeping: one eventcount per direction (_eventcount.h holds the argument
 * for why no wake-up is lost): the reader announces itself in
 * reader_sleeping and sleeps on data_seq until tail != head; the writer in
 * writer_sleeping, on room_seq, until tail - head < slots.  The publisher
 * stores its position seq_cst, then reads the flag (seq_cst) and bumps and
 * FUTEX_WAKEs only if it is set: no system call while nobody sleeps.  The
 * sleeper also re-reads its peer's claim after announcing, and close()
 * stores CLOSED before its unconditional wake, so a close is never missed.
 * Waits time out every 50 ms (WAIT_SLICE) as a backstop for peers that died
 * without closing (checked through /proc, _claims.h).
 *
 * Claims (writer_claim, reader_claim) follow _claims.h.
 *
 * Bumping FASTMP_TR_LAYOUT_VERSION is required whenever this struct changes. */
#ifndef FASTMP_TYPED_RING_LAYOUT_H
#define FASTMP_TYPED_RING_LAYOUT_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "_claims.h"
#include "_eventcount.h"

#define FASTMP_TR_MAGIC 0x474e495250504d46ULL /* "FMPPRING" little-endian */
#define FASTMP_TR_LAYOUT_VERSION 1
#define FASTMP_TR_MAX_NDIM 8

typedef struct {
    /* line 0: written once by the creator, read-only afterwards */
    _Alignas(64) uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;       /* offset of slot 0 (a multiple of 64) */
    uint64_t slots;             /* frames the ring holds */
    uint64_t stride;            /* bytes from one slot to the next (64 | stride) */
    uint64_t frame_bytes;       /* bytes of one frame (<= stride) */
    uint32_t itemsize;
    uint32_t ndim;
    /* line 1: the frame shape, for attach-time validation */
    _Alignas(64) uint64_t dims[FASTMP_TR_MAX_NDIM];

    /* line 2: who may send and who may receive (compare-and-swap) */
    _Alignas(64) uint64_t writer_claim;
    uint64_t reader_claim;

    /* line 3: writer-owned: frames committed since creation */
    _Alignas(64) uint64_t tail;
    /* line 4: reader-owned: frames released since creation */
    _Alignas(64) uint64_t head;

    /* line 5: the reader's eventcount */
    _Alignas(64) uint32_t data_seq;
    uint32_t reader_sleeping;
    /* line 6: the writer's eventcount */
    _Alignas(64) uint32_t room_seq;
    uint32_t writer_sleeping;
} fastmp_tr_header;

_Static_assert(sizeof(fastmp_tr_header) == 7 * 64, "one field group per cache line");
/* check_layout (_args.pxd) reads these two first, as every fastmp header has them. */
_Static_assert(offsetof(fastmp_tr_header, magic) == 0 && offsetof(fastmp_tr_header, layout_version) == 8,
               "magic, then layout_version");

static inline uint64_t fastmp_tr_load_relaxed(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline uint64_t fastmp_tr_load_acquire(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Writer: the frame at tail - 1 is complete; publish it, and wake the reader
 * if (and only if) it announced a sleep. */
static inline void fastmp_tr_publish_tail(fastmp_tr_header *h, uint64_t tail) {
    __atomic_store_n(&h->tail, tail, __ATOMIC_SEQ_CST);
    fastmp_ec_notify(&h->reader_sleeping, &h->data_seq);
}

/* Reader: the reader is done with every slot below `head`; give them back,
 * and wake the writer if it sleeps on a full ring. */
static inline void fastmp_tr_publish_head(fastmp_tr_header *h, uint64_t head) {
    __atomic_store_n(&h->head, head, __ATOMIC_SEQ_CST);
    fastmp_ec_notify(&h->writer_sleeping, &h->room_seq);
}

/* Reader: sleep (at most `slice`) unless a frame is there or the writer has
 * closed its end. */
static inline void fastmp_tr_sleep_until_readable(fastmp_tr_header *h,
                                                  const struct timespec *slice) {
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED); /* reader-owned */
    uint32_t seen = fastmp_ec_prepare(&h->reader_sleeping, &h->data_seq);
    if (__atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) == head
            && fastmp_claim_load(&h->writer_claim) != FASTMP_CLAIM_CLOSED)
        fastmp_ec_sleep(&h->data_seq, seen, slice);
    fastmp_ec_retract(&h->reader_sleeping);
}

/* Writer: sleep (at most `slice`) unless a slot is free or the reader has
 * closed its end. */
static inline void fastmp_tr_sleep_until_room(fastmp_tr_header *h,
                                              const struct timespec *slice) {
    uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED); /* writer-owned */
    uint32_t seen = fastmp_ec_prepare(&h->writer_sleeping, &h->room_seq);
    if (tail - __atomic_load_n(&h->head, __ATOMIC_SEQ_CST) >= h->slots
            && fastmp_claim_load(&h->reader_claim) != FASTMP_CLAIM_CLOSED)
        fastmp_ec_sleep(&h->room_seq, seen, slice);
    fastmp_ec_retract(&h->writer_sleeping);
}
#endif
