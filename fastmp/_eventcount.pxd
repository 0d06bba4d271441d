# Declarations of _eventcount.h (futex eventcount: sleep without lost
# wake-ups, no FUTEX_WAKE while nobody sleeps): cimport-only.

from libc.stdint cimport uint32_t

from fastmp._sync cimport timespec

cdef extern from "_eventcount.h" nogil:
    uint32_t fastmp_ec_prepare(uint32_t* waiters, uint32_t* seq)
    void fastmp_ec_retract(uint32_t* waiters)
    uint32_t fastmp_ec_prepare_counted(uint32_t* waiters, uint32_t* seq)
    void fastmp_ec_retract_counted(uint32_t* waiters)
    void fastmp_ec_sleep(uint32_t* seq, uint32_t seen, const timespec* slice)
    void fastmp_ec_wake(uint32_t* seq)
    void fastmp_ec_notify(const uint32_t* waiters, uint32_t* seq)
