# fastmp's process-shared Lock and RLock (see _lock.pyx and _lock_layout.h).

from libc.stdint cimport uint32_t, uint64_t

cdef extern from "_lock_layout.h":
    ctypedef struct fastmp_lock_state:
        uint32_t word
        uint32_t count
        uint64_t owner_thread
    uint32_t FASTMP_LOCK_WAITERS

# Take / give back a lock from C (Synchronized's fast paths).  acquire: 1
# when taken, 0 when the deadline passed; raises (KeyboardInterrupt) with the
# lock not taken.  release: raises ValueError / AssertionError as the
# standard library's locks do.
cdef int lock_acquire(fastmp_lock_state* s, bint recursive, double deadline) except -1
cdef int lock_release(fastmp_lock_state* s, bint recursive) except -1

cdef class _LockBase:
    cdef fastmp_lock_state* state
    cdef readonly object _block      # SharedBlock holding the state
    cdef bint recursive
