"""fastmp.Lock and fastmp.RLock: process-shared locks that are cheap to take
and survive their holder's death.

multiprocessing's locks are POSIX semaphores: every acquire and release is a
library call through a Python method (~150 ns each here), and a process that
dies holding one leaves it held for ever.  These are a 32-bit futex word in
shared memory (_lock_layout.h) that holds the holder's process id:

* taking a free lock is one compare-and-swap (0 -> pid), giving it back one
  exchange (-> 0): no system call unless somebody sleeps on it;
* a contended taker spins briefly (the holder of a Value's lock keeps it for
  nanoseconds), then marks the word FASTMP_LOCK_WAITERS and sleeps on it in
  50 ms slices with the GIL released, checking for Ctrl-C between slices;
  the releaser wakes one sleeper only when the mark is there;
* between slices a sleeper also checks that the holder's process still
  exists; if it does not, it takes the word over with one compare-and-swap
  (so exactly one waiter inherits it).  The data the lock guarded may then be
  half-updated, as after a robust mutex's EOWNERDEAD.  Dead processes are
  recognised by pid, so all users must share one PID namespace, as
  multiprocessing's children do.

Semantics follow multiprocessing.synchronize: a Lock may be released by any
thread or process (it is a semaphore there), and releasing a free Lock
raises ValueError; an RLock counts recursion and only its owner thread may
release it (AssertionError otherwise).  Both carry the `_semlock._is_mine()`
and `_count()` that multiprocessing's Condition (and so Event and Barrier)
call on the lock they are given.
"""

import operator
import os
import threading
from multiprocessing import context as _mp_context
from multiprocessing import process as _mp_process

from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from libc.math cimport INFINITY
from posix.unistd cimport getpid

from fastmp._arena import allocate
from fastmp._sync cimport (
    deadline_after, fastmp_cas_acquire_u32, fastmp_cpu_relax, fastmp_futex_wait,
    fastmp_futex_wake, fastmp_load_acquire_u32, fastmp_xchg_release_u32, next_slice, pid_alive,
    timespec,
)

__all__ = ["Lock", "RLock"]

# Polls of a held lock before sleeping on it (~1-3 us in all, GIL held).
cdef enum:
    SPIN_TRIES = 100
    STATE_BYTES = 64

# getpid() is a system call in current glibc (no cache): keep our own,
# refreshed in forked children.
cdef uint32_t _pid = getpid()


def _refresh_pid():
    global _pid
    _pid = getpid()


os.register_at_fork(after_in_child=_refresh_pid)


cdef int _acquire_contended(fastmp_lock_state* s, double deadline) except -1:
    """The word was not free.  1 once taken, 0 at the deadline."""
    cdef uint32_t w, owner
    cdef int i
    cdef timespec ts
    for i in range(SPIN_TRIES):
        fastmp_cpu_relax()
        if fastmp_load_acquire_u32(&s.word) == 0 and fastmp_cas_acquire_u32(&s.word, 0, _pid):
            return 1
    while True:
        w = fastmp_load_acquire_u32(&s.word)
        if w == 0:
            # Free: take it with the mark kept, since others may be asleep
            # (a spurious wake-up at release costs less than a lost one).
            if fastmp_cas_acquire_u32(&s.word, 0, _pid | FASTMP_LOCK_WAITERS):
                return 1
            continue
        owner = w & ~FASTMP_LOCK_WAITERS
        if owner != _pid and not pid_alive(<int>owner):
            # Its holder is gone: exactly one waiter's swap succeeds.
            if fastmp_cas_acquire_u32(&s.word, w, _pid | FASTMP_LOCK_WAITERS):
                return 1
            continue
        if not (w & FASTMP_LOCK_WAITERS):
            if not fastmp_cas_acquire_u32(&s.word, w, w | FASTMP_LOCK_WAITERS):
                continue
            w |= FASTMP_LOCK_WAITERS
        if not next_slice(deadline, &ts):
            return 0
        with nogil:
            # Returns at once if the word changed since we read it: a
            # release between our read and the sleep is never missed.
            fastmp_futex_wait(&s.word, w, &ts)
        if PyErr_CheckSignals() != 0:
            return -1


cdef int lock_acquire(fastmp_lock_state* s, bint recursive, double deadline) except -1:
    cdef uint64_t me = PyThread_get_thread_ident()
    if recursive and (fastmp_load_acquire_u32(&s.word) & ~FASTMP_LOCK_WAITERS) == _pid \
            and s.owner_thread == me:
        s.count += 1        # ours already: only this thread writes count now
        return 1
    if not fastmp_cas_acquire_u32(&s.word, 0, _pid):
        if not _acquire_contended(s, deadline):
            return 0
    s.owner_thread = me
    s.count = 1
    return 1


cdef int lock_release(fastmp_lock_state* s, bint recursive) except -1:
    cdef uint32_t w = fastmp_load_acquire_u32(&s.word)
    if recursive:
        if (w & ~FASTMP_LOCK_WAITERS) != _pid or s.owner_thread != PyThread_get_thread_ident():
            raise AssertionError("attempt to release recursive lock not owned by thread")
        if s.count > 1:
            s.count -= 1
            return 0
    elif w == 0:
        raise ValueError("semaphore or lock released too many times")
    s.owner_thread = 0
    s.count = 0
    # Release: the guarded data written before this store is visible to the
    # next holder, whose compare-and-swap is an acquire.
    w = fastmp_xchg_release_u32(&s.word, 0)
    if w & FASTMP_LOCK_WAITERS:
        fastmp_futex_wake(&s.word, 1)
    return 0


cdef class _LockBase:
    """Common part of Lock and RLock."""

    def __init__(self, *, ctx=None):
        # ctx: accepted for multiprocessing's signature; the lock works under
        # every start method.
        self._bind(allocate(STATE_BYTES))

    def _bind(self, block):
        self._block = block
        self.state = <fastmp_lock_state*><size_t>block.address

    def acquire(self, block=True, timeout=None):
        """Take the lock: True once held, False if `timeout` seconds passed
        (or at once with block=False).  Ctrl-C interrupts a wait."""
        if type(block) is not bool:
            block = operator.index(block)   # as the standard library: TypeError for "x"
        return bool(lock_acquire(self.state, self.recursive, deadline_after(timeout, block)))

    def release(self):
        lock_release(self.state, self.recursive)

    def __enter__(self):
        return bool(lock_acquire(self.state, self.recursive, INFINITY))

    def __exit__(self, exc_type, exc_value, traceback):
        # Named arguments, not *args: no tuple to build (~25 ns per `with`).
        lock_release(self.state, self.recursive)

    # multiprocessing.synchronize.Condition calls lock._semlock._is_mine()
    # and lock._semlock._count(): the lock answers for itself.
    @property
    def _semlock(self):
        return self

    def _is_mine(self):
        return ((fastmp_load_acquire_u32(&self.state.word) & ~FASTMP_LOCK_WAITERS) == _pid
                and self.state.owner_thread == PyThread_get_thread_ident())

    def _count(self):
        return self.state.count if self._is_mine() else 0

    def _holder_pid(self):
        """The process holding the lock, or 0 (diagnostics and tests)."""
        return fastmp_load_acquire_u32(&self.state.word) & ~FASTMP_LOCK_WAITERS

    def __reduce__(self):
        _mp_context.assert_spawning(self)
        return (_rebuild_lock, (type(self), self._block))

    def _owner_name(self):
        holder = self._holder_pid()
        if holder == 0:
            return "None"
        if self._is_mine():
            name = _mp_process.current_process().name
            if threading.current_thread().name != "MainThread":
                name += "|" + threading.current_thread().name
            return name
        return "SomeOtherThread" if holder == _pid else "SomeOtherProcess"


def _rebuild_lock(cls, block):
    cdef _LockBase lock = cls.__new__(cls)
    lock._bind(block)
    return lock


cdef class Lock(_LockBase):
    """A process-shared lock with multiprocessing.Lock's API (acquire,
    release, with), taken with one atomic operation when free and taken over
    when its holder's process dies.  Pass it to a child process as an
    argument (fork, spawn or forkserver)."""

    def __cinit__(self):
        self.recursive = False

    def __repr__(self):
        return f"<{type(self).__name__}(owner={self._owner_name()})>"


cdef class RLock(_LockBase):
    """A process-shared recursive lock with multiprocessing.RLock's API: the
    owning thread may take it again; it is free once released as many
    times.  The lock of fastmp's Value and Array."""

    def __cinit__(self):
        self.recursive = True

    def __repr__(self):
        name = self._owner_name()
        count = self.state.count if name not in ("None", "SomeOtherThread", "SomeOtherProcess") \
            else (0 if name == "None" else "nonzero")
        return f"<{type(self).__name__}({name}, {count})>"
