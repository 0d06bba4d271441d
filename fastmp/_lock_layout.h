/* Shared state of a fastmp Lock or RLock (fastmp/_lock.pyx): 16 bytes at the
 * start of a 64-byte block.
 *
 * `word` is the futex: 0 when free, else the holder's process id, with
 * FASTMP_LOCK_WAITERS set once somebody may sleep on it.  Keeping the pid in
 * the word itself is what makes the lock survive its holder's death: a waiter
 * that finds the pid gone takes the word over with one compare-and-swap, and
 * there is no moment at which the lock is held but its holder unrecorded.
 * (Linux pids stay below 2^22, so bit 31 is free.)
 *
 * `owner_thread` and `count` are written only by the holder: the thread
 * inside the holder process (for RLock recursion and Condition's
 * _is_mine()), and the RLock's recursion depth. */
#ifndef FASTMP_LOCK_LAYOUT_H
#define FASTMP_LOCK_LAYOUT_H
#include <stdint.h>

#define FASTMP_LOCK_WAITERS 0x80000000u

typedef struct {
    uint32_t word;
    uint32_t count;
    uint64_t owner_thread;
} fastmp_lock_state;

#endif
