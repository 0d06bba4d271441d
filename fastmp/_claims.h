/* Role claims shared by fastmp's single-writer / single-reader primitives
 * (FloatChannel, Ring, Broadcast): who may write, who may read, and whether
 * the holder of a role is still there.
 *
 * A claim word is a uint64_t in shared memory:
 *   0                      nobody has claimed the role yet
 *   (pid << 32) | tid      held by that kernel thread (tid = gettid())
 *   FASTMP_CLAIM_CLOSED    the holder called close(): its peer sees EOF (the
 *                          writer closed) or a broken pipe (the reader closed)
 * A CLOSED claim, or one whose holder has exited (thread gone, process gone
 * or a zombie), may be taken over by compare-and-swap: one winner.
 *
 * Memory ordering: every claim access is seq_cst.  Claims change rarely
 * (first use, close, take-over), so the cost does not matter, and a claim
 * store then falls in the same total order as the eventcount steps of
 * _eventcount.h: a peer about to sleep re-reads the claim after announcing
 * itself, and close() wakes it after storing CLOSED, so a close is never
 * missed by a sleeper.
 *
 * Cache lines: claim words live on a line nobody writes in the hot path, so
 * the per-call "am I still the holder?" load hits a Shared line in both
 * caches and costs no coherence traffic.
 *
 * Fork: a handle remembers which thread it verified as holder; after fork()
 * the child has the same thread ident but another tid, so each module that
 * caches "this thread holds the claim" also records the fork generation
 * (bumped in every child by pthread_atfork) and re-verifies when it
 * differs.  The counter is per extension module (static): each module calls
 * fastmp_claim_watch_forks() once at import. */
#ifndef FASTMP_CLAIMS_H
#define FASTMP_CLAIMS_H
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FASTMP_CLAIM_CLOSED UINT64_MAX

static inline uint64_t fastmp_claim_load(const uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_SEQ_CST);
}
/* The hot-path check: relaxed is enough, the caller only compares the value
 * with its own claim (a stale value at worst sends it to the slow path). */
static inline uint64_t fastmp_claim_peek(const uint64_t *word) {
    return __atomic_load_n(word, __ATOMIC_RELAXED);
}
/* 1 if *word held `expected` and now holds `desired`. */
static inline int fastmp_claim_cas(uint64_t *word, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(word, &expected, desired, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

/* This thread's claim word.  Two system calls: only on a first use. */
static inline uint64_t fastmp_claim_me(void) {
    return ((uint64_t)(uint32_t)getpid() << 32) | (uint32_t)syscall(SYS_gettid);
}

/* 0 if the holder of `claim` is gone: no such thread, or its process is a
 * zombie (dead, not yet reaped by its parent: kill() still succeeds on it,
 * and a parent reading from a child it has not joined is the usual case).
 * 1 otherwise, including when it cannot tell.  A few microseconds: callers
 * rate-limit it (fastmp_peer_gone below). */
static inline int fastmp_claim_holder_alive(uint64_t claim) {
    char path[64], buf[512], *close_paren;
    int fd;
    ssize_t n;
    pid_t pid = (pid_t)(claim >> 32), tid = (pid_t)(claim & 0xffffffffu);
    if (claim == 0 || claim == FASTMP_CLAIM_CLOSED || pid <= 0 || tid <= 0)
        return 0;
    if (syscall(SYS_tgkill, pid, tid, 0) != 0 && errno == ESRCH)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ESRCH ? 0 : 1;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' (comm may hold any). */
    close_paren = strrchr(buf, ')');
    if (close_paren == NULL || close_paren[1] != ' ')
        return 1;
    return !(close_paren[2] == 'Z' || close_paren[2] == 'X' || close_paren[2] == 'x');
}

/* Take the role in *word for `me`: 1 if it is now ours, 0 if a live holder
 * has it (its claim in *holder). */
static inline int fastmp_claim_take(uint64_t *word, uint64_t me, uint64_t *holder) {
    uint64_t current;
    for (;;) {
        current = fastmp_claim_load(word);
        if (current == me)
            return 1;
        if (current != 0 && current != FASTMP_CLAIM_CLOSED
                && fastmp_claim_holder_alive(current)) {
            *holder = current;
            return 0;
        }
        /* Free, closed, or its holder is gone: one CAS winner takes it. */
        if (fastmp_claim_cas(word, current, me))
            return 1;
    }
}

/* Give back a claim this handle made (mark it CLOSED): 1 if it was still
 * ours, 0 if someone took it over meanwhile (then it is theirs to keep). */
static inline int fastmp_claim_close(uint64_t *word, uint64_t mine) {
    return mine != 0 && fastmp_claim_cas(word, mine, FASTMP_CLAIM_CLOSED);
}

/* -- a rate-limited "has my peer gone?" ---------------------------------------
 * Handle-local state (not in shared memory).  A CLOSED peer is seen at once;
 * a dead one by at most one /proc check per `interval` seconds. */
typedef struct {
    uint64_t dead;          /* a claim already found dead (still dead while
                               the shared word holds it) */
    double next_check;      /* monotonic seconds */
} fastmp_peer_watch;

/* `now`: the caller's monotonic clock in seconds. */
static inline int fastmp_peer_gone(const uint64_t *word, fastmp_peer_watch *w, double now,
                                   double interval) {
    uint64_t claim = fastmp_claim_load(word);
    if (claim == FASTMP_CLAIM_CLOSED)
        return 1;
    if (claim == 0)
        return 0;               /* nobody has claimed it yet: one may come */
    if (claim == w->dead)
        return 1;
    if (now < w->next_check)
        return 0;
    w->next_check = now + interval;
    if (fastmp_claim_holder_alive(claim))
        return 0;
    w->dead = claim;
    return 1;
}

/* -- fork detection -----------------------------------------------------------
 * Bumped in the child after every fork(): a handle's cached "this thread
 * holds the claim" is only trusted in the process that checked it. */
static unsigned int fastmp_claim_fork_generation;

static void fastmp_claim_note_fork(void) { fastmp_claim_fork_generation++; }

static inline int fastmp_claim_watch_forks(void) {
    return pthread_atfork(NULL, NULL, fastmp_claim_note_fork);
}

static inline unsigned int fastmp_claim_fork_gen(void) {
    return fastmp_claim_fork_generation;
}

/* The calling thread, as PyThread_get_thread_ident() names it on Linux. */
static inline unsigned long fastmp_claim_thread(void) {
    return (unsigned long)pthread_self();
}

/* -- a handle's cached role ---------------------------------------------------
 * Handle-local: the claim word this handle installed, and for which thread
 * and fork generation, so that "am I the holder?" costs no system call. */
typedef struct {
    uint64_t claim;
    unsigned long thread;
    unsigned int forkgen;
} fastmp_role;

/* The hot-path check: only fields in the handle plus one relaxed load of
 * the (quiet) claims line. */
static inline int fastmp_role_held(const fastmp_role *r, const uint64_t *word) {
    return r->claim != 0 && r->thread == fastmp_claim_thread()
        && r->forkgen == fastmp_claim_fork_generation && fastmp_claim_peek(word) == r->claim;
}

/* Claim `word` for the calling thread and remember it in *r: 1, or 0 with
 * the live holder's claim in *holder. */
static inline int fastmp_role_claim(fastmp_role *r, uint64_t *word, uint64_t *holder) {
    uint64_t me = fastmp_claim_me();
    if (!fastmp_claim_take(word, me, holder))
        return 0;
    r->claim = me;
    r->thread = fastmp_claim_thread();
    r->forkgen = fastmp_claim_fork_generation;
    return 1;
}

/* Close the role if this process made it (never a claim a parent made before
 * fork, nor one taken over since): 1 if it was marked CLOSED (the caller
 * should then wake its peer).  Forgets it either way. */
static inline int fastmp_role_close(fastmp_role *r, uint64_t *word) {
    int closed = 0;
    if (r->claim != 0 && (r->claim >> 32) == (uint64_t)(uint32_t)getpid())
        closed = fastmp_claim_close(word, r->claim);
    r->claim = 0;
    r->thread = 0;
    return closed;
}
#endif
