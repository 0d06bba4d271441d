/* Shared-memory layout of a framed ring (fastmp/_ring.pyx).
 *
 * The header sits at offset 0 of the segment, the data area right after it.
 * Fields that different processes write in the hot path live on separate
 * 64-byte cache lines: `tail` belongs to writers, `head` to readers, so a
 * reader spin-polling `tail` does not bounce the line a writer of `head`
 * is using.  The mutex and each wake-up sequence get their own line too.
 *
 * Positions (`head`, `tail`, `stream_start`) are byte counts since creation,
 * never wrapped: offset in the data area = position % capacity.
 * Bumping LAYOUT_VERSION is required whenever this struct changes. */
#ifndef FASTMP_RING_LAYOUT_H
#define FASTMP_RING_LAYOUT_H
#include <stdint.h>
#include <pthread.h>

#define FASTMP_RING_MAGIC 0x474e4952504d5446ULL /* "FTMPRING" little-endian */
#define FASTMP_RING_LAYOUT_VERSION 2

typedef struct {
    /* line 0: written once by the creator, read-only afterwards */
    _Alignas(64) uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t capacity;          /* bytes in the data area, multiple of 8 */
    int64_t maxsize;            /* messages; <= 0: unbounded */
    /* Set once (never cleared) when a reader first hands out a descriptor to
     * select on (Connection.fileno): from then on readiness is mirrored into
     * an eventfd, at the cost of a syscall per empty -> non-empty change.
     * Written once, so it shares the read-mostly line. */
    uint32_t armed;

    _Alignas(64) pthread_mutex_t mutex;
    /* Wake-up sequences (futex words, see _sync.pyx): bumped under the mutex
     * when data arrives (readers sleep on not_empty) or room or a maxsize
     * slot frees up (writers sleep on not_full). */
    _Alignas(64) uint32_t not_empty;
    _Alignas(64) uint32_t not_full;

    /* writer-owned line: end of the published data, and records published.
     * Readers only read it, so in the hot path it moves one way. */
    _Alignas(64) uint64_t tail;
    int64_t written;
    /* reader-owned line: start of the unread data, and records taken */
    _Alignas(64) uint64_t head;
    int64_t taken;

    /* bookkeeping: read and written only under the mutex */
    /* (records in the ring = written - taken: no field that both sides
     * write on every message) */
    _Alignas(64) int64_t pending;              /* messages admitted (maxsize) but still in a
                                     producer's local buffer, not in the ring */
    int32_t readers_waiting;      /* asleep on not_empty; a waiter killed while
                                     asleep leaves this too high: harmless,
                                     wakers then just call FUTEX_WAKE */
    int32_t writers_waiting;      /* asleep on not_full */
    /* A message larger than the ring streams through it in chunks.  While
     * stream_writer != 0 no other writer may append; while stream_reader != 0
     * no other reader may take.  Values: 0 idle, > 0 owner pid, -1 abandoned
     * (the owner gave up: Ctrl-C, or it is known to have died). */
    int32_t stream_writer;
    int32_t stream_reader;
    uint64_t stream_start;        /* position of the stream's record header */
    uint64_t stream_remaining;    /* body bytes (padded) the reader has not consumed */
    /* Readiness mirror (Pipe): 1 while the eventfd has been written for
     * the records now in the ring and not yet drained.  Writers write the
     * eventfd *before* setting it, readers clear it *before* draining, so a
     * process killed in between leaves at worst a spurious wake-up, never a
     * lost one. */
    uint32_t signalled;
    /* Bumped (with every waiter woken) each time a Connection end is closed,
     * so blocked peers and later writers re-check whether the other side
     * has gone (its hang-up socket reads EOF). */
    uint32_t hangups;
} fastmp_ring_header;

#endif
