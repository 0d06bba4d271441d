/* A futex eventcount: how fastmp's lock-free rings (FloatChannel, Ring,
 * Broadcast) let a waiter sleep without ever losing a wake-up, and let a
 * publisher skip the FUTEX_WAKE system call while nobody sleeps.
 *
 * Two 32-bit words in shared memory per direction: `seq` (the futex word,
 * bumped by every wake) and `waiters` (a flag, or a count when several
 * threads may sleep on the same seq, as Broadcast's subscribers do).  Put
 * both on a cache line of their own: they are written only around a sleep,
 * so while nobody sleeps the line stays Shared in every cache.
 *
 * The protocol, for a condition C ("data is there", "room is there"):
 *   waiter                                 publisher
 *   (1) announce: waiters = 1 (or += 1)    (a) make C true (store position)
 *   (2) seen = seq                         (b) load waiters
 *   (3) re-check C; if true, skip (4)      (c) if waiters != 0: seq += 1
 *   (4) FUTEX_WAIT(seq, seen, slice)       (d)                 FUTEX_WAKE(seq)
 *   (5) retract: waiters = 0 (or -= 1)
 * (1), (2), (3), (a) and (b) are all seq_cst, so they fall in one total
 * order (on x86 the stores are xchg / lock-prefixed: a full fence each).
 * If (3) misses (a), then (1) < (3) < (a) < (b): (b) sees the announcement,
 * and (c) comes after (2), so the FUTEX_WAIT either finds seq changed
 * (returns at once) or was queued before the FUTEX_WAKE (the kernel orders
 * both under the futex bucket lock).  No wake-up is lost.  Waits are also
 * bounded by `slice` (fastmp uses 50 ms) as a backstop for dead peers and
 * for Ctrl-C; EINTR/EAGAIN/ETIMEDOUT all mean "go and look again".
 *
 * A waiter killed while announced leaves a flag set or a count too high:
 * publishers then make a useless FUTEX_WAKE per publication (correctness is
 * unaffected).  Single-sleeper users clear the flag when a thread claims
 * the dead waiter's role (Ring, FloatChannel); counting users must account
 * for dead waiters themselves.  A publisher must never clear the flag: a
 * waiter may have re-announced itself since, and would miss its wake-up. */
#ifndef FASTMP_EVENTCOUNT_H
#define FASTMP_EVENTCOUNT_H
#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "_futex.h"

/* (1)+(2), flag flavour: announce and read the sequence. */
static inline uint32_t fastmp_ec_prepare(uint32_t *waiters, uint32_t *seq) {
    __atomic_store_n(waiters, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(seq, __ATOMIC_SEQ_CST);
}
/* (5), flag flavour: relaxed, a stale 1 only costs the publisher a wake. */
static inline void fastmp_ec_retract(uint32_t *waiters) {
    __atomic_store_n(waiters, 0, __ATOMIC_RELAXED);
}
/* (1)+(2), counting flavour (several sleepers on one seq). */
static inline uint32_t fastmp_ec_prepare_counted(uint32_t *waiters, uint32_t *seq) {
    __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(seq, __ATOMIC_SEQ_CST);
}
static inline void fastmp_ec_retract_counted(uint32_t *waiters) {
    __atomic_fetch_sub(waiters, 1, __ATOMIC_SEQ_CST);
}
/* (4): sleep unless seq moved on from `seen`; at most `slice`. */
static inline void fastmp_ec_sleep(uint32_t *seq, uint32_t seen, const struct timespec *slice) {
    fastmp_futex_wait(seq, seen, slice);
}
/* (c)+(d) unconditionally: for close() and other rare events. */
static inline void fastmp_ec_wake(uint32_t *seq) {
    __atomic_fetch_add(seq, 1, __ATOMIC_SEQ_CST);
    fastmp_futex_wake(seq, INT_MAX);
}
/* (b)-(d): call right after the seq_cst store (a) that made C true. */
static inline void fastmp_ec_notify(const uint32_t *waiters, uint32_t *seq) {
    if (__atomic_load_n(waiters, __ATOMIC_SEQ_CST))
        fastmp_ec_wake(seq);
}
#endif
