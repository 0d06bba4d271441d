# Process-shared robust mutexes and condition variables, monotonic deadlines,
# spin-then-block and Ctrl-C-interruptible waits.  Used by every ring.

from libc.math cimport INFINITY
from libc.stdint cimport int32_t, uint32_t, uint64_t

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_MONOTONIC
    int CLOCK_REALTIME

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_mutexattr_t:
        pass
    int PTHREAD_PROCESS_SHARED
    int PTHREAD_MUTEX_ROBUST
    int pthread_mutexattr_init(pthread_mutexattr_t*)
    int pthread_mutexattr_destroy(pthread_mutexattr_t*)
    int pthread_mutexattr_setpshared(pthread_mutexattr_t*, int)
    int pthread_mutexattr_setrobust(pthread_mutexattr_t*, int)
    int pthread_mutex_init(pthread_mutex_t*, const pthread_mutexattr_t*)
    int pthread_mutex_lock(pthread_mutex_t*)
    int pthread_mutex_trylock(pthread_mutex_t*)
    int pthread_mutex_timedlock(pthread_mutex_t*, const timespec*)
    int pthread_mutex_unlock(pthread_mutex_t*)
    int pthread_mutex_consistent(pthread_mutex_t*)

cdef extern from "_futex.h" nogil:
    int fastmp_futex_wait(uint32_t* word, uint32_t expected, const timespec* relative)
    int fastmp_futex_wake(uint32_t* word, int count)

cdef extern from "_atomics.h" nogil:
    uint64_t fastmp_load_acquire_u64(const uint64_t* p)
    void fastmp_store_release_u64(uint64_t* p, uint64_t v)
    int32_t fastmp_load_relaxed_i32(const int32_t* p)
    uint32_t fastmp_load_acquire_u32(const uint32_t* p)
    int fastmp_cas_acquire_u32(uint32_t* p, uint32_t expected, uint32_t desired)
    uint32_t fastmp_xchg_release_u32(uint32_t* p, uint32_t v)
    void fastmp_cpu_relax()

# Called with the mutex held after a lock returned EOWNERDEAD: put the shared
# state back in order before the mutex is marked consistent.
ctypedef void (*repair_fn)(void* state) noexcept nogil

# How long one blocking wait lasts before the waiter comes back to check for
# signals (Ctrl-C) and for dead peers.
cdef double WAIT_SLICE

cdef double monotonic() noexcept nogil
cdef double deadline_after(object timeout, bint block) except? -1.0

# The deadline of a call taking (block, timeout), taken when it starts (a bad
# timeout raises even when the call would not wait); no clock read for the
# common timeout=None.
cdef inline double call_deadline(bint block, object timeout) except? -1.0:
    if timeout is None:
        return INFINITY if block else 0.0
    return deadline_after(timeout, block)

# Spin-then-block for the lock-free channels (Ring, Broadcast, FloatChannel):
# a blocked call polls for up to SPIN_SECONDS before it sleeps on a futex,
# reading the clock every SPIN_POLLS polls, and keeps the GIL for the first
# SPIN_HOLDING_GIL of it.  A futex sleep and its wake-up cost ~6-7 us each
# way here, and a Python peer needs a few microseconds to answer (the ring
# measured p50 14 us with a 2 us spin and ~1 us with 10-20 us); the bound
# keeps a slow peer from costing more than 20 us of CPU per blocking call,
# which matters on 2 cores.  2 us with the GIL is short enough that other
# threads of the process do not notice (the switch interval is 5 ms).
cdef enum:
    SPIN_POLLS = 32
cdef extern from *:
    """
    #define FASTMP_SPIN_SECONDS 20e-6
    #define FASTMP_SPIN_HOLDING_GIL 2e-6
    """
    const double SPIN_SECONDS "FASTMP_SPIN_SECONDS"
    const double SPIN_HOLDING_GIL "FASTMP_SPIN_HOLDING_GIL"

# When a spin of `seconds` starting now stops: then, or at `deadline` if
# that is sooner.
cdef inline double spin_end(double seconds, double deadline) noexcept nogil:
    cdef double until = monotonic() + seconds
    return deadline if deadline < until else until
cdef bint pid_alive(int pid) noexcept nogil

cdef int mutex_init(pthread_mutex_t* m) except -1
cdef double LOCK_GRACE
cdef int mutex_acquire(pthread_mutex_t* m, repair_fn repair, void* state,
                   double deadline, double patience) except -1
cdef void mutex_release(pthread_mutex_t* m) noexcept nogil
cdef int wait_slice(uint32_t* sequence, uint32_t seen, pthread_mutex_t* m, double deadline,
                   repair_fn repair, void* state) noexcept nogil
cdef bint next_slice(double deadline, timespec* ts) noexcept nogil
cdef void wake(uint32_t* sequence, bint everyone) noexcept nogil
