"""A framed ring of variable-size messages in shared memory.

Protocol
--------
The data area holds records back to back, each 8-byte aligned::

    [u64 body length][u32 kind][u32 reserved][body ... padding to 8]

A record may wrap the end of the data area; it is then copied in two pieces.

* Writers append at `tail` under the mutex.  They copy a whole batch of
  records first and publish it with one release-store of `tail`: a writer
  killed mid-copy leaves nothing visible, and `put_many` is all-or-nothing.
* Readers take records from `head` under the mutex.  They copy the records
  out first and only then advance `head`: a reader killed mid-copy leaves
  the records in place for the next reader.
* A message whose record is larger than the whole ring *streams*: its writer
  marks itself `stream_writer` (no other writer may append meanwhile),
  publishes the header, then the body chunk by chunk as room appears; the
  reader that takes the header marks itself `stream_reader` (no other reader
  may take meanwhile) and copies chunks out as they arrive.  The copies run
  without the mutex, because the stream owner alone may touch those bytes.
  A stream whose writer or reader dies (or gives up on Ctrl-C) is cleaned up
  by whoever is blocked behind it: nothing hangs, and the ring stays framed.
* A message whose out-of-band buffers (arrays) add up to SIDE_MIN_BYTES or
  more leaves them in a region of the ring's side arena (_side.pyx), copied
  there by its writer before it takes the mutex; its record (KIND_SIDE) only
  names the region.  The writer marks the region QUEUED just before it
  publishes the record, and the reader claims it before it moves `head`
  past the record, so the region always belongs to someone who can give it
  back, or to a process whose death lets others take it back.
* `written - taken` (records in the ring; each side counts on its own cache
  line) and `pending` (messages admitted against `maxsize` but still
  buffered in a producer) implement maxsize.  After a process dies holding
  the mutex, the record count is recomputed from the records.
* Lock waits have deadlines: a live process that keeps the lock (stopped
  mid-put) delays others only until their own timeouts.

A ring that is one direction of a Pipe is bound, per process, to two
descriptors (bind_connection): a hang-up socket, which reads EOF once every
handle of the other end is closed (the kernel counts handles across fork,
spawn and death), and an eventfd that mirrors "records are waiting" once a
reader has asked for a descriptor to select on (arm).  Then a get on an empty
ring whose writers are gone raises EOFError, and a put whose readers are gone
raises BrokenPipeError, as they do on the standard library's pipes.

Blocking: spin (set_spin_seconds, 20 us by default) polling `tail` (readers)
or `head` (writers) without the lock, then sleep on a futex sequence in
slices; waiter counts let the other side skip the wake-up call when nobody
sleeps.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.math cimport INFINITY
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy
from posix.unistd cimport getpid, read, write

from fastmp._buffer cimport LARGE_MESSAGE, LargeBuffer, new_large_buffer
from fastmp._message cimport _KIND_PICKLE_OOB, _KIND_SIDE
from fastmp._segment cimport Segment
from fastmp._side cimport SIDE_MIN_BYTES, SideArena, _Lease
from fastmp._sync cimport (
    deadline_after, fastmp_cpu_relax, fastmp_load_acquire_u64,
    fastmp_store_release_u64, monotonic, mutex_acquire, mutex_init, mutex_release, pid_alive,
    pthread_mutex_consistent, pthread_mutex_lock, pthread_mutex_trylock, repair_fn, wait_slice,
    wake,
)

cdef extern from "<errno.h>":
    int EOWNERDEAD
    int EPIPE
    int EBUSY

cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int MSG_PEEK
    int MSG_DONTWAIT

cdef enum:
    RECORD_HEADER = 16
    # Kinds with this bit come back as a bytearray (writable), others as bytes.
    KIND_WRITABLE = 0x100
    # Copies at least this large run with the GIL released.
    BIG_COPY = 262144
    # _relock's attempts before it blocks in pthread_mutex_lock.
    RELOCK_TRIES = 100
    # Stream owner states besides a pid.
    STREAM_IDLE = 0
    STREAM_ABANDONED = -1

# How long a waiter polls before it sleeps.  A sleep and its wake-up cost
# ~6-7 us each way here (condvar, futex, pipe alike), so a waiter whose peer
# answers while it still polls saves both.  A C peer answers within ~1-2 us,
# but a Python peer needs a few microseconds of interpreter time to turn a
# message around: measured ping-pong between two processes gave p50 14 us
# with a 2 us spin, 1.0 us with 10-20 us, and 20 us also brought p99 from
# ~30-50 us to ~3 us.  The spin is bounded, so a slow peer costs at most
# 20 us of CPU per blocking call before the waiter sleeps.
cdef double _spin_seconds = 20e-6


def get_spin_seconds():
    """How long a blocked get/put polls before it sleeps (seconds)."""
    return _spin_seconds


def set_spin_seconds(double seconds):
    """Trade CPU for latency: 0 never spins; larger values keep a waiter
    polling longer before it sleeps (each sleep/wake costs ~6-7 us here)."""
    global _spin_seconds
    if not 0 <= seconds <= 0.01:
        raise ValueError(f"spin time must be between 0 and 0.01 s, got {seconds}")
    _spin_seconds = seconds

PUT_WRITTEN_ = PUT_WRITTEN
PUT_ADMITTED_ = PUT_ADMITTED
PUT_FULL_ = PUT_FULL
PUT_UNCOUNTED_ = PUT_UNCOUNTED

HEADER_SIZE = sizeof(fastmp_ring_header)

import os as _os
cdef Py_ssize_t _PHYSICAL_MEMORY = _os.sysconf("SC_PHYS_PAGES") * _os.sysconf("SC_PAGE_SIZE")


# _await_records() steps.
cdef enum:
    WAIT_AGAIN = 0
    WAIT_EXPIRED = 1
    WAIT_WRITERS_GONE = 2


cdef enum:
    MODE_PUT = 0
    MODE_ADMITTED = 1
    MODE_ADMIT_ONLY = 2


cdef inline double _room_deadline(double room_wait) noexcept nogil:
    return monotonic() + room_wait if room_wait < INFINITY else INFINITY


cdef inline uint64_t _align8(uint64_t n) noexcept nogil:
    return (n + 7) & ~(<uint64_t>7)


cdef inline uint64_t _record_size(uint64_t length) noexcept nogil:
    return RECORD_HEADER + _align8(length)


cdef class _Body:
    """The bytes of one message, held in place as one or several buffers
    (a pickle and its out-of-band buffers): no joining copy."""
    cdef Py_buffer* views
    cdef Py_ssize_t n
    cdef uint64_t length

    def __cinit__(self, object parts):
        cdef Py_ssize_t i, count
        if not isinstance(parts, (list, tuple)):
            parts = (parts,)
        count = len(parts)
        self.views = <Py_buffer*>calloc(count if count > 0 else 1, sizeof(Py_buffer))
        if self.views == NULL:
            raise MemoryError()
        for i in range(count):
            # PyBUF_SIMPLE: contiguous bytes only; anything else raises BufferError.
            PyObject_GetBuffer(parts[i], &self.views[i], PyBUF_SIMPLE)
            self.n = i + 1
            self.length += <uint64_t>self.views[i].len

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.views != NULL:
            for i in range(self.n):
                PyBuffer_Release(&self.views[i])
            free(self.views)

    cdef void copy_range(self, FramedRing ring, uint64_t pos, uint64_t off, uint64_t n) noexcept nogil:
        """Copy body bytes [off, off + n) to ring position `pos`."""
        cdef Py_ssize_t i = 0
        cdef uint64_t start = 0, vlen, within, take
        while i < self.n and n > 0:
            vlen = <uint64_t>self.views[i].len
            if off < start + vlen:
                within = off - start
                take = vlen - within
                if take > n:
                    take = n
                ring._copy_in(pos, <const char*>self.views[i].buf + within, take)
                pos += take
                off += take
                n -= take
            start += vlen
            i += 1


cdef class _SideBody(_Body):
    """The record of a message whose buffers went to the side arena, and the
    region they are in (given back if the put fails, marked QUEUED just
    before the record is published)."""
    cdef _Lease lease


cdef inline uint64_t _side_bytes(object body):
    return (<_SideBody>body).lease.size if type(body) is _SideBody else 0


cdef object _new_body(uint32_t kind, uint64_t length, char** dst):
    """Where a received body goes: bytes, or for writable kinds (out-of-band
    buffers: arrays) a bytearray, or a recycled LargeBuffer when large."""
    cdef object body
    if kind & KIND_WRITABLE:
        if length >= LARGE_MESSAGE:
            body = new_large_buffer(<Py_ssize_t>length)
            dst[0] = (<LargeBuffer>body).data
        else:
            body = PyByteArray_FromStringAndSize(NULL, <Py_ssize_t>length)
            dst[0] = PyByteArray_AS_STRING(body)
    else:
        body = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
        dst[0] = PyBytes_AS_STRING(body)
    return body


cdef inline uint64_t _body_length(object body) except? 0:
    if PyBytes_CheckExact(body):
        return <uint64_t>PyBytes_GET_SIZE(body)
    return (<_Body>body).length


cdef object _as_body(object body):
    """bytes stay as they are (fast path); anything else becomes a _Body."""
    if PyBytes_CheckExact(body):
        return body
    return _Body(body)


cdef void _repair_ring(void* state) noexcept nogil:
    """Runs with the mutex held after its previous owner died (EOWNERDEAD).

    head and tail are single aligned stores published after the copies they
    cover, so they are right.  The record counters may have missed their
    update: recount the records between head and tail."""
    cdef fastmp_ring_header* hdr = <fastmp_ring_header*>state
    cdef char* data = <char*>hdr + hdr.header_size
    cdef uint64_t cap = hdr.capacity
    cdef uint64_t pos = hdr.head, off
    cdef int64_t n = 0
    cdef record_header rh
    cdef char* dst
    cdef uint64_t first
    if hdr.stream_reader != STREAM_IDLE:
        pos += hdr.stream_remaining
    while pos + RECORD_HEADER <= hdr.tail:
        off = pos % cap
        dst = <char*>&rh
        first = cap - off
        if first >= RECORD_HEADER:
            memcpy(dst, data + off, RECORD_HEADER)
        else:
            memcpy(dst, data + off, first)
            memcpy(dst + first, data, RECORD_HEADER - first)
        n += 1
        if _record_size(rh.length) > cap:
            break               # a stream: its body may still be arriving
        pos += _record_size(rh.length)
    hdr.taken = hdr.written - n


@cython.final
cdef class FramedRing:
    """Many-writer, many-reader ring of framed messages in a shared segment.

    `capacity` is the data area in bytes; `maxsize` > 0 bounds the number of
    messages (as multiprocessing.Queue's maxsize), <= 0 leaves it unbounded.
    """

    def __cinit__(self):
        self.hangup_fd = -1
        self.ready_fd = -1

    def __init__(self, Py_ssize_t capacity, Py_ssize_t maxsize=0):
        cdef uint64_t cap
        if capacity < 64:
            raise ValueError(f"ring capacity must be at least 64 bytes, got {capacity}")
        if capacity > _PHYSICAL_MEMORY:
            # The ring is pre-faulted (MAP_POPULATE): more than the machine
            # has would thrash or wake the OOM killer instead of failing.
            raise ValueError(f"ring capacity of {capacity} bytes is more than this machine's "
                             f"memory ({_PHYSICAL_MEMORY} bytes)")
        cap = _align8(<uint64_t>capacity)
        hsize = _align8(sizeof(fastmp_ring_header))
        self._bind(Segment(hsize + cap))
        hdr = self.hdr
        # The segment is fresh and zero-filled: only non-zero fields are set.
        hdr.header_size = <uint32_t>hsize
        hdr.capacity = cap
        hdr.maxsize = maxsize if maxsize > 0 else 0
        mutex_init(&hdr.mutex)
        hdr.layout_version = FASTMP_RING_LAYOUT_VERSION
        hdr.magic = FASTMP_RING_MAGIC
        self._bind(self.segment)
        self.side = SideArena()

    def _bind(self, Segment segment):
        self.segment = segment
        self.hdr = <fastmp_ring_header*>segment.addr
        self.data = segment.addr + self.hdr.header_size
        self.capacity = self.hdr.capacity
        self.maxsize = self.hdr.maxsize
        # Streams move in chunks of a quarter ring so writer and reader copy
        # in parallel instead of taking turns on the whole ring.
        self.stream_chunk = _align8(self.capacity // 4) if self.capacity >= 256 else self.capacity

    @staticmethod
    def _attach(Segment segment, SideArena side=None):
        cdef FramedRing ring = FramedRing.__new__(FramedRing)
        cdef fastmp_ring_header* hdr = <fastmp_ring_header*>segment.addr
        if segment.size < <Py_ssize_t>sizeof(fastmp_ring_header) or hdr.magic != FASTMP_RING_MAGIC:
            raise ValueError("shared memory does not hold a fastmp ring")
        if hdr.layout_version != FASTMP_RING_LAYOUT_VERSION:
            raise ValueError(f"fastmp ring layout version {hdr.layout_version} is not "
                             f"the supported version {FASTMP_RING_LAYOUT_VERSION}")
        ring._bind(segment)
        ring.side = side
        return ring

    def __reduce__(self):
        # The segment's own reduction enforces "only while starting a process".
        return (FramedRing._attach, (self.segment, self.side))

    # -- observers (approximate without the lock, as qsize() is everywhere) --

    @property
    def count(self):
        return self.hdr.written - self.hdr.taken

    @property
    def pending(self):
        return self.hdr.pending

    @property
    def readers_waiting(self):
        return self.hdr.readers_waiting

    @property
    def writers_waiting(self):
        return self.hdr.writers_waiting

    @property
    def used_bytes(self):
        return self.hdr.tail - self.hdr.head

    # -- low level --------------------------------------------------------

    cdef void _copy_in(self, uint64_t pos, const char* src, uint64_t n) noexcept nogil:
        cdef uint64_t off = pos % self.capacity
        cdef uint64_t first = self.capacity - off
        if n <= first:
            memcpy(self.data + off, src, n)
        else:
            memcpy(self.data + off, src, first)
            memcpy(self.data, src + first, n - first)

    cdef void _copy_out(self, uint64_t pos, char* dst, uint64_t n) noexcept nogil:
        cdef uint64_t off = pos % self.capacity
        cdef uint64_t first = self.capacity - off
        if n <= first:
            memcpy(dst, self.data + off, n)
        else:
            memcpy(dst, self.data + off, first)
            memcpy(dst + first, self.data, n - first)

    cdef int _lock(self, double deadline=INFINITY, double patience=INFINITY) except -1:
        """Take the mutex: 0 once held, 1 if not before the deadline (see
        mutex_acquire).  Interruptible by Ctrl-C (raises, not holding it)."""
        return mutex_acquire(&self.hdr.mutex, _repair_ring, <void*>self.hdr, deadline, patience)

    cdef void _relock(self) noexcept nogil:
        """Take the mutex back after an unlocked copy or spin, whatever it
        takes: giving up there would strand shared state half-updated, and
        holders only ever hold it for a short copy, so this cannot hang."""
        cdef int rc = EBUSY
        cdef int i
        # The holder is most often the other side finishing a put or get
        # (tens of nanoseconds): try for a while before pthread_mutex_lock,
        # which sleeps in the kernel at once and makes the holder's unlock a
        # syscall too (a robust mutex does no adaptive spinning).
        for i in range(RELOCK_TRIES):
            rc = pthread_mutex_trylock(&self.hdr.mutex)
            if rc != EBUSY:
                break
            fastmp_cpu_relax()
            fastmp_cpu_relax()
            fastmp_cpu_relax()
            fastmp_cpu_relax()
        if rc == EBUSY:
            rc = pthread_mutex_lock(&self.hdr.mutex)
        if rc == EOWNERDEAD:
            _repair_ring(<void*>self.hdr)
            pthread_mutex_consistent(&self.hdr.mutex)

    cdef void _admit_pending(self, Py_ssize_t k) noexcept nogil:
        self.hdr.pending += k

    cdef void _drop_pending(self, Py_ssize_t k) noexcept nogil:
        self.hdr.pending -= k
        if self.hdr.pending < 0:
            self.hdr.pending = 0

    cdef void _unlock(self) noexcept nogil:
        mutex_release(&self.hdr.mutex)

    cdef void _wake_readers(self, bint everyone) noexcept nogil:
        # Skip the syscall when nobody sleeps (~0.3 us even with no waiter).
        if self.hdr.readers_waiting > 0:
            wake(&self.hdr.not_empty, everyone)

    cdef void _wake_writers(self) noexcept nogil:
        # Writers wait for different amounts of room: wake them all and let
        # each re-check.
        if self.hdr.writers_waiting > 0:
            wake(&self.hdr.not_full, True)

    cdef int _spin_until_changed(self, bint for_readers, double deadline) except -1:
        """Mutex held on entry and exit.  Drop it and poll the position the
        other side moves (tail for readers, head for writers) for up to the
        spin time.  Returns 1 if it moved while polling.

        Whatever it returns, the caller must re-check its condition under the
        lock before it sleeps: the other side may publish after the last poll,
        and it signals only waiters it can see (registered under the lock)."""
        cdef uint64_t* watched = &self.hdr.tail if for_readers else &self.hdr.head
        cdef uint64_t seen = watched[0]
        cdef double until
        cdef int moved = 0
        cdef int i
        if _spin_seconds <= 0 or deadline <= 0:
            return 0
        self._unlock()
        with nogil:
            until = monotonic() + _spin_seconds
            while not moved:
                for i in range(32):
                    if fastmp_load_acquire_u64(watched) != seen:
                        moved = 1
                        break
                    fastmp_cpu_relax()
                if moved or monotonic() >= until:
                    break
        with nogil:
            self._relock()
        return moved

    cdef void _spin_unlocked(self, double deadline) noexcept:
        """Mutex not held.  Poll `tail` for up to the spin time (or until the
        deadline), GIL released: a reader waiting for data."""
        cdef uint64_t seen = self.hdr.head
        cdef double until
        cdef int i
        if _spin_seconds <= 0:
            return
        with nogil:
            until = monotonic() + _spin_seconds
            if deadline < until:
                until = deadline
            while True:
                for i in range(32):
                    if fastmp_load_acquire_u64(&self.hdr.tail) != seen:
                        return
                    fastmp_cpu_relax()
                if monotonic() >= until:
                    return

    cdef int _await_records(self, bint* spun, double deadline, bint may_end) except -1:
        """Mutex held, nothing to take: one step of a reader's wait.  Polls
        once per call (spin, then the caller re-checks under the lock), then
        sleeps a slice per step.  WAIT_EXPIRED at the deadline;
        WAIT_WRITERS_GONE for a Connection whose writers are all gone (its
        hang-up socket reads EOF) when `may_end` (no other reader is in the
        middle of a stream): the ring was found empty under the mutex, after
        the writers' last publish, so that is end of file.  The socket is
        looked at only after the poll, so a busy pipe makes no syscall."""
        if may_end and self.hangup_fd >= 0 and (spun[0] or monotonic() >= deadline) \
                and self._peer_gone():
            return WAIT_WRITERS_GONE
        if monotonic() >= deadline:
            return WAIT_EXPIRED
        if not spun[0]:
            spun[0] = True
            self._spin_until_changed(True, deadline)
            return WAIT_AGAIN
        self._wait(True, deadline)
        return WAIT_AGAIN

    cdef int _wait(self, bint for_readers, double deadline) except -1:
        """Mutex held on entry and exit.  Sleep one slice on not_empty
        (readers) or not_full (writers).  Returns 1 once the deadline has
        passed.  Raises KeyboardInterrupt & co. with the mutex still held."""
        cdef uint32_t* sequence = &self.hdr.not_empty if for_readers else &self.hdr.not_full
        cdef int32_t* sleepers = &self.hdr.readers_waiting if for_readers else &self.hdr.writers_waiting
        cdef uint32_t seen = sequence[0]
        cdef int expired
        sleepers[0] += 1
        with nogil:
            expired = wait_slice(sequence, seen, &self.hdr.mutex, deadline, _repair_ring,
                                 <void*>self.hdr)
        sleepers[0] -= 1
        PyErr_CheckSignals()
        return expired

    # -- Pipe support -----------------------------------------------------

    def bind_connection(self, int hangup_fd, int ready_fd):
        """Make this process's ring object one direction of a Connection:
        `hangup_fd` is the end's socket (EOF = the other end is gone),
        `ready_fd` the direction's eventfd (see arm).  The descriptors stay
        the caller's: unbind before closing them."""
        self.hangup_fd = hangup_fd
        self.ready_fd = ready_fd
        # Differs from the shared counter: the first put looks once.
        self.seen_hangups = self.hdr.hangups - 1
        self.peer_closed = False

    def unbind_connection(self):
        self.hangup_fd = -1
        self.ready_fd = -1

    def arm(self):
        """From now on keep ready_fd readable while records are waiting (for
        select/epoll on Connection.fileno()).  Sticky for the ring's life."""
        self._lock()
        try:
            self.hdr.armed = 1
            self._signal_ready()
        finally:
            self._unlock()

    def hang_up(self):
        """A Connection end has just closed its socket: wake every waiter so
        it re-checks whether its peer is gone, and make the next put look.

        Waits at most 50 ms for the mutex and otherwise gives up: close() may
        run from a finaliser (garbage collection) while this very thread
        holds the mutex in another object on the same ring, and the wake-up
        only saves peers the wait for their next 50 ms slice."""
        if self._lock(monotonic() + 0.05):
            return
        self.hdr.hangups += 1
        wake(&self.hdr.not_empty, True)
        wake(&self.hdr.not_full, True)
        self._unlock()

    def wait_readable(self, bint block=True, object timeout=None):
        """True once a message is waiting or the writers are gone (a get
        would not block), False when the deadline passes first."""
        cdef double deadline = deadline_after(timeout, block)
        cdef bint spun = False
        cdef int step
        if self._lock(deadline):
            return False
        try:
            while True:
                if self.hdr.written != self.hdr.taken:
                    return True
                step = self._await_records(&spun, deadline, True)
                if step != WAIT_AGAIN:
                    return step == WAIT_WRITERS_GONE
        finally:
            self._unlock()

    @property
    def armed(self):
        return bool(self.hdr.armed)

    cdef int _peer_gone(self) noexcept nogil:
        """1 if the hang-up socket reads EOF: every handle of the other end
        is closed, by close() or by its processes' deaths.  Nothing is ever
        sent on it, so any byte count but 0 means "still there"."""
        cdef char c
        if self.hangup_fd < 0:
            return 0
        return recv(self.hangup_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0

    cdef int _check_peer_for_writer(self, bint force) except -1:
        """Mutex held.  BrokenPipeError if the reading end is gone.  Unless
        forced, looks only when some end closed since this process last
        looked (`hangups` moved), so an ordinary put makes no syscall."""
        if self.hangup_fd < 0:
            return 0
        if not force and self.hdr.hangups == self.seen_hangups and not self.peer_closed:
            return 0
        self.seen_hangups = self.hdr.hangups
        if self.peer_closed or self._peer_gone():
            self.peer_closed = True     # for good: a closed end never reopens
            raise BrokenPipeError(EPIPE, "the other end of the pipe is closed")
        return 0

    cdef void _signal_ready(self) noexcept nogil:
        """Mutex held, after records were published: if armed, make ready_fd
        readable (once per empty -> non-empty change)."""
        cdef uint64_t one = 1
        if self.hdr.armed and not self.hdr.signalled and self.ready_fd >= 0 and \
                self.hdr.written != self.hdr.taken:
            # Write, then flag: a death in between leaves the flag clear and
            # the next writer writes again (harmless), never a lost wake-up.
            write(self.ready_fd, &one, 8)
            self.hdr.signalled = 1

    cdef void _clear_ready(self) noexcept nogil:
        """Mutex held, after records were taken: drain ready_fd once the
        ring has no record left."""
        cdef uint64_t value
        if self.hdr.signalled and self.hdr.written == self.hdr.taken and self.ready_fd >= 0:
            # Unflag, then drain: a death in between leaves a spurious
            # wake-up (the fd stays readable), never a lost one.
            self.hdr.signalled = 0
            read(self.ready_fd, &value, 8)

    cdef void _retract_stream(self, bint admitted) noexcept nogil:
        """Mutex held; this process's stream has no reader yet: take it back."""
        fastmp_store_release_u64(&self.hdr.tail, self.hdr.stream_start)
        self.hdr.written -= 1
        self.hdr.stream_writer = STREAM_IDLE
        if admitted:
            self._admit_pending(1)
        self._clear_ready()

    # -- writing ----------------------------------------------------------

    def put(self, uint32_t kind, object body, bint block=True, object timeout=None,
            double room_wait=INFINITY):
        """Write one message.  Returns PUT_WRITTEN, PUT_ADMITTED (maxsize let it
        in but the ring had no room within `room_wait` seconds: the caller
        keeps it and passes it to put_admitted later) or PUT_FULL."""
        cdef double deadline = deadline_after(timeout, block)
        if PyBytes_CheckExact(body) and \
                _record_size(<uint64_t>PyBytes_GET_SIZE(body)) <= self.capacity and \
                self._try_put_bytes(kind, body, _record_size(<uint64_t>PyBytes_GET_SIZE(body))):
            return PUT_WRITTEN
        body = self._place(kind, body)
        if type(body) is _SideBody:
            kind = _KIND_SIDE
        cdef uint64_t length = _body_length(body)
        if _record_size(length) > self.capacity:
            return self._put_stream(kind, body, length, False, deadline, _room_deadline(room_wait))
        return self._put_records([(kind, body, length)], _record_size(length), MODE_PUT,
                                 deadline, room_wait, _side_bytes(body))

    cdef int send(self, uint32_t kind, object body) except -1:
        """put(kind, body) blocking with no deadline, for C callers (a
        Connection's send): PUT_WRITTEN, or raises."""
        cdef uint64_t need
        if PyBytes_CheckExact(body):
            need = _record_size(<uint64_t>PyBytes_GET_SIZE(body))
            if need <= self.capacity and self._try_put_bytes(kind, body, need):
                return PUT_WRITTEN
        body = self._place(kind, body)
        if type(body) is _SideBody:
            kind = _KIND_SIDE
        cdef uint64_t length = _body_length(body)
        if _record_size(length) > self.capacity:
            return self._put_stream(kind, body, length, False, INFINITY, INFINITY)
        return self._put_records([(kind, body, length)], _record_size(length), MODE_PUT,
                                 INFINITY, INFINITY, _side_bytes(body))

    cdef bint _try_put_bytes(self, uint32_t kind, bytes body, uint64_t need) except -1:
        """The common send: one small bytes record and room for it right
        away.  Writes it and returns True, or returns False having changed
        nothing (no room, a stream in the way, the lock busy, an end closed)
        and the caller takes the general path, which handles all of those.
        Saves the batch list and tuples of _put_records (~60 ns)."""
        cdef record_header rh
        cdef uint64_t pos
        cdef int rc = pthread_mutex_trylock(&self.hdr.mutex)
        if rc == EOWNERDEAD:
            # Ours now, left inconsistent by a holder that died: repair it
            # as every other lock path does.
            _repair_ring(<void*>self.hdr)
            pthread_mutex_consistent(&self.hdr.mutex)
        elif rc != 0:
            return False        # busy: the general path waits for it
        if self.hdr.stream_writer != STREAM_IDLE or not self._count_allows(1, False) or \
                self.capacity - (self.hdr.tail - self.hdr.head) < need or \
                (self.hangup_fd >= 0 and (self.peer_closed or
                                          self.hdr.hangups != self.seen_hangups)):
            self._unlock()
            return False
        pos = self.hdr.tail
        rh.length = <uint64_t>PyBytes_GET_SIZE(body)
        rh.kind = kind
        rh.reserved = 0
        self._copy_in(pos, <const char*>&rh, RECORD_HEADER)
        self._copy_in(pos + RECORD_HEADER, PyBytes_AS_STRING(body), rh.length)
        fastmp_store_release_u64(&self.hdr.tail, pos + need)
        self.hdr.written += 1
        self._wake_readers(False)
        self._signal_ready()
        self._unlock()
        return True

    cdef bint _side_room(self, uint64_t side_need) noexcept nogil:
        """Mutex held.  Whether `side_need` more bytes may wait in the side
        arena for a reader: the ring's capacity bounds the bytes in flight
        (not yet taken by a reader) in the ring and the arena alike, so a
        fast producer is held back by a slow consumer as with small
        messages.  A single message larger than that goes when nothing else
        waits (as a streamed one does)."""
        cdef uint64_t queued = self.side.queued_bytes()
        return queued == 0 or queued + side_need <= self.capacity

    cdef object _place(self, uint32_t kind, object body):
        """The body to write for (kind, body): a _SideBody when its
        out-of-band buffers are large enough for the side arena (copied
        there now, outside the mutex: the message's one copy), otherwise
        the body as the ring copies it (_as_body)."""
        cdef uint64_t buffered = 0
        if kind != (_KIND_PICKLE_OOB | KIND_WRITABLE) or type(body) is not list or self.side is None:
            return _as_body(body)
        for raw in (<list>body)[3::2]:
            buffered += <uint64_t>raw.nbytes
        if buffered < SIDE_MIN_BYTES:
            return _as_body(body)
        packed = self.side.pack(body)
        if packed is None:
            return _as_body(body)       # every region is in use: the ring's way
        record, lease = packed
        side_body = _SideBody(record)
        if _record_size((<_SideBody>side_body).length) > self.capacity:
            return _as_body(body)       # a huge pickle: stream it whole (lease given back)
        (<_SideBody>side_body).lease = lease
        return side_body

    def put_many(self, records, bint block=True, object timeout=None,
                 double room_wait=INFINITY):
        """Write a batch of (kind, body) records, all or nothing, under one lock.
        `body` is bytes or a list of contiguous buffers to concatenate."""
        cdef double deadline = deadline_after(timeout, block)
        cdef uint64_t need = 0, side_need = 0
        cdef list bodies = self._prepare_batch(records, &need, True, &side_need)
        if not bodies:
            return PUT_WRITTEN
        if need > self.capacity:
            kind, body, length = bodies[0]
            return self._put_stream(kind, body, length, False, deadline, _room_deadline(room_wait))
        return self._put_records(bodies, need, MODE_PUT, deadline, room_wait, side_need)

    cdef list _prepare_batch(self, object records, uint64_t* need, bint place=True,
                             uint64_t* side_need=NULL):
        """(kind, body, length) triples for a batch, the ring bytes it needs
        and (side_need) the side-arena bytes its large arrays took; ValueError
        if the batch can never fit (a single message larger than the ring
        can: it streams).  place=False: the batch is only counted, so large
        buffers are not copied to the side arena."""
        cdef list bodies = []
        cdef uint64_t length
        cdef Py_ssize_t k
        need[0] = 0
        for kind, body in records:
            body = self._place(kind, body) if place else _as_body(body)
            if type(body) is _SideBody:
                kind = _KIND_SIDE
                if side_need != NULL:
                    side_need[0] += _side_bytes(body)
            length = _body_length(body)
            bodies.append((kind, body, length))
            need[0] += _record_size(length)
        k = len(bodies)
        if self.maxsize > 0 and k > self.maxsize:
            raise ValueError(f"a batch of {k} messages can never fit a queue of maxsize {self.maxsize}")
        if k > 1 and need[0] > self.capacity:
            raise ValueError(
                f"a batch of {k} messages takes {need[0]} bytes, more than the ring's capacity of "
                f"{self.capacity} bytes: send fewer messages per batch or create the queue with "
                f"a larger capacity")
        return bodies

    def put_admitted(self, records):
        """Write records that put/put_many answered PUT_ADMITTED for, in order.
        Blocks (interruptibly) until there is room: they are already counted.
        A batch larger than the ring goes in several writes."""
        cdef list group = []
        cdef uint64_t need = 0, side_need = 0, length, size
        for kind, body in records:
            body = self._place(kind, body)
            if type(body) is _SideBody:
                kind = _KIND_SIDE
            length = _body_length(body)
            size = _record_size(length)
            if group and (need + size > self.capacity or
                          (side_need and side_need + _side_bytes(body) > self.capacity)):
                self._put_records(group, need, MODE_ADMITTED, INFINITY, INFINITY, side_need)
                group = []
                need = side_need = 0
            if size > self.capacity:
                self._put_stream(kind, body, length, True, INFINITY, INFINITY)
                continue
            group.append((kind, body, length))
            need += size
            side_need += _side_bytes(body)
        if group:
            self._put_records(group, need, MODE_ADMITTED, INFINITY, INFINITY, side_need)

    def release_admitted(self, Py_ssize_t k):
        """Forget k admitted messages that will never be written (a producer
        that cancels its buffer)."""
        self._lock()
        self._drop_pending(k)
        self._wake_writers()
        self._unlock()

    cdef bint _count_allows(self, Py_ssize_t k, bint admitted) noexcept nogil:
        return admitted or self.maxsize <= 0 or self.hdr.written - self.hdr.taken + self.hdr.pending + k <= self.maxsize

    def admit(self, records, bint block=True, object timeout=None,
              double room_wait=INFINITY):
        """Count a batch as buffered by its producer without writing it
        (PUT_ADMITTED), or PUT_FULL (maxsize), or PUT_UNCOUNTED (unbounded
        ring whose lock a live process kept for `room_wait`): for a producer
        that must keep buffering to stay in order.  The batch is checked as
        put_many checks it (ValueError if it can never fit)."""
        cdef uint64_t need = 0
        cdef list bodies = self._prepare_batch(records, &need, False)
        return self._put_records(bodies, 0, MODE_ADMIT_ONLY, deadline_after(timeout, block),
                                 room_wait)

    cdef int _put_records(self, list bodies, uint64_t need, int mode, double deadline,
                          double room_wait, uint64_t side_need=0) except -1:
        """bodies: (kind, body, length) triples, `need` bytes in all, whose
        large arrays hold `side_need` bytes of the side arena (waits, as for
        ring room, until the side arena has room to queue them: _side_room).
        MODE_PUT: wait up to `deadline` for maxsize to admit them, then up to
        `room_wait` seconds for room, else admit them only (PUT_ADMITTED).
        MODE_ADMITTED: already admitted; wait for room as long as it takes.
        MODE_ADMIT_ONLY: count them against maxsize, write nothing."""
        cdef Py_ssize_t k = len(bodies)
        cdef uint64_t pos, length
        cdef record_header rh
        cdef bint admitted = mode == MODE_ADMITTED
        cdef bint counted, spun = False
        cdef double now, room_deadline = -1.0, wait_until
        cdef const char* src
        cdef _Body parts
        if self._lock(INFINITY if admitted else deadline,
                      room_wait if self.maxsize <= 0 and not admitted else INFINITY):
            # A live process keeps the lock (stopped mid-put?).  Unbounded:
            # the caller buffers it uncounted, as a put that never blocks
            # must; bounded: no free slot could be seen in time.
            return PUT_UNCOUNTED if self.maxsize <= 0 else PUT_FULL
        try:
            self._check_peer_for_writer(False)
            while True:
                counted = self._count_allows(k, admitted)
                if counted and mode == MODE_ADMIT_ONLY:
                    self._admit_pending(k)
                    return PUT_ADMITTED
                if counted and self.hdr.stream_writer == STREAM_IDLE and \
                        self.capacity - (self.hdr.tail - self.hdr.head) >= need and \
                        (side_need == 0 or self._side_room(side_need)):
                    break
                if self.hdr.stream_writer != STREAM_IDLE:
                    self._clear_dead_stream_writer()
                now = monotonic()
                if room_deadline < 0:
                    # Measured from the first time there is no room: the
                    # common, uncontended put never reads the clock.
                    room_deadline = now + room_wait if room_wait < INFINITY else INFINITY
                if counted and now >= room_deadline:
                    self._admit_pending(k)
                    return PUT_ADMITTED
                if not counted and now >= deadline:
                    return PUT_FULL
                wait_until = room_deadline if counted else deadline
                if not spun:
                    # Poll once per call, then re-check under the lock.
                    spun = True
                    self._spin_until_changed(False, wait_until)
                    continue
                self._check_peer_for_writer(True)
                self._wait(False, wait_until)
            # Copy the whole batch beyond tail, then publish it with one store.
            pos = self.hdr.tail
            rh.reserved = 0
            for kind, body, length in bodies:
                if type(body) is _SideBody:
                    # Nothing can fail from here on: the region now belongs
                    # to the message (a sender may exit right after put).
                    (<_SideBody>body).lease.mark_queued()
                rh.length = length
                rh.kind = kind
                self._copy_in(pos, <const char*>&rh, RECORD_HEADER)
                if PyBytes_CheckExact(body):
                    src = PyBytes_AS_STRING(body)
                    if length >= BIG_COPY:
                        with nogil:
                            self._copy_in(pos + RECORD_HEADER, src, length)
                    else:
                        self._copy_in(pos + RECORD_HEADER, src, length)
                else:
                    parts = <_Body>body
                    if length >= BIG_COPY:
                        with nogil:
                            parts.copy_range(self, pos + RECORD_HEADER, 0, length)
                    else:
                        parts.copy_range(self, pos + RECORD_HEADER, 0, length)
                pos += _record_size(length)
            fastmp_store_release_u64(&self.hdr.tail, pos)
            self.hdr.written += k
            if admitted:
                self._drop_pending(k)
            self._wake_readers(k > 1)
            self._signal_ready()
            return PUT_WRITTEN
        finally:
            self._unlock()

    cdef void _skip_orphaned_stream(self) noexcept nogil:
        """Mutex held, stream_writer idle.  If the reader of the last stream
        died or gave up before reading all of it, the rest of that stream is
        all in the ring (its writer finished): skip it."""
        cdef int r = self.hdr.stream_reader
        if r == STREAM_IDLE or (r != STREAM_ABANDONED and pid_alive(r)):
            return
        fastmp_store_release_u64(&self.hdr.head, self.hdr.head + self.hdr.stream_remaining)
        self.hdr.stream_remaining = 0
        self.hdr.stream_reader = STREAM_IDLE
        self._wake_writers()
        self._wake_readers(True)

    cdef bint _clear_dead_stream_writer(self) noexcept nogil:
        """Mutex held.  If the streaming writer died or gave up, take its
        stream out of the way.  Returns True if the stream was cleared."""
        cdef int w = self.hdr.stream_writer
        cdef int r = self.hdr.stream_reader
        if w == STREAM_IDLE or (w != STREAM_ABANDONED and pid_alive(w)):
            return False
        if r == STREAM_IDLE:
            if self.hdr.head <= self.hdr.stream_start:
                # Nobody started reading it: retract the partial message.
                fastmp_store_release_u64(&self.hdr.tail, self.hdr.stream_start)
                self.hdr.written -= 1
                self._clear_ready()
            self.hdr.stream_writer = STREAM_IDLE
        elif r == STREAM_ABANDONED or not pid_alive(r):
            # Both ends gone: everything after head belongs to the dead stream.
            fastmp_store_release_u64(&self.hdr.head, self.hdr.tail)
            self.hdr.stream_remaining = 0
            self.hdr.stream_reader = STREAM_IDLE
            self.hdr.stream_writer = STREAM_IDLE
        else:
            return False        # a live reader owns the clean-up (_consume_stream)
        wake(&self.hdr.not_full, True)
        wake(&self.hdr.not_empty, True)
        return True

    cdef int _put_stream(self, uint32_t kind, object body, uint64_t length, bint admitted,
                         double deadline, double room_deadline) except -1:
        """Send one message larger than the ring, chunk by chunk."""
        cdef uint64_t padded = _align8(length), written = 0, n, free_bytes, tail
        cdef record_header rh
        cdef int me = getpid()
        cdef bint counted, claimed = False, reader_started
        cdef double now
        cdef _Body parts = body if isinstance(body, _Body) else _Body(body)
        if self._lock(INFINITY if admitted else deadline,
                      INFINITY if admitted or self.maxsize > 0 else room_deadline - monotonic()):
            return PUT_UNCOUNTED if self.maxsize <= 0 else PUT_FULL
        try:
            self._check_peer_for_writer(False)
            while True:
                counted = self._count_allows(1, admitted)
                # A new stream also waits until no reader is attached to an
                # older one, so stream_reader always refers to this stream.
                if counted and self.hdr.stream_writer == STREAM_IDLE and \
                        self.hdr.stream_reader == STREAM_IDLE and \
                        self.capacity - (self.hdr.tail - self.hdr.head) >= RECORD_HEADER:
                    break
                if self.hdr.stream_writer != STREAM_IDLE:
                    self._clear_dead_stream_writer()
                elif self.hdr.stream_reader != STREAM_IDLE:
                    self._skip_orphaned_stream()
                now = monotonic()
                if counted and now >= room_deadline:
                    self._admit_pending(1)
                    return PUT_ADMITTED
                if not counted and now >= deadline:
                    return PUT_FULL
                self._check_peer_for_writer(True)
                self._wait(False, deadline if not counted else room_deadline)
            # Claim the ring for this stream and publish the header.
            claimed = True
            self.hdr.stream_writer = me
            self.hdr.stream_start = self.hdr.tail
            rh.length = length
            rh.kind = kind
            rh.reserved = 0
            self._copy_in(self.hdr.tail, <const char*>&rh, RECORD_HEADER)
            fastmp_store_release_u64(&self.hdr.tail, self.hdr.tail + RECORD_HEADER)
            self.hdr.written += 1
            if admitted:
                self._drop_pending(1)
            self._wake_readers(True)
            self._signal_ready()
            while written < padded:
                free_bytes = self.capacity - (self.hdr.tail - self.hdr.head)
                if free_bytes > 0:
                    n = padded - written
                    if n > free_bytes:
                        n = free_bytes
                    if n > self.stream_chunk:
                        n = self.stream_chunk
                    tail = self.hdr.tail
                    # Only this writer may write beyond tail while it owns the
                    # stream, and readers never look past tail: copy unlocked.
                    self._unlock()
                    with nogil:
                        parts.copy_range(self, tail, written, n)
                    with nogil:
                        self._relock()
                    fastmp_store_release_u64(&self.hdr.tail, tail + n)
                    written += n
                    self._wake_readers(True)
                    continue
                reader_started = self.hdr.stream_reader != STREAM_IDLE
                if reader_started and (self.hdr.stream_reader == STREAM_ABANDONED or
                                       not pid_alive(self.hdr.stream_reader)):
                    # The receiving process is gone with the first part of this
                    # message: it was taken, as any message is once a reader has
                    # it.  Drop the rest and free the ring.
                    fastmp_store_release_u64(&self.hdr.head, self.hdr.tail)
                    self.hdr.stream_reader = STREAM_IDLE
                    self.hdr.stream_remaining = 0
                    break
                if not reader_started and not admitted and monotonic() >= room_deadline:
                    # No reader is coming soon: take the message back so the
                    # caller can buffer it (an unbounded put must not block).
                    self._retract_stream(True)
                    claimed = False
                    self._wake_writers()
                    return PUT_ADMITTED
                if not reader_started and self._peer_gone():
                    # Nobody is left to read it (Pipe): take it back, and fail
                    # as a write to a pipe without readers does.
                    self._retract_stream(admitted)
                    claimed = False
                    self._wake_writers()
                    raise BrokenPipeError(EPIPE, "the other end of the pipe is closed")
                try:
                    self._wait(False, room_deadline if not reader_started else INFINITY)
                except BaseException:
                    # Ctrl-C half-way.  Unread: retract it.  Being read: leave
                    # it abandoned; the reader discards it.
                    if self.hdr.stream_reader == STREAM_IDLE and self.hdr.head <= self.hdr.stream_start:
                        self._retract_stream(admitted)
                    else:
                        self.hdr.stream_writer = STREAM_ABANDONED
                    claimed = False
                    self._wake_writers()
                    self._wake_readers(True)
                    raise
            self.hdr.stream_writer = STREAM_IDLE
            claimed = False
            self._wake_writers()
            self._wake_readers(True)
            return PUT_WRITTEN
        finally:
            self._unlock()

    # -- reading ----------------------------------------------------------

    def get(self, bint block=True, object timeout=None, int64_t max_length=-1):
        """Take one message: (kind, body), or None if the deadline passed.
        With max_length >= 0, a longer message raises OSError and stays in
        the ring.  A ring bound to a Connection raises EOFError when it is
        empty and its writers are gone."""
        return self._get(1, deadline_after(timeout, block), max_length)

    cdef object receive(self, int64_t max_length, const int64_t* length_extra=NULL):
        """get() blocking with no deadline, for C callers (a Connection's
        recv): (kind, body), or raises (EOFError, OSError for max_length).
        `length_extra[kind % 8]`, when given, is added to a body's length
        before it is compared with max_length: the caller's own length of
        a message of that kind (Connection.recv_bytes wraps some kinds)."""
        return self._get(1, INFINITY, max_length, length_extra)

    def get_many(self, Py_ssize_t max_messages, bint block=True, object timeout=None):
        """Take up to `max_messages` messages under one lock; [] on timeout.
        A streamed message always comes alone."""
        if max_messages < 1:
            raise ValueError(f"max_messages_to_get must be at least 1, got {max_messages}")
        out = self._get(max_messages, deadline_after(timeout, block))
        if out is None:
            return []
        return [out] if type(out) is tuple else out

    cdef object _get(self, Py_ssize_t max_messages, double deadline, int64_t max_length=-1,
                     const int64_t* length_extra=NULL):
        """One (kind, body) tuple when max_messages is 1, else a list of them,
        or None when the deadline passed (a streamed message: a tuple)."""
        cdef record_header rh
        cdef int r, step
        cdef bint spun = False
        cdef object got
        if fastmp_load_acquire_u64(&self.hdr.tail) == self.hdr.head and deadline > 0:
            # Empty: wait for the writer without the lock.  Locking only to
            # find the ring empty would contend with the very put being
            # waited for (measured: -25% for 64 B messages when the reader
            # is faster than the writer).
            spun = True
            self._spin_unlocked(deadline)
        if self._lock(deadline):
            return None     # a live process keeps the lock past our deadline
        try:
            while True:
                r = self.hdr.stream_reader
                if r != STREAM_IDLE:
                    if r == STREAM_ABANDONED or not pid_alive(r):
                        # Its reader died or gave up mid-message: finish
                        # consuming the stream (discarding it) to free the ring.
                        self._consume_stream(True)
                        continue
                elif self.hdr.tail != self.hdr.head:
                    self._copy_out(self.hdr.head, <char*>&rh, RECORD_HEADER)
                    if max_length >= 0 and \
                            self._message_length(&rh, length_extra) > <uint64_t>max_length:
                        raise OSError(f"bad message length: the message has "
                                      f"{self._message_length(&rh, length_extra)} bytes, "
                                      f"more than maxlength={max_length}; it stays unread")
                    if _record_size(rh.length) > self.capacity:
                        got = self._consume_stream(False)
                        if got is None:
                            continue    # its writer died: that put never returned
                        return got
                    if max_messages == 1:
                        return self._take_one(&rh)
                    return self._take(max_messages)
                step = self._await_records(&spun, deadline, r == STREAM_IDLE)
                if step == WAIT_WRITERS_GONE:
                    raise EOFError
                if step == WAIT_EXPIRED:
                    return None
        finally:
            self._unlock()

    cdef uint64_t _message_length(self, record_header* rh, const int64_t* length_extra) noexcept nogil:
        """Mutex held, `rh` at head: the length a maxlength limit compares,
        the body plus the caller's wrapping of its kind.  A side record is
        measured as the message it stands for (its first word)."""
        cdef uint64_t length = rh.length
        cdef uint32_t kind = rh.kind
        if kind == _KIND_SIDE:
            self._copy_out(self.hdr.head + RECORD_HEADER, <char*>&length, 8)
            kind = _KIND_PICKLE_OOB
        return length + (0 if length_extra == NULL else <uint64_t>length_extra[kind % 8])

    cdef object _take_one(self, record_header* rh):
        """Mutex held; the ordinary record `rh` is at head."""
        cdef uint64_t pos = self.hdr.head
        cdef object body = self._copy_body(pos, rh)
        cdef object lost = None
        if rh.kind == _KIND_SIDE:
            # Claimed before head moves past the record: a reader killed in
            # between leaves the region HELD by a dead pid, which the next
            # reader of the record may claim (or a sender take back).
            try:
                body = self._claim_side(body)
            except OSError as error:
                lost = error    # move past it, then report it, once
        fastmp_store_release_u64(&self.hdr.head, pos + _record_size(rh.length))
        self.hdr.taken += 1
        self._wake_writers()
        self._clear_ready()
        if lost is not None:
            raise lost
        return (rh.kind & ~(<uint32_t>KIND_WRITABLE), body)

    cdef object _claim_side(self, object body):
        """Mutex held: the region of a side record just taken becomes this
        process's (see _side.pyx)."""
        if self.side is None:
            raise OSError("fastmp: a large message arrived on a ring without its side arena")
        return self.side.claim(body)

    cdef object _copy_body(self, uint64_t pos, record_header* rh):
        """A new bytes (or bytearray for writable kinds) holding the body of
        the record at `pos`."""
        cdef char* dst
        cdef object body = _new_body(rh.kind, rh.length, &dst)
        if rh.length >= BIG_COPY:
            with nogil:
                self._copy_out(pos + RECORD_HEADER, dst, rh.length)
        else:
            self._copy_out(pos + RECORD_HEADER, dst, rh.length)
        return body

    cdef object _take(self, Py_ssize_t max_n):
        """Mutex held; at least one whole ordinary record at head."""
        cdef list out = []
        cdef uint64_t pos = self.hdr.head, tail = self.hdr.tail
        cdef record_header rh
        cdef Py_ssize_t n = 0
        cdef object body
        while n < max_n and pos < tail:
            self._copy_out(pos, <char*>&rh, RECORD_HEADER)
            if _record_size(rh.length) > self.capacity:
                break
            body = self._copy_body(pos, &rh)
            if rh.kind == _KIND_SIDE:
                try:
                    body = self._claim_side(body)
                except OSError:
                    if n:
                        break   # the next call takes it alone and reports it
                    return self._take_one(&rh)
            out.append((rh.kind & ~(<uint32_t>KIND_WRITABLE), body))
            pos += _record_size(rh.length)
            n += 1
        # Copied out: now the records may be overwritten.
        fastmp_store_release_u64(&self.hdr.head, pos)
        self.hdr.taken += n
        self._wake_writers()
        self._clear_ready()
        return out

    cdef object _consume_stream(self, bint discard):
        """Mutex held.  Receive the streamed message at head (discard=False),
        or finish discarding an abandoned one (discard=True).  Returns
        (kind, body), or None when discarding or when the writer died."""
        cdef record_header rh
        cdef uint64_t length = 0, padded, off, n, head
        cdef object body = None
        cdef char* dst = NULL
        cdef int w
        cdef uint32_t kind = 0
        if not discard:
            self._copy_out(self.hdr.head, <char*>&rh, RECORD_HEADER)
            length = rh.length
            kind = rh.kind
            padded = _align8(length)
            # Allocate before claiming the stream: a MemoryError here leaves
            # the message where it is and the ring untouched.
            body = _new_body(kind, length, &dst)
            self.hdr.stream_reader = getpid()
            self.hdr.stream_remaining = padded
            fastmp_store_release_u64(&self.hdr.head, self.hdr.head + RECORD_HEADER)
            self.hdr.taken += 1
            self._wake_writers()
            self._clear_ready()
        else:
            self.hdr.stream_reader = getpid()
            padded = self.hdr.stream_remaining
        try:
            while self.hdr.stream_remaining > 0:
                n = self.hdr.tail - self.hdr.head
                if n > 0:
                    if n > self.hdr.stream_remaining:
                        n = self.hdr.stream_remaining
                    head = self.hdr.head
                    off = padded - self.hdr.stream_remaining
                    if dst != NULL and off < length:
                        # Only the stream's reader reads these bytes and the
                        # writer never overwrites before head moves: copy unlocked.
                        self._unlock()
                        with nogil:
                            self._copy_out(head, dst + off, n if off + n <= length else length - off)
                            self._relock()
                    fastmp_store_release_u64(&self.hdr.head, head + n)
                    self.hdr.stream_remaining -= n
                    self._wake_writers()
                    continue
                w = self.hdr.stream_writer
                if w == STREAM_IDLE or w == STREAM_ABANDONED or not pid_alive(w):
                    # The writer is gone mid-message (its put never returned):
                    # the bytes after head are all that stream's; drop them.
                    fastmp_store_release_u64(&self.hdr.head, self.hdr.tail)
                    self.hdr.stream_remaining = 0
                    self.hdr.stream_writer = STREAM_IDLE
                    self.hdr.stream_reader = STREAM_IDLE
                    self._wake_writers()
                    self._wake_readers(True)
                    return None
                self._wait(True, INFINITY)
        except BaseException:
            # Ctrl-C half-way: hand the rest to whoever reads next, to discard.
            self.hdr.stream_reader = STREAM_ABANDONED
            self._wake_readers(True)
            raise
        self.hdr.stream_reader = STREAM_IDLE
        self._wake_readers(True)
        self._wake_writers()    # a new stream may be waiting for this one to end
        if discard:
            return None
        return (kind & ~(<uint32_t>KIND_WRITABLE), body)

    # -- test support -----------------------------------------------------

    def _acquire_and_keep_lock(self):
        """Lock the ring and never unlock: lets a test kill a process that
        holds the lock."""
        self._lock()
