"""FloatChannel: a padded single-writer single-reader float64 channel.

The lowest-latency way to pass floats between two processes: no pickling,
no lock, no system call while neither side has to sleep.

Protocol
--------
A memfd segment (fastmp._segment) holds a header of seven 64-byte cache lines
(_float_channel_layout.h) and a power-of-two array of float64 slots.

* Ring mode (the default) is a lock-free SPSC ring.  The writer stores values
  into the slots, then publishes its position `tail`; the reader copies
  values out, then publishes `head`.  Each side keeps a private lower bound of
  the other's position and only reads the other's cache line when that bound
  says full (writer) or empty (reader), so a stream moves whole cache lines
  of slots per coherence miss.  Positions are stored after the copies they
  cover, so a process killed mid-operation leaves the channel consistent: at
  worst the value a dying reader had read but not yet released is read again
  by the reader that takes over.
* Latest mode (latest=True) keeps only the newest value: a sequence number
  and 7 value slots on one cache line, so a reader gets both in one miss.
  The layout header explains why a reader always gets the value that belongs
  to the sequence number it read, and why a writer killed mid-publication
  cannot block readers (there is no "being written" state).  `send` never
  blocks.  The reader's `head` is the sequence number of the last value it
  took, and `recv` returns only a newer one.
* One writer, one reader.  The first thread to send claims the writer role
  (compare-and-swap of (pid << 32 | kernel tid) into a shared word), the
  first to receive the reader role.  Another thread or process is refused
  with RuntimeError naming the holder, unless the holder has closed the
  channel or is gone (thread exited, process exited, or a zombie), in which
  case the claim is taken over.  The per-call check costs no system call: the
  handle remembers which thread (and which side of a fork, via
  pthread_atfork) it verified, and re-reads the shared word, which lives on a
  line nobody writes in the hot path.
* Blocking: poll for up to SPIN_SECONDS (20 us; the first 2 us keeping the
  GIL, the rest without it), then sleep on a futex eventcount in WAIT_SLICE
  (50 ms) slices with the GIL released, checking for Ctrl-C between slices.
  Publishers skip FUTEX_WAKE unless a sleeper announced itself (the ordering
  argument is in the layout header).  A writer sleeping on a full channel
  asks for room for min(remaining, half the capacity) floats, so a reader
  taking one float at a time does not wake it per float.
* Dead peers: when a recv would wait (or give up) on an empty channel, it
  checks whether the writer is gone (closed: at once; exited: at most one
  /proc check per WAIT_SLICE) and raises EOFError; a send on a full channel
  whose reader is gone raises BrokenPipeError.  A closed reader is noticed
  on every send (its claim word is on a line the writer reads anyway).
"""

cimport cython
from cpython.array cimport array as c_array, clone as array_clone
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.exc cimport PyErr_CheckSignals
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_AsDouble, PyFloat_CheckExact
from cpython.long cimport PyLong_Check
from cpython.number cimport PyIndex_Check
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from posix.unistd cimport getpid

import array as _array
import operator
import queue
import sys
from multiprocessing import context as _mp_context

from fastmp._args cimport check_layout, count_arg
from fastmp._claims cimport (
    fastmp_claim_watch_forks, fastmp_peer_gone, fastmp_role_claim, fastmp_role_close,
    fastmp_role_held, role_taken_error,
)
from fastmp._eventcount cimport fastmp_ec_retract, fastmp_ec_wake
from fastmp._segment cimport Segment
from fastmp._sync cimport (
    SPIN_HOLDING_GIL, SPIN_POLLS, SPIN_SECONDS, WAIT_SLICE, call_deadline, fastmp_cpu_relax,
    monotonic, next_slice, spin_end, timespec,
)

__all__ = ["FloatChannel"]

cdef extern from *:
    """
    static inline void fastmp_fc_store_relaxed(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    """
    void fastmp_fc_store_relaxed(uint64_t* p, uint64_t v) nogil

cdef enum:
    # Copies of at least this many floats (64 KiB) run with the GIL released:
    # below that, releasing and re-taking it costs more than it lets others do.
    BIG_COPY = 8192

cdef uint64_t MAX_CAPACITY = 1 << 30
DEFAULT_CAPACITY = 4096

cdef bint _LITTLE_ENDIAN = sys.byteorder == "little"
cdef c_array _DOUBLES = _array.array("d")

# Forked children get a new fork generation (see _claims.h).
fastmp_claim_watch_forks()


cdef inline uint64_t _slots_for(uint64_t capacity) noexcept nogil:
    cdef uint64_t n = 1
    while n < capacity:
        n <<= 1
    return n


cdef inline void _copy_in(double* slots, uint64_t mask, uint64_t pos, const double* src,
                          uint64_t n) noexcept nogil:
    cdef uint64_t off = pos & mask
    cdef uint64_t first = mask + 1 - off
    if n <= first:
        memcpy(slots + off, src, n * sizeof(double))
    else:
        memcpy(slots + off, src, first * sizeof(double))
        memcpy(slots, src + first, (n - first) * sizeof(double))


cdef inline void _copy_out(const double* slots, uint64_t mask, uint64_t pos, double* dst,
                           uint64_t n) noexcept nogil:
    cdef uint64_t off = pos & mask
    cdef uint64_t first = mask + 1 - off
    if n <= first:
        memcpy(dst, slots + off, n * sizeof(double))
    else:
        memcpy(dst, slots + off, first * sizeof(double))
        memcpy(dst + first, slots, (n - first) * sizeof(double))


cdef double _as_double(object x) except? -1.0:
    try:
        return PyFloat_AsDouble(x)
    except TypeError:
        raise TypeError(f"FloatChannel.send() needs a real number, not "
                        f"{type(x).__name__}") from None


cdef bint _is_float64(const Py_buffer* view) noexcept:
    cdef const char* fmt = view.format
    if view.itemsize != 8 or fmt == NULL:
        return False
    if fmt[0] == b"@" or fmt[0] == b"=" or (fmt[0] == b"<" and _LITTLE_ENDIAN) \
            or (fmt[0] == b">" and not _LITTLE_ENDIAN):
        fmt += 1
    return fmt[0] == b"d" and fmt[1] == 0


cdef str _format_of(const Py_buffer* view):
    return view.format.decode("ascii", "replace") if view.format != NULL else "B"


cdef inline bint _is_writer(FloatChannel ch) noexcept:
    # Only fields in this handle, plus one load of the claims line, which
    # nobody writes in the hot path (Shared in both caches).
    return fastmp_role_held(&ch.writer, &ch.hdr.writer_claim)


cdef inline bint _is_reader(FloatChannel ch) noexcept:
    return fastmp_role_held(&ch.reader, &ch.hdr.reader_claim)


cdef object _closed_error(FloatChannel ch):
    return ValueError(f"{ch!r} is closed")


# no_gc_clear: the garbage collector must not drop `segment` (unmapping the
# memory) before __dealloc__ has given this handle's claims back in it.  A
# FloatChannel cannot be part of a reference cycle anyway: its only object
# reference is a Segment, which holds none.
@cython.final
@cython.no_gc_clear
cdef class FloatChannel:
    """A single-writer, single-reader channel of float64 values in shared memory.

    FloatChannel(capacity=4096, *, latest=False)

    ``capacity`` is the number of floats the channel holds unread (an int
    >= 1; the slots are rounded up to a power of two internally).  Pass the
    channel to a child process as a Process argument (fork, spawn and
    forkserver); pickling it at any other time raises RuntimeError, as for
    multiprocessing's queues.

    One writer and one reader: the first thread that sends becomes the
    writer, the first that receives the reader (any process; the writer and
    the reader may be the same thread).  Another thread or process that tries
    raises RuntimeError naming the holder, unless the holder has closed its
    handle or its thread or process has exited: then it takes over.

    Ring mode (default):

    * ``send(x, block=True, timeout=None)``: ``x`` must be a real number
      (float, int, or anything with ``__float__``/``__index__``; TypeError
      otherwise).  Blocks while the channel is full; ``queue.Full`` when
      ``block`` is false or the timeout passes first.
    * ``recv(block=True, timeout=None)`` -> float; ``queue.Empty`` likewise.
    * ``send_many(values, block=True, timeout=None)`` -> number sent: a
      C-contiguous float64 buffer (``array('d')``, NumPy float64 arrays,
      memoryviews of format 'd') is copied straight in; anything else is
      converted with ``array('d', values)`` first (so a bad element raises
      TypeError before anything is sent; a buffer of another type raises
      TypeError rather than being converted).  Values go in chunks as room
      appears; the call returns once all are in.  If it has to give up part
      way (``block=False``, timeout, Ctrl-C, reader gone), the exception
      (``queue.Full``, ``KeyboardInterrupt``, ``BrokenPipeError``) carries
      ``.sent``: that many leading values are in the channel and will be
      received; none of the rest was sent.  Nothing is lost or sent twice.
    * ``recv_many(n)`` -> ``array('d')`` of 1 to n floats (blocks for the
      first, then takes what is there); ``recv_many(out)`` fills a writable
      C-contiguous float64 buffer with 1 to len(out) floats and returns the
      count.
    * A recv that would wait on an empty channel whose writer has closed or
      exited raises EOFError (values sent before are still received first);
      a send that would wait on a full channel whose reader has exited raises
      BrokenPipeError, and every send raises it once the reader has closed.

    Latest mode (``latest=True``: sensor or price feeds): the channel holds
    only the newest value (``capacity`` is 1).  ``send`` never blocks and
    overwrites; ``recv(block=True)`` waits for a value newer than the last
    one this reader received and returns the newest; ``recv(block=False)``
    raises ``queue.Empty`` when there is nothing newer.  So successive recvs
    return values in the order they were sent, never the same publication
    twice, skipping those overwritten meanwhile.  ``send_many`` publishes its
    last value; ``recv_many`` returns (or stores) the newest one.

    ``qsize()`` (approximate), ``empty()``, ``full()``, ``capacity``.
    ``close()``: this handle can no longer be used (ValueError, as for
    Queue); a writer's close is EOF to its reader, a reader's close a broken
    pipe to its writer.  Values already sent are not lost.
    """

    def __init__(self, capacity=DEFAULT_CAPACITY, *, latest=False):
        cdef uint64_t cap, slots, hsize
        cdef Segment segment
        cdef fastmp_fc_header* hdr
        if self.hdr != NULL:
            raise RuntimeError("FloatChannel.__init__ called twice")
        capacity = count_arg(capacity, "capacity", "an int (a number of floats)", "1 float")
        if capacity > MAX_CAPACITY:
            raise ValueError(f"capacity must be at most {MAX_CAPACITY} floats, got {capacity}")
        latest = bool(latest)
        cap = 1 if latest else <uint64_t>capacity
        slots = 0 if latest else _slots_for(cap)
        hsize = sizeof(fastmp_fc_header)
        segment = Segment(<Py_ssize_t>(hsize + slots * sizeof(double)))
        hdr = <fastmp_fc_header*>segment.addr
        # A fresh segment is zero-filled: positions, claims and sequences
        # start at 0.  magic last: it says "initialised".
        hdr.header_size = <uint32_t>hsize
        hdr.capacity = cap
        hdr.mask = slots - 1 if slots else 0
        hdr.latest = latest
        hdr.layout_version = FASTMP_FC_LAYOUT_VERSION
        hdr.magic = FASTMP_FC_MAGIC
        self._bind(segment)

    cdef int _bind(self, Segment segment) except -1:
        self.segment = segment
        self.hdr = <fastmp_fc_header*>segment.addr
        self.latest = self.hdr.latest != 0
        self.slots = NULL if self.latest else <double*>(segment.addr + self.hdr.header_size)
        self.cap = self.hdr.capacity
        self.mask = self.hdr.mask
        return 0

    @staticmethod
    def _attach(Segment segment):
        """A handle on the channel in `segment` (a child's side of a pickle)."""
        cdef FloatChannel ch = FloatChannel.__new__(FloatChannel)
        cdef fastmp_fc_header* hdr = <fastmp_fc_header*>segment.addr
        check_layout(segment, sizeof(fastmp_fc_header), FASTMP_FC_MAGIC, FASTMP_FC_LAYOUT_VERSION,
                     "FloatChannel")
        if not hdr.latest and <uint64_t>segment.size < hdr.header_size + (hdr.mask + 1) * 8:
            raise ValueError("FloatChannel segment is smaller than its slots")
        ch._bind(segment)
        return ch

    def __reduce__(self):
        if self.closed:
            raise _closed_error(self)
        # Checked here too so that the message names FloatChannel; the
        # segment's own reduction passes the descriptor with DupFd.
        _mp_context.assert_spawning(self)
        return (FloatChannel._attach, (self.segment,))

    def __repr__(self):
        mode = ", latest=True" if self.latest else ""
        state = " closed" if self.closed else ""
        return f"<fastmp.FloatChannel capacity={self.cap}{mode}{state}>"

    def __dealloc__(self):
        self._release_claims()

    # -- claims -------------------------------------------------------------

    cdef int _claim(self, bint writer) except -1:
        """Make the calling thread this channel's writer (or reader), or
        raise RuntimeError naming the live holder."""
        cdef uint64_t holder = 0
        # On success the role's sleep announcement is cleared: a holder
        # killed while asleep left it set, and the peer would otherwise make
        # a FUTEX_WAKE on every later publication.
        if writer:
            if fastmp_role_claim(&self.writer, &self.hdr.writer_claim, &holder):
                self.cached_head = 0
                fastmp_fc_store_relaxed(&self.hdr.writer_wants, 0)
                return 0
        elif fastmp_role_claim(&self.reader, &self.hdr.reader_claim, &holder):
            self.cached_tail = 0
            fastmp_ec_retract(&self.hdr.reader_sleeping)
            return 0
        role, verb = ("writer", "send") if writer else ("reader", "receive")
        raise role_taken_error("FloatChannel", role, holder,
                               f"a FloatChannel has one writer and one reader, and the first "
                               f"thread to {verb} becomes its {role}")

    cdef int _release_claims(self) noexcept:
        """Mark the claims this handle made in this process as closed (the
        peer then sees EOF / a broken pipe) and wake the peer.  Never a
        claim made by a parent before fork, nor one taken over since."""
        cdef fastmp_fc_header* hdr = self.hdr
        if hdr == NULL:
            return 0
        if fastmp_role_close(&self.writer, &hdr.writer_claim):
            fastmp_ec_wake(&hdr.data_seq)
        if fastmp_role_close(&self.reader, &hdr.reader_claim):
            fastmp_ec_wake(&hdr.room_seq)
        return 0

    cdef bint _peer_gone(self, bint reading) noexcept:
        """Has the other side (the writer when reading) closed or exited?
        Free for a close; a liveness check (~5 us) at most once per
        WAIT_SLICE otherwise."""
        return fastmp_peer_gone(&self.hdr.writer_claim if reading else &self.hdr.reader_claim,
                                &self.peer, monotonic(), WAIT_SLICE)

    # -- waiting ------------------------------------------------------------

    cdef bint _readable(self) noexcept nogil:
        cdef uint64_t have = fastmp_fc_load_acquire(
            &self.hdr.latest_seq if self.latest else &self.hdr.tail)
        return have != fastmp_fc_load_relaxed(&self.hdr.head)

    cdef uint64_t _room(self) noexcept nogil:
        return self.cap - (fastmp_fc_load_relaxed(&self.hdr.tail)
                           - fastmp_fc_load_acquire(&self.hdr.head))

    cdef bint _spin(self, bint reading, uint64_t wanted, double seconds,
                    double deadline) noexcept nogil:
        """Poll for data (reading) or `wanted` free slots for up to
        `seconds` (or until the deadline)."""
        cdef double until = spin_end(seconds, deadline)
        cdef int i
        while True:
            for i in range(SPIN_POLLS):
                if self._readable() if reading else self._room() >= wanted:
                    return True
                fastmp_cpu_relax()
            if monotonic() >= until:
                return False

    cdef int _wait(self, bint reading, uint64_t wanted, double deadline) except -1:
        """Block until the channel is readable (reading) or has `wanted` free
        slots (writing).  Returns 1 when it is, 0 once `deadline` has passed
        (a writer may then still find some room).  Raises EOFError (reading: nothing
        left and the writer gone), BrokenPipeError (writing: the reader gone),
        whatever a signal handler raises (Ctrl-C), or ValueError if this
        handle is closed meanwhile."""
        cdef timespec ts
        cdef bint ready
        cdef fastmp_fc_header* hdr = self.hdr
        if deadline > 0:
            # A peer in mid-call answers within a microsecond or two: poll
            # that long keeping the GIL, then go on polling without it.
            # Handing the GIL back and re-taking it is on the latency path:
            # measured here, holding it first cut the one-way p50 of a
            # process ping-pong by 15-20 % (145 -> 125 ns; 510 -> 470 ns
            # when the VM is in its slow cache-transfer regime).
            if self._spin(reading, wanted, SPIN_HOLDING_GIL, deadline):
                return 1
            with nogil:
                ready = self._spin(reading, wanted, SPIN_SECONDS - SPIN_HOLDING_GIL, deadline)
            if ready:
                return 1
        while True:
            ready = self._readable() if reading else self._room() >= wanted
            if ready:
                return 1
            if self._peer_gone(reading):
                if reading:
                    if self._readable():    # sent just before it went
                        return 1
                    raise EOFError("FloatChannel: the writer has closed or exited and "
                                   "every value it sent has been received")
                raise BrokenPipeError("FloatChannel: the reader has closed or exited")
            if not next_slice(deadline, &ts):
                return 0
            with nogil:
                if reading:
                    fastmp_fc_sleep_until_readable(hdr, &ts)
                else:
                    fastmp_fc_sleep_until_room(hdr, wanted, &ts)
            PyErr_CheckSignals()
            if self.closed:
                raise _closed_error(self)

    # -- one float ------------------------------------------------------------

    def send(self, x, bint block=True, timeout=None):
        """Send one float; block while the channel is full (queue.Full when
        block is false or the timeout passes; BrokenPipeError if the reader
        is gone).  Latest mode: publish it, never blocking."""
        cdef fastmp_fc_header* hdr = self.hdr
        cdef double value, deadline
        cdef uint64_t tail
        if self.closed:
            raise _closed_error(self)
        value = PyFloat_AS_DOUBLE(x) if PyFloat_CheckExact(x) else _as_double(x)
        deadline = call_deadline(block, timeout)
        if not _is_writer(self):
            self._claim(True)
        if fastmp_fc_load_relaxed(&hdr.reader_claim) == FASTMP_FC_CLOSED:
            raise BrokenPipeError("FloatChannel: the reader has closed its end")
        if self.latest:
            fastmp_fc_publish_latest(hdr, value)
            return
        tail = fastmp_fc_load_relaxed(&hdr.tail)     # writer-owned
        if tail - self.cached_head >= self.cap:
            self.cached_head = fastmp_fc_load_acquire(&hdr.head)
            if tail - self.cached_head >= self.cap:
                if not self._wait(False, 1, deadline):
                    raise queue.Full
                self.cached_head = fastmp_fc_load_acquire(&hdr.head)
        self.slots[tail & self.mask] = value
        fastmp_fc_publish_tail(hdr, tail + 1)

    def recv(self, bint block=True, timeout=None):
        """Receive one float; block while the channel is empty (queue.Empty
        when block is false or the timeout passes; EOFError once the writer
        is gone and nothing is left).  Latest mode: the newest value, once
        it is newer than the last one received."""
        cdef fastmp_fc_header* hdr = self.hdr
        cdef uint64_t head
        cdef double value, deadline
        if self.closed:
            raise _closed_error(self)
        deadline = call_deadline(block, timeout)
        if not _is_reader(self):
            self._claim(False)
        if self.latest:
            return self._take_latest(deadline)
        head = fastmp_fc_load_relaxed(&hdr.head)     # reader-owned
        if head >= self.cached_tail:
            self.cached_tail = fastmp_fc_load_acquire(&hdr.tail)
            if head >= self.cached_tail:
                if not self._wait(True, 1, deadline):
                    raise queue.Empty
                self.cached_tail = fastmp_fc_load_acquire(&hdr.tail)
        value = self.slots[head & self.mask]
        fastmp_fc_publish_head(hdr, head + 1)
        return value

    cdef double _take_latest(self, double deadline) except? -1.0:
        """Latest mode: wait for a value newer than the last one taken and
        take the newest."""
        cdef uint64_t seq
        cdef double value
        while True:
            if fastmp_fc_read_latest(self.hdr, &seq, &value):
                if seq != fastmp_fc_load_relaxed(&self.hdr.head):
                    fastmp_fc_store_relaxed(&self.hdr.head, seq)
                    return value
                if not self._wait(True, 1, deadline):
                    raise queue.Empty
            # else: the writer lapped this read; read again

    # -- many floats ------------------------------------------------------------

    def send_many(self, values, bint block=True, timeout=None):
        """Send every float of `values` in order (a float64 buffer, or any
        iterable of real numbers); returns how many.  See the class
        docstring for what an exception part-way means (``.sent``)."""
        cdef fastmp_fc_header* hdr = self.hdr
        cdef Py_buffer view
        cdef bint have_view = False
        cdef uint64_t n, sent = 0, tail, room, k, wanted
        cdef const double* src
        cdef double deadline
        if self.closed:
            raise _closed_error(self)
        deadline = call_deadline(block, timeout)
        if PyObject_CheckBuffer(values):
            try:
                PyObject_GetBuffer(values, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
                have_view = True
            except (BufferError, ValueError):
                pass                # not contiguous: convert it below
            if have_view and not _is_float64(&view):
                fmt = _format_of(&view)
                PyBuffer_Release(&view)
                raise TypeError(f"send_many needs float64 data (buffer format 'd'), got a "
                                f"buffer of format {fmt!r}; convert it first, e.g. "
                                f"arr.astype('float64') or array('d', values)")
        if not have_view:
            try:
                values = _array.array("d", values)
            except TypeError as exc:
                raise TypeError(f"send_many needs a float64 buffer or an iterable of real "
                                f"numbers: {exc}") from None
            PyObject_GetBuffer(values, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
        try:
            n = <uint64_t>view.len // sizeof(double)
            src = <const double*>view.buf
            if not _is_writer(self):
                self._claim(True)
            if fastmp_fc_load_relaxed(&hdr.reader_claim) == FASTMP_FC_CLOSED:
                raise BrokenPipeError("FloatChannel: the reader has closed its end")
            if self.latest:
                if n:
                    fastmp_fc_publish_latest(hdr, src[n - 1])
                return n
            while sent < n:
                tail = fastmp_fc_load_relaxed(&hdr.tail)
                room = self.cap - (tail - self.cached_head)
                if room == 0:
                    self.cached_head = fastmp_fc_load_acquire(&hdr.head)
                    room = self.cap - (tail - self.cached_head)
                if room == 0:
                    # Sleep until half the channel (or what is left to send)
                    # is free: the reader then wakes us once, not per float.
                    wanted = n - sent
                    if wanted > (self.cap + 1) // 2:
                        wanted = (self.cap + 1) // 2
                    self._wait(False, wanted, deadline)
                    self.cached_head = fastmp_fc_load_acquire(&hdr.head)
                    room = self.cap - (tail - self.cached_head)
                    if room == 0:
                        raise queue.Full(
                            f"FloatChannel.send_many sent {sent} of {n} floats before "
                            f"{'the timeout' if block else 'the channel was full'}; the "
                            f"others were not sent (exception.sent == {sent})")
                k = n - sent if n - sent < room else room
                if k >= BIG_COPY:
                    with nogil:
                        _copy_in(self.slots, self.mask, tail, src + sent, k)
                else:
                    _copy_in(self.slots, self.mask, tail, src + sent, k)
                fastmp_fc_publish_tail(hdr, tail + k)
                sent += k
            return n
        except BaseException as exc:
            try:
                exc.sent = sent
            except AttributeError:
                pass
            raise
        finally:
            PyBuffer_Release(&view)

    def recv_many(self, out_or_n, bint block=True, timeout=None):
        """recv_many(n) -> array('d') of 1 to n floats; recv_many(out) ->
        number of floats stored at the start of `out`, a writable
        C-contiguous float64 buffer (1 to len(out)).  Blocks for the first
        float only; raises like recv().  Never imports NumPy."""
        cdef fastmp_fc_header* hdr = self.hdr
        cdef Py_buffer view
        cdef bint have_view = False
        cdef uint64_t limit, head, k
        cdef Py_ssize_t count
        cdef double* dst
        cdef c_array result = None
        cdef double value, deadline
        if self.closed:
            raise _closed_error(self)
        deadline = call_deadline(block, timeout)
        if PyLong_Check(out_or_n):
            count = out_or_n
        elif PyObject_CheckBuffer(out_or_n) and not (
                PyIndex_Check(out_or_n) and getattr(out_or_n, "ndim", 1) == 0):
            try:
                PyObject_GetBuffer(out_or_n, &view,
                                   PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
            except (BufferError, ValueError, TypeError) as exc:
                raise TypeError(f"recv_many needs a writable, C-contiguous float64 buffer: "
                                f"{exc}") from exc
            have_view = True
            if not _is_float64(&view):
                fmt = _format_of(&view)
                PyBuffer_Release(&view)
                raise TypeError(f"recv_many needs a float64 buffer (format 'd'), got a "
                                f"buffer of format {fmt!r}")
        elif PyIndex_Check(out_or_n):
            count = operator.index(out_or_n)
        else:
            raise TypeError(f"recv_many takes a number of floats or a writable float64 "
                            f"buffer, not {type(out_or_n).__name__}")
        try:
            if have_view:
                limit = <uint64_t>view.len // sizeof(double)
                if limit == 0:
                    raise ValueError("recv_many needs a buffer with room for at least one float")
                dst = <double*>view.buf
            else:
                if count < 1:
                    raise ValueError(f"recv_many needs n >= 1, got {count}")
                limit = <uint64_t>count
            if not _is_reader(self):
                self._claim(False)
            if self.latest:
                value = self._take_latest(deadline)
                if have_view:
                    dst[0] = value
                    return 1
                result = array_clone(_DOUBLES, 1, False)
                result.data.as_doubles[0] = value
                return result
            head = fastmp_fc_load_relaxed(&hdr.head)
            self.cached_tail = fastmp_fc_load_acquire(&hdr.tail)
            if head >= self.cached_tail:
                if not self._wait(True, 1, deadline):
                    raise queue.Empty
                self.cached_tail = fastmp_fc_load_acquire(&hdr.tail)
            k = self.cached_tail - head
            if k > limit:
                k = limit
            if not have_view:
                result = array_clone(_DOUBLES, <Py_ssize_t>k, False)
                dst = result.data.as_doubles
            if k >= BIG_COPY:
                with nogil:
                    _copy_out(self.slots, self.mask, head, dst, k)
            else:
                _copy_out(self.slots, self.mask, head, dst, k)
            fastmp_fc_publish_head(hdr, head + k)
            return <Py_ssize_t>k if have_view else result
        finally:
            if have_view:
                PyBuffer_Release(&view)

    # -- observers and close ------------------------------------------------------

    @property
    def capacity(self):
        """Floats the channel holds unread (1 in latest mode)."""
        return self.cap

    def qsize(self):
        """Approximate number of unread floats (latest mode: 1 if a value
        newer than the last one received is waiting, else 0)."""
        cdef uint64_t head, tail
        if self.closed:
            raise _closed_error(self)
        head = fastmp_fc_load_acquire(&self.hdr.head)
        tail = fastmp_fc_load_acquire(&self.hdr.latest_seq if self.latest else &self.hdr.tail)
        if self.latest:
            return 1 if tail != head else 0
        return tail - head if tail - head < self.cap else self.cap

    def empty(self):
        """True if a recv would find nothing (approximate, as qsize())."""
        return self.qsize() == 0

    def full(self):
        """True if a send would block (approximate; never in latest mode)."""
        if self.closed:
            raise _closed_error(self)
        return not self.latest and self.qsize() >= self.cap

    def close(self):
        """Stop using this handle: later calls raise ValueError.  If it is
        the writer, the reader gets EOFError once it has received what was
        sent; if it is the reader, the writer gets BrokenPipeError.  The
        shared memory goes once every handle is gone."""
        if self.closed:
            return
        self.closed = True
        self._release_claims()

