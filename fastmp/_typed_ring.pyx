"""Ring: a single-producer single-consumer ring of typed frames.

Frames of one fixed shape and dtype (NumPy arrays, or memoryviews without
NumPy) pass between two processes without pickling, locks or system calls
while neither side has to sleep, and - through reserve() and recv_view() -
without any copy at all: the writer fills the slot in place, the reader
reads it in place.

Protocol
--------
A memfd segment (fastmp._segment) holds a header of seven 64-byte cache
lines (_typed_ring_layout.h) and `slots` frames, each starting on a cache
line.  The writer publishes its position `tail` after a frame is complete;
the reader publishes `head` after it is done with a frame.  Each side keeps
a private lower bound of the other's position and reads the other's line
only when that bound says full (writer) or empty (reader).  Positions are
stored after the work they cover, so a process killed at any point leaves
the ring consistent (see the header).

Roles are claimed exactly as FloatChannel's (_claims.h): the first thread to
call a writer method (reserve, send) becomes the writer, the first to call
a reader method (recv, recv_into, recv_view) the reader; a second live one
gets RuntimeError naming the holder; a closed, exited or zombie holder is
replaced.

Blocking: poll for up to SPIN_SECONDS (the first 2 us keeping the GIL), then
sleep on a futex eventcount in WAIT_SLICE (50 ms) slices with the GIL
released, checking Ctrl-C and the peer's liveness between slices.
"""

cimport cython
from cpython.buffer cimport PyBuffer_Release
from cpython.exc cimport PyErr_CheckSignals
from cpython.object cimport PyObject
from cpython.ref cimport _Py_REFCNT
from libc.stdint cimport uint32_t, uint64_t

import queue

from fastmp._args cimport check_layout, count_arg, physical_memory
from fastmp._claims cimport (
    FASTMP_CLAIM_CLOSED, fastmp_claim_peek, fastmp_claim_watch_forks, fastmp_peer_gone,
    fastmp_role_claim, fastmp_role_close, fastmp_role_held, role_taken_error,
)
from fastmp._eventcount cimport fastmp_ec_retract, fastmp_ec_wake
from fastmp._frames cimport (
    done_handle, frame_from_buffer, frame_spec, frame_to_buffer, new_frame, new_reservation,
)
from fastmp._segment cimport Segment
from fastmp._sync cimport (
    SPIN_HOLDING_GIL, SPIN_POLLS, SPIN_SECONDS, WAIT_SLICE, call_deadline, fastmp_cpu_relax,
    monotonic, next_slice, spin_end, timespec,
)

__all__ = ["Ring"]

# Forked children get a new fork generation (see _claims.h).
fastmp_claim_watch_forks()


cdef object _closed_error():
    return ValueError("Ring is closed")


cdef inline double _begin(Ring ring, bint block, object timeout) except? -1.0:
    """A blocking call's start: ValueError if the handle is closed, else the
    call's deadline."""
    if ring.closed:
        raise _closed_error()
    return call_deadline(block, timeout)


cdef bint _dropped_reservation(Ring ring) except -1:
    """The open Reservation is referenced by nobody but this handle (the
    caller dropped it unfinished: nobody can commit it any more): abort it
    and say True."""
    if _Py_REFCNT(<PyObject*>ring.res) != 1:
        return False
    ring._finish_reservation(<Reservation>ring.res, False)
    return True


cdef bint _dropped_frame(Ring ring) except -1:
    """The open Frame is referenced by nobody but this handle (dropped
    unreleased, as a file is closed when dropped): release it, True."""
    if _Py_REFCNT(<PyObject*>ring.frame) != 1:
        return False
    ring._finish_frame(<Frame>ring.frame)
    return True


cdef inline int _no_reservation(Ring ring, str message) except -1:
    """RuntimeError(message) if this handle has an open Reservation (one
    dropped unfinished is aborted instead)."""
    if ring.reserving and not _dropped_reservation(ring):
        raise RuntimeError(message)
    return 0


cdef inline int _reader_ready(Ring ring) except -1:
    if ring.viewing and not _dropped_frame(ring):
        raise RuntimeError("this Ring handle has an open recv_view() frame: release it first")
    if not fastmp_role_held(&ring.reader, &ring.hdr.reader_claim):
        ring._claim(False)
    return 0


# no_gc_clear: the garbage collector must not drop `segment` (unmapping the
# memory) before __dealloc__ has given this handle's claims back in it.
@cython.final
@cython.no_gc_clear
cdef class Ring(FrameStore):
    """A single-producer single-consumer ring of typed frames in shared memory.

    Ring(slots, shape, dtype="float32")

    ``slots`` frames of ``shape`` (an int or a tuple of at most 8 ints) and
    ``dtype`` (anything ``numpy.dtype()`` accepts but objects; without
    NumPy a struct typecode among "bBhHiIlLqQefd?", or one of the NumPy
    names of those such as "float32").  NumPy is imported on the first Ring,
    never by ``import fastmp``.  Pass the ring to a child as a Process
    argument (fork, spawn, forkserver).

    Writer (the first thread calling one of these claims the role):

    * ``with ring.reserve() as frame: frame[...] = ...`` writes straight
      into the next free slot; leaving the block publishes it (an exception
      abandons it).  ``r = ring.reserve(); r.view ...; r.commit()`` (or
      ``r.abort()``) explicitly.  One open reservation per handle.
    * ``send(frame)`` copies one frame in (any strides; shape and dtype must
      match: ValueError / TypeError, no casting).
    * Both block while the ring is full (``queue.Full`` when block is false
      or the timeout passes; BrokenPipeError once the reader is gone).

    Reader:

    * ``recv()`` -> a new array holding a copy of the oldest frame;
      ``recv_into(out)`` copies it into ``out``.
    * ``with ring.recv_view() as frame:`` reads the oldest frame in place
      (read-only); leaving the block gives the slot back.  After that a
      memoryview is released, but a NumPy view is NOT invalidated: reading
      it later is not detected and may show a newer frame.  One open view
      per handle.
    * All block while the ring is empty (``queue.Empty``); once the writer
      has closed or exited and every frame is received: EOFError.

    A Reservation or Frame dropped unfinished (no ``with``, no commit /
    release, no reference left) is aborted / released by the handle's next
    writer / reader call, so a forgotten one cannot wedge the handle.

    ``qsize()``, ``empty()``, ``full()``, ``slots``, ``shape``, ``dtype``,
    ``frame_bytes``, ``closed``; ``close()`` (idempotent; later calls raise
    ValueError): the peer sees EOF / a broken pipe.
    """

    def __init__(self, slots, shape, dtype="float32"):
        cdef FrameSpec spec
        cdef Segment segment
        cdef fastmp_tr_header* hdr
        cdef uint64_t nslots, hsize
        cdef uint32_t i
        if self.hdr != NULL:
            raise RuntimeError("Ring.__init__ called twice")
        slots = count_arg(slots, "slots", "an int (a number of frames)")
        spec = frame_spec(shape, dtype)
        hsize = sizeof(fastmp_tr_header)
        total = hsize + slots * spec.stride
        memory = physical_memory()
        if total > memory:
            raise ValueError(f"a Ring of {slots} frames of {spec.frame_bytes} bytes needs "
                             f"{total} bytes, more than this machine's physical memory "
                             f"({memory} bytes)")
        nslots = <uint64_t>slots
        segment = Segment(<Py_ssize_t>total)
        hdr = <fastmp_tr_header*>segment.addr
        # A fresh segment is zero-filled: positions, claims and sequences
        # start at 0.  magic last: it says "initialised".
        hdr.header_size = <uint32_t>hsize
        hdr.slots = nslots
        hdr.stride = <uint64_t>spec.stride
        hdr.frame_bytes = <uint64_t>spec.frame_bytes
        hdr.itemsize = <uint32_t>spec.itemsize
        hdr.ndim = <uint32_t>len(spec.shape)
        for i in range(hdr.ndim):
            hdr.dims[i] = <uint64_t>spec.shape[i]
        hdr.layout_version = FASTMP_TR_LAYOUT_VERSION
        hdr.magic = FASTMP_TR_MAGIC
        self._bind(segment, spec)

    cdef int _bind(self, Segment segment, FrameSpec spec) except -1:
        self.segment = segment
        self.hdr = <fastmp_tr_header*>segment.addr
        self.base = segment.addr + self.hdr.header_size
        self.nslots = self.hdr.slots
        self.stride = <Py_ssize_t>self.hdr.stride
        self.spec = spec
        self.wviews = ViewCache(spec, segment, self.hdr.header_size, <Py_ssize_t>self.nslots, True)
        self.rviews = ViewCache(spec, segment, self.hdr.header_size, <Py_ssize_t>self.nslots, False)
        return 0

    @staticmethod
    def _attach(Segment segment, shape, dtype):
        """A handle on the ring in `segment` (a child's side of a pickle)."""
        cdef Ring ring = Ring.__new__(Ring)
        cdef fastmp_tr_header* hdr = <fastmp_tr_header*>segment.addr
        cdef FrameSpec spec = frame_spec(shape, dtype)
        cdef uint32_t i
        check_layout(segment, sizeof(fastmp_tr_header), FASTMP_TR_MAGIC, FASTMP_TR_LAYOUT_VERSION,
                     "Ring")
        if (hdr.frame_bytes != <uint64_t>spec.frame_bytes or hdr.stride != <uint64_t>spec.stride
                or hdr.ndim != <uint32_t>len(spec.shape)
                or <uint64_t>segment.size < hdr.header_size + hdr.slots * hdr.stride):
            raise ValueError(f"shared memory does not hold a Ring of frames of "
                             f"{spec.describe()}")
        for i in range(hdr.ndim):
            if hdr.dims[i] != <uint64_t>spec.shape[i]:
                raise ValueError(f"shared memory does not hold a Ring of frames of "
                                 f"{spec.describe()}")
        ring._bind(segment, spec)
        return ring

    # __reduce__, __repr__ and the properties slots, shape, dtype,
    # frame_bytes and closed: FrameStore (_frames).

    cdef object _closed_exc(self):
        return _closed_error()

    def __dealloc__(self):
        self._release_claims()

    # -- claims ---------------------------------------------------------------

    cdef int _claim(self, bint writer) except -1:
        """Make the calling thread this ring's writer (or reader), or raise
        RuntimeError naming the live holder."""
        cdef uint64_t holder = 0
        # On success the role's sleep announcement is cleared: a holder
        # killed while asleep left it set, and the peer would otherwise make
        # a FUTEX_WAKE on every later frame.  Nobody else can be asleep in
        # this role now (the holder is this thread, and it is not asleep).
        if writer:
            if fastmp_role_claim(&self.writer, &self.hdr.writer_claim, &holder):
                self.cached_head = 0
                fastmp_ec_retract(&self.hdr.writer_sleeping)
                return 0
        elif fastmp_role_claim(&self.reader, &self.hdr.reader_claim, &holder):
            self.cached_tail = 0
            fastmp_ec_retract(&self.hdr.reader_sleeping)
            return 0
        role, verb = ("writer", "write") if writer else ("reader", "read")
        raise role_taken_error("Ring", role, holder,
                               f"a Ring has one writer and one reader, and the first thread "
                               f"to {verb} becomes its {role}")

    cdef int _release_claims(self) noexcept:
        """Mark the claims this handle made in this process as closed (the
        peer then sees EOF / a broken pipe) and wake the peer."""
        cdef fastmp_tr_header* hdr = self.hdr
        if hdr == NULL:
            return 0
        if fastmp_role_close(&self.writer, &hdr.writer_claim):
            fastmp_ec_wake(&hdr.data_seq)
        if fastmp_role_close(&self.reader, &hdr.reader_claim):
            fastmp_ec_wake(&hdr.room_seq)
        return 0

    # -- waiting ------------------------------------------------------------

    cdef bint _readable(self) noexcept nogil:
        return (fastmp_tr_load_acquire(&self.hdr.tail)
                != fastmp_tr_load_relaxed(&self.hdr.head))

    cdef bint _has_room(self) noexcept nogil:
        return (fastmp_tr_load_relaxed(&self.hdr.tail)
                - fastmp_tr_load_acquire(&self.hdr.head) < self.nslots)

    cdef bint _spin(self, bint reading, double seconds, double deadline) noexcept nogil:
        cdef double until = spin_end(seconds, deadline)
        cdef int i
        while True:
            for i in range(SPIN_POLLS):
                if self._readable() if reading else self._has_room():
                    return True
                fastmp_cpu_relax()
            if monotonic() >= until:
                return False

    cdef int _wait(self, bint reading, double deadline) except -1:
        """Block until a frame is readable (reading) or a slot is free.
        1 when it is, 0 once `deadline` has passed; EOFError (reading:
        nothing left and the writer gone), BrokenPipeError (writing: the
        reader gone), whatever a signal handler raises, or ValueError if
        this handle is closed meanwhile."""
        cdef timespec ts
        cdef bint ready
        cdef fastmp_tr_header* hdr = self.hdr
        if deadline > 0:
            if self._spin(reading, SPIN_HOLDING_GIL, deadline):
                return 1
            with nogil:
                ready = self._spin(reading, SPIN_SECONDS - SPIN_HOLDING_GIL, deadline)
            if ready:
                return 1
        while True:
            if self._readable() if reading else self._has_room():
                return 1
            if fastmp_peer_gone(&hdr.writer_claim if reading else &hdr.reader_claim,
                                &self.peer, monotonic(), WAIT_SLICE):
                if reading:
                    if self._readable():    # committed just before it went
                        return 1
                    raise EOFError("Ring: the writer has closed or exited and every frame "
                                   "it committed has been received")
                raise BrokenPipeError("Ring: the reader has closed or exited")
            if not next_slice(deadline, &ts):
                return 0
            with nogil:
                if reading:
                    fastmp_tr_sleep_until_readable(hdr, &ts)
                else:
                    fastmp_tr_sleep_until_room(hdr, &ts)
            PyErr_CheckSignals()
            if self.closed:
                raise _closed_error()

    cdef uint64_t _writable_position(self, double deadline) except? 0xffffffffffffffff:
        """Writer, role held: the position of the next free slot, waiting
        for one (queue.Full)."""
        cdef fastmp_tr_header* hdr = self.hdr
        cdef uint64_t tail
        if fastmp_claim_peek(&hdr.reader_claim) == FASTMP_CLAIM_CLOSED:
            raise BrokenPipeError("Ring: the reader has closed its end")
        tail = fastmp_tr_load_relaxed(&hdr.tail)     # writer-owned
        if tail - self.cached_head >= self.nslots:
            self.cached_head = fastmp_tr_load_acquire(&hdr.head)
            if tail - self.cached_head >= self.nslots:
                if not self._wait(False, deadline):
                    raise queue.Full
                self.cached_head = fastmp_tr_load_acquire(&hdr.head)
        return tail

    cdef uint64_t _readable_position(self, double deadline) except? 0xffffffffffffffff:
        """Reader, role held: the position of the oldest unread frame,
        waiting for one (queue.Empty, EOFError)."""
        cdef fastmp_tr_header* hdr = self.hdr
        cdef uint64_t head = fastmp_tr_load_relaxed(&hdr.head)     # reader-owned
        if head >= self.cached_tail:
            self.cached_tail = fastmp_tr_load_acquire(&hdr.tail)
            if head >= self.cached_tail:
                if not self._wait(True, deadline):
                    raise queue.Empty
                self.cached_tail = fastmp_tr_load_acquire(&hdr.tail)
        return head

    # -- writer ---------------------------------------------------------------

    def reserve(self, bint block=True, timeout=None):
        """A Reservation of the next free slot: ``with ring.reserve() as
        frame:`` gives a writable view of it, published on a normal exit.
        Blocks while the ring is full (queue.Full when block is false or the
        timeout passes; BrokenPipeError if the reader is gone)."""
        cdef double deadline
        cdef uint64_t tail
        cdef Reservation r
        cdef Py_ssize_t slot
        deadline = _begin(self, block, timeout)
        _no_reservation(self, "this Ring handle already has an open reservation: commit or "
                              "abort it first")
        if not fastmp_role_held(&self.writer, &self.hdr.writer_claim):
            self._claim(True)
        tail = self._writable_position(deadline)
        slot = <Py_ssize_t>(tail % self.nslots)
        r = new_reservation(self, <PyObject*>self.res, self.wviews.take(slot))
        self.res = r
        r.position = tail
        r.slot = slot
        self.reserving = True
        return r

    cdef int _finish_reservation(self, Reservation r, bint commit) except -1:
        cdef object view = r.view
        cdef uint64_t position = r.position
        done_handle(r)
        self.reserving = False
        self.wviews.retire(view)
        if not commit:
            return 0
        if self.closed:
            raise ValueError("Ring is closed: the reserved frame was not published")
        if not fastmp_role_held(&self.writer, &self.hdr.writer_claim):
            raise RuntimeError("this thread is no longer the Ring's writer (another thread "
                               "or process, or a fork): the reserved frame was not published")
        fastmp_tr_publish_tail(self.hdr, position + 1)
        return 0

    def send(self, frame, bint block=True, timeout=None):
        """Copy one frame in (shape and dtype must match the ring's: ValueError
        / TypeError; any strides).  Blocks while the ring is full
        (queue.Full; BrokenPipeError if the reader is gone)."""
        cdef Py_buffer view
        cdef double deadline
        cdef uint64_t tail
        deadline = _begin(self, block, timeout)
        _no_reservation(self, "this Ring handle has an open reservation: commit or abort "
                              "it before send()")
        self.spec._check(frame, &view, "Ring.send()", False)
        try:
            if not fastmp_role_held(&self.writer, &self.hdr.writer_claim):
                self._claim(True)
            tail = self._writable_position(deadline)
            frame_from_buffer(self.base + <Py_ssize_t>(tail % self.nslots) * self.stride,
                              &view, self.spec.frame_bytes)
            fastmp_tr_publish_tail(self.hdr, tail + 1)
        finally:
            PyBuffer_Release(&view)

    # -- reader ---------------------------------------------------------------

    def recv(self, bint block=True, timeout=None):
        """A new array holding a copy of the oldest frame.  Blocks while the
        ring is empty (queue.Empty; EOFError once the writer is gone and
        every frame has been received)."""
        cdef double deadline
        cdef uint64_t head
        deadline = _begin(self, block, timeout)
        _reader_ready(self)
        head = self._readable_position(deadline)
        out = self.spec.copy_new(self.base + <Py_ssize_t>(head % self.nslots) * self.stride)
        fastmp_tr_publish_head(self.hdr, head + 1)
        return out

    def recv_into(self, out, bint block=True, timeout=None):
        """Copy the oldest frame into `out` (a writable buffer of the ring's
        shape and dtype, any strides).  Blocks and raises like recv()."""
        cdef Py_buffer view
        cdef double deadline
        cdef uint64_t head
        deadline = _begin(self, block, timeout)
        self.spec._check(out, &view, "Ring.recv_into()", True)
        try:
            _reader_ready(self)
            head = self._readable_position(deadline)
            frame_to_buffer(&view, self.base + <Py_ssize_t>(head % self.nslots) * self.stride,
                            self.spec.frame_bytes)
            fastmp_tr_publish_head(self.hdr, head + 1)
        finally:
            PyBuffer_Release(&view)

    def recv_view(self, bint block=True, timeout=None):
        """A Frame: ``with ring.recv_view() as frame:`` gives a read-only,
        zero-copy view of the oldest frame; leaving the block gives the slot
        back to the writer.  Blocks and raises like recv()."""
        cdef double deadline
        cdef uint64_t head
        cdef Frame f
        cdef Py_ssize_t slot
        deadline = _begin(self, block, timeout)
        _reader_ready(self)
        head = self._readable_position(deadline)
        slot = <Py_ssize_t>(head % self.nslots)
        f = new_frame(self, <PyObject*>self.frame, self.rviews.take(slot))
        self.frame = f
        f.position = head
        f.slot = slot
        self.viewing = True
        return f

    cdef int _finish_frame(self, Frame f) except -1:
        cdef object view = f.view
        cdef uint64_t position = f.position
        done_handle(f)
        self.viewing = False
        self.rviews.retire(view)
        if self.closed:
            return 0            # close() gave the role up: the frame stays unread
        if not fastmp_role_held(&self.reader, &self.hdr.reader_claim):
            raise RuntimeError("this thread is no longer the Ring's reader (another thread "
                               "or process, or a fork): the frame was not released")
        fastmp_tr_publish_head(self.hdr, position + 1)
        return 0

    # -- observers and close ------------------------------------------------------

    def qsize(self):
        """Approximate number of unread frames."""
        cdef uint64_t head, tail
        if self.closed:
            raise _closed_error()
        head = fastmp_tr_load_acquire(&self.hdr.head)
        tail = fastmp_tr_load_acquire(&self.hdr.tail)
        if tail < head:
            return 0            # read in the middle of an update
        return tail - head if tail - head < self.nslots else self.nslots

    def empty(self):
        """True if a recv would find nothing (approximate, as qsize())."""
        return self.qsize() == 0

    def full(self):
        """True if a reserve/send would block (approximate)."""
        return self.qsize() >= self.nslots

    def close(self):
        """Stop using this handle: later calls raise ValueError.  If it is
        the writer, the reader gets EOFError once it has received every
        committed frame; if it is the reader, the writer gets
        BrokenPipeError.  An open reservation is abandoned; an open
        recv_view frame is not released (the next reader gets it again)."""
        if self.closed:
            return
        self.closed = True
        self._release_claims()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
