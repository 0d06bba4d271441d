/* Linux futex calls on a 32-bit word in shared memory (not FUTEX_PRIVATE:
 * the waiters and wakers are different processes).  FUTEX_WAIT's timeout is
 * relative, measured on CLOCK_MONOTONIC. */
#ifndef FASTMP_FUTEX_H
#define FASTMP_FUTEX_H
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline int fastmp_futex_wait(uint32_t *word, uint32_t expected,
                                    const struct timespec *relative) {
    /* EAGAIN (value already changed), EINTR and ETIMEDOUT all mean "go and
     * look again": the caller re-checks its condition under the mutex. */
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, relative, NULL, 0);
}

static inline int fastmp_futex_wake(uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}
#endif
