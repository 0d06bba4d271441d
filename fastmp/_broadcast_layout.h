/* Shared-memory layout and memory-ordering primitives of fastmp.Broadcast
 * (fastmp/_broadcast.pyx): one writer, up to `max_readers` subscribers, each
 * with its own cursor.
 *
 * Segment:
 *   [header: 5 lines][cursor table: max_readers lines][sequence words:
 *   slots lines][frames: slots x stride]
 * Each slot's sequence word has a cache line of its own (no false sharing
 * between the slot being written and the one being read); the frames follow
 * contiguously, each starting 64-byte aligned (stride = frame_bytes rounded
 * up to 64), which is the layout fastmp._frames' ViewCache expects.
 *
 * Positions count frames since creation and never wrap (u64): frame p lives
 * in slot p % slots.  `tail` is the number of frames published; a cursor's
 * `position` is the next frame its subscriber takes.
 *
 * Cache lines, by who writes them:
 *   header 0  config          creator, once; read-only afterwards
 *   header 1  writer claim    the writer, rarely (claim, close); and
 *             entries_used    subscribe(), rarely (a new highest entry)
 *   header 2  tail            the writer, on every publication
 *   header 3  data wake-up    subscribers (sleepers count, around a sleep)
 *                             and the writer (sequence bump, only if someone
 *                             sleeps)
 *   header 4  room wake-up    the writer (writer_needs, around a sleep) and a
 *                             subscriber whose cursor lets it go on
 *   cursor i  one subscriber: its claim, position and sleeping flag.  Only
 *             its owner writes it in the hot path; the writer reads it only
 *             when its cached lower bound of the slowest cursor says "full"
 *             (policy "block"; never with "skip").
 *   seq k,    the writer, once per frame published in slot k; subscribers
 *   frame k   read them.
 *
 * Memory ordering
 * ---------------
 * Publication of frame p (writer): seq[k] = 2p+1 ("being written"), release
 * fence, fill the frame (zero-copy: the user writes through the view),
 * seq[k] = 2p+2 (release), tail = p+1 (seq_cst).  A subscriber loads tail
 * (acquire) before touching any frame below it, so it sees seq[k] >= 2p+2
 * and the frame's bytes.
 *
 * Policy "block": the writer reserves position t only once every live
 * cursor is >= t+1-slots (it loads cursor positions with acquire; a
 * subscriber stores its position, release, only after it is done with the
 * frames below it), so a frame is never overwritten while a live subscriber
 * may still read it.  Subscribers need no sequence check.
 *
 * Policy "skip" (a seqlock per slot): the writer never waits.  A subscriber
 * taking frame c loads seq[k] (acquire) and requires 2c+2; copies the frame
 * out (or hands out a view); acquire fence; loads seq[k] again.  The writer
 * stored 2p+1 and fenced (release) before its first byte of a newer frame,
 * so if any byte the subscriber read belongs to a newer frame, the second
 * load sees a newer sequence: the frame is reported torn (counted in
 * `skipped`, FrameOverwritten for a view) rather than returned.  A cursor
 * that finds its frame gone jumps to max(c+1, tail-slots): the oldest frame
 * that can still be whole (tail-slots itself may be under a reservation: the
 * sequence check finds that out, and the next jump makes progress).
 * The frame bytes are plain (non-atomic) memory, as in every seqlock: the
 * fences keep the compiler and CPU from moving them across the sequence
 * loads and stores; on x86 they are compiler barriers only.
 *
 * Sleeping.  Subscribers (many) sleep on `data_seq`: a subscriber (1) sets
 * its cursor's `sleeping` flag and, if it was clear, increments `sleepers`
 * (seq_cst read-modify-write), (2) reads data_seq, (3) re-checks tail and the
 * writer claim (seq_cst), (4) FUTEX_WAITs for the value read in (2).  The
 * writer (a) stores tail (seq_cst), (b) loads sleepers (seq_cst) and only if
 * non-zero bumps data_seq and wakes everyone.  As _eventcount.h explains,
 * (1)(2)(3)(a)(b) fall in one total order, so a subscriber whose (3) missed
 * (a) is seen by (b): no lost wake-up, and no FUTEX_WAKE while nobody sleeps.
 * Whoever clears a `sleeping` flag (atomic exchange: exactly once) decrements
 * `sleepers`: the subscriber itself after its wait, or whoever frees the
 * entry of a subscriber that died asleep - so a crash does not leave the
 * writer paying a FUTEX_WAKE per frame forever (see below).
 *
 * The writer (policy "block") sleeps on `room_seq`: (1) writer_needs = the
 * position every live cursor must reach (t+1-slots >= 1; 0 = not waiting),
 * (2) reads room_seq, (3) re-scans the cursors (seq_cst), (4) FUTEX_WAITs.
 * A subscriber (a) stores its position (seq_cst), (b) loads writer_needs and
 * wakes the writer only if its move crossed it (old < needs <= new): a
 * subscriber that was not holding the writer back never makes a system call.
 * Closing or freeing an entry wakes a waiting writer unconditionally.
 *
 * What survives a crash
 * ---------------------
 * * Writer killed inside a reservation: tail was not advanced; the slot's
 *   sequence says "being written" (2t+1).  Subscribers get every committed
 *   frame, then EOFError (its claim is dead); a new writer claims the role,
 *   rewrites the same slot and goes on.  (With "skip", the frame that slot
 *   held, t-slots, is lost: a subscriber still on it skips it.)  A writer
 *   killed asleep leaves writer_needs set; the next writer's claim clears it.
 * * Subscriber killed (anywhere, holding a view or asleep): its cursor stays
 *   where it was; the writer (block) checks, at least once per 50 ms wait
 *   slice, the liveness of every cursor holding it back, frees the entries
 *   of dead processes (zombies count as dead) and goes on; subscribe() also
 *   takes over dead entries.  One killed asleep still counts in `sleepers`:
 *   a writer whose publication finds sleepers checks, at most once per wait
 *   slice, which of them are dead and frees their entries (which retracts
 *   them), so the FUTEX_WAKEs stop even under "skip", where it never waits.
 * * A process killed while freeing an entry (between marking it FREEING and
 *   storing 0: a few instructions) leaves the mark, which names the freer's
 *   process: subscribe() takes such an entry over once that process is gone.
 * * Nothing here is a lock: no crash can leave anyone waiting on a dead
 *   process for longer than one wait slice.
 *
 * Bumping FASTMP_BC_LAYOUT_VERSION is required whenever these structs change. */
#ifndef FASTMP_BROADCAST_LAYOUT_H
#define FASTMP_BROADCAST_LAYOUT_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "_claims.h"
#include "_eventcount.h"

#define FASTMP_BC_MAGIC 0x5453414342504d46ULL /* "FMPBCAST" little-endian */
#define FASTMP_BC_LAYOUT_VERSION 1
#define FASTMP_BC_POLICY_BLOCK 0
#define FASTMP_BC_POLICY_SKIP 1
/* A cursor entry's claim while someone frees it (between winning the entry
 * and clearing its sleeping flag): this bit | (freer's pid << 32) | pid.
 * Neither free nor a subscriber; taken over if the freer is gone.  (Pids are
 * below 2^22, so no subscriber claim has this bit.) */
#define FASTMP_BC_FREEING (1ULL << 63)

typedef struct {
    /* line 0: written once by the creator, read-only afterwards */
    _Alignas(64) uint64_t magic;
    uint32_t layout_version;
    uint32_t policy;            /* FASTMP_BC_POLICY_* */
    uint64_t slots;             /* frames the ring holds */
    uint64_t frame_bytes;       /* bytes of one frame */
    uint64_t stride;            /* bytes from one frame to the next (frame_bytes rounded to 64) */
    uint64_t frames_offset;     /* offset of frame 0 from the segment start */
    uint32_t max_readers;       /* entries in the cursor table */

    /* line 1: who may publish (a claim word, _claims.h), and how much of
     * the cursor table has ever been used (entries below it may be claimed;
     * the writer scans only those, so a large max_readers costs nothing
     * until it is used).  Both change rarely. */
    _Alignas(64) uint64_t writer_claim;
    uint32_t entries_used;

    /* line 2: writer-owned: frames published since creation */
    _Alignas(64) uint64_t tail;

    /* line 3: subscribers' eventcount (counting flavour: many sleepers) */
    _Alignas(64) uint32_t data_seq;
    uint32_t sleepers;

    /* line 4: the writer's eventcount (policy "block") */
    _Alignas(64) uint32_t room_seq;
    uint32_t reserved;
    uint64_t writer_needs;      /* every live cursor must reach this; 0 = not waiting */
} fastmp_bc_header;

/* One subscriber.  claim: (pid << 32) | tid of the thread that subscribed,
 * 0 = free, or FASTMP_BC_FREEING | freer.  Liveness is the process's: a Subscriber is
 * a per-process handle any of its threads may use. */
typedef struct {
    _Alignas(64) uint64_t claim;
    uint64_t position;          /* next frame to take; stored after the ones below it are done */
    uint32_t sleeping;          /* 1 while counted in header.sleepers */
    uint32_t reserved;
} fastmp_bc_cursor;

/* A slot's sequence word, alone on its line. */
typedef struct {
    _Alignas(64) uint64_t seq;  /* 2p+1: frame p being written; 2p+2: frame p complete */
} fastmp_bc_slot;

_Static_assert(sizeof(fastmp_bc_header) == 5 * 64, "one field group per cache line");
/* check_layout (_args.pxd) reads these two first, as every fastmp header has them. */
_Static_assert(offsetof(fastmp_bc_header, magic) == 0 && offsetof(fastmp_bc_header, layout_version) == 8,
               "magic, then layout_version");
_Static_assert(sizeof(fastmp_bc_cursor) == 64, "one cursor per cache line");
_Static_assert(sizeof(fastmp_bc_slot) == 64, "a slot's sequence word has its own line");

static inline fastmp_bc_cursor *fastmp_bc_cursors(fastmp_bc_header *h) {
    return (fastmp_bc_cursor *)((char *)h + sizeof(fastmp_bc_header));
}
static inline fastmp_bc_slot *fastmp_bc_slots(fastmp_bc_header *h) {
    return (fastmp_bc_slot *)(fastmp_bc_cursors(h) + h->max_readers);
}
static inline uint64_t fastmp_bc_segment_size(uint64_t max_readers, uint64_t slots,
                                              uint64_t stride) {
    return sizeof(fastmp_bc_header) + max_readers * sizeof(fastmp_bc_cursor)
           + slots * (sizeof(fastmp_bc_slot) + stride);
}
/* A claimed cursor (a subscriber, live or not). */
static inline int fastmp_bc_is_subscriber(uint64_t claim) {
    return claim != 0 && !(claim & FASTMP_BC_FREEING);
}

/* 0 if the process named by a subscriber's claim (or a FREEING mark) is gone
 * (zombies included): its thread-group leader's task is checked, since the
 * handle belongs to the process, not to the thread that subscribed. */
static inline int fastmp_bc_process_alive(uint64_t claim) {
    uint64_t pid = (claim & ~FASTMP_BC_FREEING) >> 32;
    return fastmp_claim_holder_alive((pid << 32) | pid);
}

/* Frames published so far: acquire, so the frames below it are seen whole. */
static inline uint64_t fastmp_bc_tail(const fastmp_bc_header *h) {
    return __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
}

/* -- writer ------------------------------------------------------------------ */

/* Frame `position` is about to be written into the slot of `seq` (step
 * "2p+1"): a subscriber that reads any of the new bytes then sees a changed
 * sequence. */
static inline void fastmp_bc_begin_frame(uint64_t *seq, uint64_t position) {
    __atomic_store_n(seq, 2 * position + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

/* Frame `position` is complete: seal its slot, publish tail, and wake the
 * subscribers if (and only if) one announced a sleep. */
static inline void fastmp_bc_publish(fastmp_bc_header *h, uint64_t *seq, uint64_t position) {
    __atomic_store_n(seq, 2 * position + 2, __ATOMIC_RELEASE);
    __atomic_store_n(&h->tail, position + 1, __ATOMIC_SEQ_CST);
    fastmp_ec_notify(&h->sleepers, &h->data_seq);
}

/* Entries of the cursor table that may be claimed (seq_cst: see
 * fastmp_bc_use_entry). */
static inline uint32_t fastmp_bc_entries_used(fastmp_bc_header *h) {
    return __atomic_load_n(&h->entries_used, __ATOMIC_SEQ_CST);
}

/* subscribe() took entry `index`: raise entries_used past it.  Done before
 * the new cursor's position is stored, so any scan that misses the entry
 * ran before that store - and before the subscriber read the tail its
 * position comes from, so the bound that scan gave the writer is no higher
 * than the new position: the writer cannot lap the new subscriber on it. */
static inline void fastmp_bc_use_entry(fastmp_bc_header *h, uint32_t index) {
    uint32_t used = __atomic_load_n(&h->entries_used, __ATOMIC_SEQ_CST);
    while (used <= index
           && !__atomic_compare_exchange_n(&h->entries_used, &used, index + 1, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
}

/* The lowest position of a claimed cursor, or `upto` if none is lower. */
static inline uint64_t fastmp_bc_slowest(fastmp_bc_header *h, uint64_t upto) {
    fastmp_bc_cursor *c = fastmp_bc_cursors(h);
    uint64_t low = upto, pos;
    uint32_t i, used = fastmp_bc_entries_used(h);
    for (i = 0; i < used; i++) {
        if (!fastmp_bc_is_subscriber(__atomic_load_n(&c[i].claim, __ATOMIC_SEQ_CST)))
            continue;
        pos = __atomic_load_n(&c[i].position, __ATOMIC_SEQ_CST);
        if (pos < low)
            low = pos;
    }
    return low;
}

/* Writer, policy "block": sleep (at most `slice`) unless every claimed
 * cursor has reached `needs` (>= 1).  Steps (1)-(4) above. */
static inline void fastmp_bc_sleep_until_room(fastmp_bc_header *h, uint64_t needs,
                                              const struct timespec *slice) {
    uint32_t seen;
    __atomic_store_n(&h->writer_needs, needs, __ATOMIC_SEQ_CST);
    seen = __atomic_load_n(&h->room_seq, __ATOMIC_SEQ_CST);
    if (fastmp_bc_slowest(h, needs) < needs)
        fastmp_ec_sleep(&h->room_seq, seen, slice);
    __atomic_store_n(&h->writer_needs, 0, __ATOMIC_RELAXED);
}

/* A new writer: no writer sleeps (a dead one's announcement would make
 * subscribers crossing it wake nobody). */
static inline void fastmp_bc_clear_writer_needs(fastmp_bc_header *h) {
    __atomic_store_n(&h->writer_needs, 0, __ATOMIC_SEQ_CST);
}

/* -- subscribers ------------------------------------------------------------- */

/* The frames below `position` are done with: store it, and wake the writer
 * if it waits for this cursor to get where it now is. */
static inline void fastmp_bc_publish_position(fastmp_bc_header *h, fastmp_bc_cursor *c,
                                              uint64_t old, uint64_t position) {
    uint64_t needs;
    __atomic_store_n(&c->position, position, __ATOMIC_SEQ_CST);
    needs = __atomic_load_n(&h->writer_needs, __ATOMIC_SEQ_CST);
    if (needs && old < needs && position >= needs)
        fastmp_ec_wake(&h->room_seq);
}

/* A subscriber's sleeping flag goes: count it out of `sleepers` if it was
 * set (atomic exchange: exactly once).  Called by the owner after a sleep
 * and by whoever frees the entry. */
static inline void fastmp_bc_clear_sleeping(fastmp_bc_header *h, fastmp_bc_cursor *c) {
    if (__atomic_exchange_n(&c->sleeping, 0, __ATOMIC_SEQ_CST))
        fastmp_ec_retract_counted(&h->sleepers);
}

/* Subscriber: sleep (at most `slice`) unless frame `position` is published
 * or the writer has closed.  Steps (1)-(4) above. */
static inline void fastmp_bc_sleep_until_published(fastmp_bc_header *h, fastmp_bc_cursor *c,
                                                   uint64_t position,
                                                   const struct timespec *slice) {
    uint32_t seen;
    if (__atomic_exchange_n(&c->sleeping, 1, __ATOMIC_SEQ_CST) == 0)
        seen = fastmp_ec_prepare_counted(&h->sleepers, &h->data_seq);
    else
        seen = __atomic_load_n(&h->data_seq, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->tail, __ATOMIC_SEQ_CST) <= position
            && fastmp_claim_load(&h->writer_claim) != FASTMP_CLAIM_CLOSED)
        fastmp_ec_sleep(&h->data_seq, seen, slice);
    fastmp_bc_clear_sleeping(h, c);
}

/* Claim a free entry for `me`: 1 if it is now ours. */
static inline int fastmp_bc_take_cursor(fastmp_bc_cursor *c, uint64_t me) {
    return fastmp_claim_cas(&c->claim, 0, me);
}

/* Free an entry whose holder was `claim` (closed, or found dead): 1 if this
 * call freed it (`claim` may also be the FREEING mark of a dead freer).  The
 * entry is FREEING while its sleeping flag is cleared, so a new subscriber
 * cannot take it and announce a sleep that the clearing would then retract.
 * A waiting writer is woken: this cursor
 * no longer holds it back. */
static inline int fastmp_bc_free_cursor(fastmp_bc_header *h, fastmp_bc_cursor *c,
                                        uint64_t claim) {
    uint64_t pid = (uint64_t)(uint32_t)getpid();
    if (!fastmp_claim_cas(&c->claim, claim, FASTMP_BC_FREEING | (pid << 32) | pid))
        return 0;
    fastmp_bc_clear_sleeping(h, c);
    __atomic_store_n(&c->claim, 0, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->writer_needs, __ATOMIC_SEQ_CST))
        fastmp_ec_wake(&h->room_seq);
    return 1;
}

/* Seqlock, policy "skip": is frame `position` whole in the slot of `seq`? */
static inline int fastmp_bc_frame_intact(const uint64_t *seq, uint64_t position) {
    return __atomic_load_n(seq, __ATOMIC_ACQUIRE) == 2 * position + 2;
}
/* ... and still, after reading it: the acquire fence keeps the frame's reads
 * before the second sequence load. */
static inline int fastmp_bc_frame_still_intact(const uint64_t *seq, uint64_t position) {
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(seq, __ATOMIC_RELAXED) == 2 * position + 2;
}

#endif
