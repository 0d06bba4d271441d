"""Process-shared robust locking and waiting.

The lock is a PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST pthread mutex.
A process that dies holding it leaves it in the EOWNERDEAD state: the next
locker runs the owner's `repair` callback with the lock held, then marks the
mutex consistent.  The rings are built so that repair is cheap: a writer
publishes only after its bytes are copied and a reader consumes only after
its bytes are copied out, so a half-done operation is simply invisible.

Waiting is NOT done on pthread condition variables.  glibc's process-shared
condvars keep per-waiter state inside the condvar: a waiter SIGKILLed while
it sleeps never gives back its group reference, and the next
pthread_cond_signal then blocks forever (with the mutex held, so every
process hangs).  That was reproduced here.  Instead each wait condition is a
32-bit sequence number in shared memory used as a futex: a waiter reads it
under the mutex, unlocks, and sleeps in FUTEX_WAIT only while it still holds
that value; a waker bumps it under the mutex and calls FUTEX_WAKE.  The
kernel keeps no state for a dead waiter, so nothing can wedge.

Every blocking call here releases the GIL and sleeps at most WAIT_SLICE at a
time: the waiter wakes, its caller runs PyErr_CheckSignals (so Ctrl-C raises
KeyboardInterrupt promptly, as in the standard library) and looks for peers
that died, then waits again until its deadline.
"""

from libc.errno cimport EBUSY, ETIMEDOUT, EPERM, errno
from libc.math cimport isnan, INFINITY
from cpython.exc cimport PyErr_CheckSignals


cdef extern from "<errno.h>":
    int EOWNERDEAD

cdef extern from "<signal.h>" nogil:
    int kill(int pid, int sig)

from libc.stdio cimport snprintf
from posix.fcntl cimport O_CLOEXEC, O_RDONLY, open
from posix.unistd cimport close, read

WAIT_SLICE = 0.05
# A call whose deadline has passed (block=False, timeout=0) still waits this
# long for the lock: holders keep it only for a copy, and giving up at once
# would make get_nowait fail whenever a put happens to be copying.
LOCK_GRACE = 1e-3


cdef double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef double deadline_after(object timeout, bint block) except? -1.0:
    """Absolute CLOCK_MONOTONIC deadline for a (block, timeout) pair.

    As in multiprocessing: block=False or a negative timeout means "do not
    wait"; timeout=None with block=True means "wait forever"."""
    cdef double t
    if not block:
        return 0.0
    if timeout is None:
        return INFINITY
    try:
        t = timeout
    except TypeError:
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}") from None
    if isnan(t):
        raise ValueError("timeout must be a number, not NaN")
    if t <= 0:
        return 0.0
    return monotonic() + t


cdef bint pid_alive(int pid) noexcept nogil:
    """Whether process `pid` still runs.  A zombie (dead, not yet reaped by
    its parent) does not: kill(pid, 0) succeeds on it, but it will never
    release anything, and a parent that has not joined a killed child yet
    must not wait on it for ever."""
    if pid <= 0:
        return False
    if kill(pid, 0) != 0:
        return errno == EPERM
    return not _is_zombie(pid)


cdef bint _is_zombie(int pid) noexcept nogil:
    # /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')'
    # (comm itself may contain parentheses).  Unreadable: assume running.
    cdef char path[48]
    cdef char buf[512]
    cdef int fd
    cdef ssize_t n, i
    snprintf(path, sizeof(path), "/proc/%d/stat", pid)
    fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        return False
    n = read(fd, buf, sizeof(buf) - 1)
    close(fd)
    if n <= 0:
        return False
    i = n - 1
    while i >= 0 and buf[i] != b')':
        i -= 1
    if i < 0 or i + 2 >= n:
        return False
    return buf[i + 2] == b'Z' or buf[i + 2] == b'X'


cdef int mutex_init(pthread_mutex_t* m) except -1:
    cdef pthread_mutexattr_t attr
    cdef int rc
    pthread_mutexattr_init(&attr)
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)
    rc = pthread_mutex_init(m, &attr)
    pthread_mutexattr_destroy(&attr)
    if rc != 0:
        raise OSError(rc, "pthread_mutex_init failed")
    return 0


cdef inline void _recover(pthread_mutex_t* m, repair_fn repair, void* state) noexcept nogil:
    if repair != NULL:
        repair(state)
    pthread_mutex_consistent(m)


cdef inline void _abs_time(timespec* ts, int clk, double seconds_from_now) noexcept nogil:
    clock_gettime(clk, ts)
    cdef long ns = ts.tv_nsec + <long>(seconds_from_now * 1e9)
    ts.tv_sec += ns // 1000000000
    ts.tv_nsec = ns % 1000000000


cdef int mutex_acquire(pthread_mutex_t* m, repair_fn repair, void* state,
                       double deadline, double patience) except -1:
    """Lock `m`: 0 once held, 1 if it could not be had before `deadline`
    (or `patience` seconds, if sooner; never less than LOCK_GRACE).

    Uncontended: one trylock with the GIL held (~30 ns).  Contended: a short
    spin, then a sleep with the GIL released, in slices, checking signals.
    A live process that keeps the lock (stopped with Ctrl-Z, say) therefore
    delays callers only until their own timeouts, as in multiprocessing."""
    cdef int rc = pthread_mutex_trylock(m)
    cdef timespec ts
    cdef int spins
    cdef double now, limit, seconds
    if rc == EBUSY:
        # Most often the other side is finishing a put or get: retry a few
        # times before paying for a GIL release and re-acquire (~100 ns).
        for spins in range(16):
            fastmp_cpu_relax()
            fastmp_cpu_relax()
            fastmp_cpu_relax()
            fastmp_cpu_relax()
            rc = pthread_mutex_trylock(m)
            if rc != EBUSY:
                break
    if rc == 0:
        return 0
    if rc == EOWNERDEAD:
        _recover(m, repair, state)
        return 0
    if rc != EBUSY:
        raise OSError(rc, "pthread_mutex_trylock failed")
    now = monotonic()
    limit = deadline
    if now + patience < limit:
        limit = now + patience
    if limit < now + LOCK_GRACE:
        limit = now + LOCK_GRACE
    while True:
        with nogil:
            # The holder only ever holds the lock for a copy: a short spin
            # usually wins it without a sleep.
            spins = 0
            rc = EBUSY
            while spins < 64:
                fastmp_cpu_relax()
                rc = pthread_mutex_trylock(m)
                if rc != EBUSY:
                    break
                spins += 1
            if rc == EBUSY:
                now = monotonic()
                seconds = limit - now
                if seconds > WAIT_SLICE:
                    seconds = WAIT_SLICE
                if seconds > 0:
                    # pthread_mutex_timedlock takes CLOCK_REALTIME; only the
                    # slice length matters, so a clock jump merely shortens it.
                    _abs_time(&ts, CLOCK_REALTIME, seconds)
                    rc = pthread_mutex_timedlock(m, &ts)
            if rc == EOWNERDEAD:
                _recover(m, repair, state)
                rc = 0
        if rc == 0:
            return 0
        if rc != ETIMEDOUT and rc != EBUSY:
            raise OSError(rc, "pthread_mutex_timedlock failed")
        if PyErr_CheckSignals() != 0:
            return -1
        if monotonic() >= limit:
            return 1


cdef void mutex_release(pthread_mutex_t* m) noexcept nogil:
    pthread_mutex_unlock(m)


cdef int wait_slice(uint32_t* sequence, uint32_t seen, pthread_mutex_t* m, double deadline,
                   repair_fn repair, void* state) noexcept nogil:
    """Mutex held; `seen` is the value of `sequence` read under it.  Unlock,
    sleep while `sequence` still equals `seen` (at most one slice, or until
    `deadline`), lock again.  A wake() between the unlock and the sleep has
    already changed `sequence`, so the sleep returns at once: no lost wake-up.
    Returns 1 if the deadline has passed, else 0."""
    cdef timespec ts
    cdef int rc
    if not next_slice(deadline, &ts):
        return 1
    pthread_mutex_unlock(m)
    fastmp_futex_wait(sequence, seen, &ts)
    rc = pthread_mutex_lock(m)
    if rc == EOWNERDEAD:
        _recover(m, repair, state)
    return 0


cdef bint next_slice(double deadline, timespec* ts) noexcept nogil:
    """The next sleep of a sliced wait: False once `deadline` has passed,
    else True with `ts` set to what is left, at most WAIT_SLICE."""
    cdef double seconds = deadline - monotonic()
    if seconds <= 0:
        return False
    if seconds > WAIT_SLICE:
        seconds = WAIT_SLICE
    ts.tv_sec = <time_t>seconds
    ts.tv_nsec = <long>((seconds - <double>ts.tv_sec) * 1e9)
    return True


cdef void wake(uint32_t* sequence, bint everyone) noexcept nogil:
    """Mutex held.  Wake one (or every) waiter sleeping on `sequence`."""
    sequence[0] += 1
    fastmp_futex_wake(sequence, 0x7fffffff if everyone else 1)
