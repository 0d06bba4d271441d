"""Broadcast: one writer, many subscribers, each with its own cursor.

Protocol
--------
A memfd segment (fastmp._segment) holds a header, a table of `max_readers`
cursor entries (one cache line each), one sequence word per slot (a line
each) and `slots` frames (see _broadcast_layout.h for the layout, the memory
ordering and what survives a crash).

* The writer is claimed like FloatChannel's (_claims.h): the first thread
  that calls reserve() or send() holds the role; another live thread gets
  RuntimeError; a closed or dead holder is replaced.  It publishes frame p
  by marking its slot "being written" (sequence 2p+1), filling it (in place
  through a Reservation's view, or by copying), then sealing it (2p+2) and
  storing tail = p+1.
* subscribe() takes a free entry of the cursor table by compare-and-swap of
  the calling process's claim word (or takes over the entry of a process
  that is gone) and sets the cursor to the writer's tail, so a late joiner
  sees only frames published after it joined.  A subscriber takes frame
  `position` once tail is past it and stores position + 1 once it is done
  (after the copy, or when a recv_view Frame is released).
* policy="block": the writer reserves position t only when every claimed
  cursor is at least t+1-slots.  It keeps a lower bound of the slowest
  cursor and only scans the table when that bound says "full"; while it
  waits it checks, once per WAIT_SLICE, whether the processes of the cursors
  holding it back are alive, and frees the entries of dead ones.
* policy="skip": the writer never waits.  A subscriber validates its frame
  with the slot's sequence word before and after reading it (a seqlock);
  a frame overwritten meanwhile is counted in `skipped` and the cursor jumps
  to the oldest frame that can still be whole.
* Blocking: poll for up to SPIN_SECONDS (the first SPIN_HOLDING_GIL keeping
  the GIL), then sleep on a futex eventcount in WAIT_SLICE slices with the
  GIL released, checking for Ctrl-C and for a dead peer between slices.
  Publishers make no system call unless someone sleeps.
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
    fastmp_claim_fork_gen, fastmp_claim_load, fastmp_claim_me, fastmp_claim_peek,
    fastmp_claim_watch_forks, fastmp_peer_gone, fastmp_role_claim, fastmp_role_close,
    fastmp_role_held, role_taken_error,
)
from fastmp._eventcount cimport fastmp_ec_wake
from fastmp._frames cimport (
    Frame, FrameOwner, FrameSpec, FrameStore, Reservation, ViewCache, abandon_handle, done_handle,
    frame_from_buffer, frame_spec, frame_to_buffer, new_frame, new_reservation,
)
from fastmp._segment cimport Segment
from fastmp._sync cimport (
    SPIN_HOLDING_GIL, SPIN_POLLS, SPIN_SECONDS, WAIT_SLICE, call_deadline, fastmp_cpu_relax,
    monotonic, next_slice, spin_end, timespec,
)

from fastmp._frames import FrameOverwritten

__all__ = ["Broadcast", "Subscriber", "FrameOverwritten"]

cdef enum:
    MAX_READERS = 4096
    # Most rounds subscribe() chases a moving tail (see there).
    SUBSCRIBE_ROUNDS = 8

# Forked children get a new fork generation (see _claims.h).
fastmp_claim_watch_forks()


# no_gc_clear: the collector must not drop `segment` (unmapping the memory)
# before __dealloc__ has given this handle's writer claim back in it.
@cython.final
@cython.no_gc_clear
cdef class Broadcast(FrameStore):
    """One writer, many subscribers of fixed-shape typed frames in shared memory.

    Broadcast(slots, shape, dtype="float32", *, max_readers=16, policy="block")

    ``slots`` frames of ``shape`` and ``dtype`` (as for fastmp.Ring) are kept;
    up to ``max_readers`` subscribers, each with its own cursor, receive every
    frame published after they subscribed.  Pass the Broadcast to a child
    process as a Process argument (fork, spawn, forkserver) and call
    ``subscribe()`` there; pickling it at any other time raises RuntimeError.

    Writer (the first thread to call ``reserve`` or ``send``; the same claim
    rules as Ring):

    * ``reserve(block=True, timeout=None)`` -> Reservation:
      ``with bc.reserve() as view:`` fills the next frame in place and
      publishes it on exit (an exception abandons it).
    * ``send(frame, block=True, timeout=None)`` copies one frame in.
    * policy="block": both wait while the slowest live subscriber is
      ``slots`` frames behind (``queue.Full`` on timeout / block=False).
      Subscribers that closed or whose process is gone stop holding it back
      (checked at least once per 50 ms of waiting).
    * policy="skip": never wait; a subscriber that falls more than ``slots``
      behind loses the oldest frames (counted in its ``skipped``).
    * ``close()``: subscribers get EOFError once they have taken every frame.

    ``subscribe()`` -> Subscriber (RuntimeError when all ``max_readers``
    entries are held by live subscribers).

    A Reservation (or a Subscriber's Frame) dropped unfinished - no
    ``with``, no commit / release, no reference left - is aborted (released)
    by the handle's next call, so a forgotten one cannot wedge the handle.
    """

    def __init__(self, slots, shape, dtype="float32", *, max_readers=16, policy="block"):
        cdef FrameSpec spec
        cdef Segment segment
        cdef fastmp_bc_header* hdr
        cdef uint64_t nslots, readers, size
        cdef uint64_t memory = physical_memory()
        if self.hdr != NULL:
            raise RuntimeError("Broadcast.__init__ called twice")
        slots = count_arg(slots, "slots")
        max_readers = count_arg(max_readers, "max_readers")
        if max_readers > MAX_READERS:
            raise ValueError(f"max_readers must be at most {MAX_READERS}, got {max_readers}")
        if policy != "block" and policy != "skip":
            raise ValueError(f"policy must be 'block' or 'skip', not {policy!r}")
        spec = frame_spec(shape, dtype)
        # In Python ints: `slots` may be any size here.
        if slots > memory // spec.stride:
            raise ValueError(f"{slots} frames of {spec.frame_bytes} bytes are more than this "
                             f"machine's memory ({memory} bytes)")
        nslots = slots
        readers = max_readers
        size = fastmp_bc_segment_size(readers, nslots, spec.stride)
        if size > memory:
            raise ValueError(f"a Broadcast of {size} bytes is more than this machine's "
                             f"memory ({memory} bytes)")
        segment = Segment(<Py_ssize_t>size)
        hdr = <fastmp_bc_header*>segment.addr
        # A fresh segment is zero-filled: tail, claims, cursors, sequences
        # and eventcounts start at 0.  magic last: it says "initialised".
        hdr.policy = FASTMP_BC_POLICY_SKIP if policy == "skip" else FASTMP_BC_POLICY_BLOCK
        hdr.slots = nslots
        hdr.frame_bytes = spec.frame_bytes
        hdr.stride = spec.stride
        hdr.max_readers = <uint32_t>readers
        hdr.frames_offset = size - nslots * <uint64_t>spec.stride
        hdr.layout_version = FASTMP_BC_LAYOUT_VERSION
        hdr.magic = FASTMP_BC_MAGIC
        self._bind(segment, spec)

    cdef int _bind(self, Segment segment, FrameSpec spec) except -1:
        self.segment = segment
        self.hdr = <fastmp_bc_header*>segment.addr
        self.spec = spec
        self.nslots = self.hdr.slots
        self.stride = self.hdr.stride
        self.skip = self.hdr.policy == FASTMP_BC_POLICY_SKIP
        self.seqs = fastmp_bc_slots(self.hdr)
        self.frames = segment.addr + self.hdr.frames_offset
        return 0

    @staticmethod
    def _attach(Segment segment, shape, dtype):
        """A handle on the Broadcast in `segment` (a child's side of a pickle)."""
        cdef Broadcast bc = Broadcast.__new__(Broadcast)
        cdef fastmp_bc_header* hdr = <fastmp_bc_header*>segment.addr
        cdef FrameSpec spec = frame_spec(shape, dtype)
        check_layout(segment, sizeof(fastmp_bc_header), FASTMP_BC_MAGIC, FASTMP_BC_LAYOUT_VERSION,
                     "Broadcast")
        if (hdr.frame_bytes != <uint64_t>spec.frame_bytes or hdr.stride != <uint64_t>spec.stride
                or <uint64_t>segment.size < fastmp_bc_segment_size(hdr.max_readers, hdr.slots,
                                                                   hdr.stride)):
            raise ValueError("Broadcast segment does not match its frame description")
        bc._bind(segment, spec)
        return bc

    # __reduce__, __repr__ and the properties slots, shape, dtype,
    # frame_bytes and closed: FrameStore (_frames).

    cdef str _repr_extra(self):
        return f" policy={self.policy!r}"

    def __dealloc__(self):
        self._release()

    # -- properties -------------------------------------------------------------

    @property
    def max_readers(self):
        return self.hdr.max_readers

    @property
    def policy(self):
        return "skip" if self.skip else "block"

    # -- writer role --------------------------------------------------------------

    cdef int _claim(self) except -1:
        cdef uint64_t holder = 0
        if not fastmp_role_claim(&self.writer, &self.hdr.writer_claim, &holder):
            raise role_taken_error("Broadcast", "writer", holder,
                                   "a Broadcast has one writer, and the first thread to "
                                   "reserve() or send() becomes it")
        self.cached_low = 0
        # A writer killed asleep left its announcement: only this thread may
        # sleep on room now, and it is awake.
        fastmp_bc_clear_writer_needs(self.hdr)
        return 0

    cdef int _release(self) noexcept:
        """Abandon an open reservation and mark the writer claim this handle
        made (in this process) closed: subscribers then see EOF."""
        if self.hdr == NULL:
            return 0
        abandon_handle(self.wviews, self.res)
        if fastmp_role_close(&self.writer, &self.hdr.writer_claim):
            fastmp_ec_wake(&self.hdr.data_seq)
        return 0

    # -- waiting for room (policy "block") ------------------------------------------

    cdef uint64_t _room(self, double deadline) except? 0:
        """The position the writer may fill next, once the slowest claimed
        cursor lets it; raises queue.Full when the deadline passes first."""
        cdef uint64_t tail = self.hdr.tail          # writer-owned
        if self.skip or tail - self.cached_low < self.nslots:
            return tail
        self.cached_low = fastmp_bc_slowest(self.hdr, tail)
        if tail - self.cached_low < self.nslots:
            return tail
        if not self._wait_room(tail, deadline):
            raise queue.Full
        return tail

    cdef bint _slowest_reaches(self, uint64_t needs, double seconds,
                               double deadline) noexcept nogil:
        cdef double until = spin_end(seconds, deadline)
        cdef int i
        while True:
            for i in range(SPIN_POLLS):
                if fastmp_bc_slowest(self.hdr, needs) >= needs:
                    return True
                fastmp_cpu_relax()
            if monotonic() >= until:
                return False

    cdef int _wait_room(self, uint64_t tail, double deadline) except -1:
        """Wait until every claimed cursor is at least tail+1-slots: 1, or
        0 once the deadline has passed."""
        cdef uint64_t needs = tail + 1 - self.nslots
        cdef uint64_t low
        cdef timespec ts
        cdef bint ready
        cdef double now
        if deadline > 0:
            if self._slowest_reaches(needs, SPIN_HOLDING_GIL, deadline):
                ready = True
            else:
                with nogil:
                    ready = self._slowest_reaches(needs, SPIN_SECONDS - SPIN_HOLDING_GIL,
                                                  deadline)
            if ready:
                self.cached_low = fastmp_bc_slowest(self.hdr, tail)
                return 1
        while True:
            low = fastmp_bc_slowest(self.hdr, tail)
            if low >= needs:
                self.cached_low = low
                return 1
            now = monotonic()
            if now >= self.next_liveness_check:
                self.next_liveness_check = now + WAIT_SLICE
                if self._free_dead(needs):
                    continue
            if not next_slice(deadline, &ts):
                return 0
            with nogil:
                fastmp_bc_sleep_until_room(self.hdr, needs, &ts)
            PyErr_CheckSignals()
            if self.closed:
                raise ValueError(f"{self!r} is closed")

    cdef int _free_dead(self, uint64_t needs) except -1:
        """Free the entries of the subscribers behind `needs`, or (needs 0)
        announced asleep, whose process is gone: how many."""
        cdef fastmp_bc_cursor* cursors = fastmp_bc_cursors(self.hdr)
        cdef uint64_t claim
        cdef uint32_t i
        cdef int freed = 0
        for i in range(fastmp_bc_entries_used(self.hdr)):
            claim = fastmp_claim_load(&cursors[i].claim)
            if not fastmp_bc_is_subscriber(claim):
                continue
            if needs == 0 and not cursors[i].sleeping or needs and cursors[i].position >= needs:
                continue
            if not fastmp_bc_process_alive(claim):
                freed += fastmp_bc_free_cursor(self.hdr, &cursors[i], claim)
        return freed

    cdef int _after_publish(self) except -1:
        """Someone is counted asleep (the publication just woke them): at
        most once per WAIT_SLICE, free the entries of sleepers whose process
        is gone, so a subscriber killed asleep does not cost every later
        publication a FUTEX_WAKE (policy "skip" never waits, so nothing else
        would notice it)."""
        cdef double now = monotonic()
        if now >= self.next_liveness_check:
            self.next_liveness_check = now + WAIT_SLICE
            self._free_dead(0)
        return 0

    # -- writer API ---------------------------------------------------------------

    def reserve(self, bint block=True, timeout=None):
        """A Reservation of the next frame: ``with bc.reserve() as view:``
        fills it in place and publishes it on a normal exit.  Blocks
        (policy "block") while the slowest live subscriber is `slots` frames
        behind: queue.Full when block is false or the timeout passes."""
        cdef double deadline
        cdef uint64_t tail, slot
        cdef Reservation r
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        deadline = call_deadline(block, timeout)
        if self._reserving():
            raise RuntimeError("this Broadcast handle already has an open reservation: "
                               "commit or abort it first")
        if not fastmp_role_held(&self.writer, &self.hdr.writer_claim):
            self._claim()
        tail = self._room(deadline)
        slot = tail % self.nslots
        if self.wviews is None:
            self.wviews = ViewCache(self.spec, self.segment, self.hdr.frames_offset,
                                    self.nslots, True)
        view = self.wviews.take(slot)
        fastmp_bc_begin_frame(&self.seqs[slot].seq, tail)
        r = new_reservation(self, <PyObject*>self.res, view)
        r.position = tail
        r.slot = slot
        self.res = r
        return r

    cdef bint _reserving(self) except -1:
        """Is a Reservation of this handle open?  One that nobody but this
        handle references any more was dropped unfinished (nobody can commit
        it): abort it, as a file is closed when dropped, and say no."""
        if self.res is None or not (<Reservation>self.res).active:
            return False
        if _Py_REFCNT(<PyObject*>self.res) != 1:
            return True
        self._finish_reservation(<Reservation>self.res, False)
        return False

    cdef int _finish_reservation(self, Reservation r, bint commit) except -1:
        try:
            self.wviews.retire(r.view)
            if commit:
                if fastmp_claim_load(&self.hdr.writer_claim) != self.writer.claim:
                    raise RuntimeError("this Broadcast handle is no longer the writer: "
                                       "the frame was not published")
                fastmp_bc_publish(self.hdr, &self.seqs[r.slot].seq, r.position)
                if self.hdr.sleepers:
                    self._after_publish()
        finally:
            done_handle(r)
        return 0

    def send(self, frame, bint block=True, timeout=None):
        """Copy one frame in and publish it (shape and dtype must match:
        ValueError / TypeError, before any wait).  Blocks like reserve()."""
        cdef Py_buffer view
        cdef double deadline
        cdef uint64_t tail, slot
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        deadline = call_deadline(block, timeout)
        if self._reserving():
            raise RuntimeError("this Broadcast handle has an open reservation: commit or "
                               "abort it before send()")
        self.spec._check(frame, &view, "Broadcast.send()", False)
        try:
            if not fastmp_role_held(&self.writer, &self.hdr.writer_claim):
                self._claim()
            tail = self._room(deadline)
            slot = tail % self.nslots
            fastmp_bc_begin_frame(&self.seqs[slot].seq, tail)
            frame_from_buffer(self.frames + slot * self.stride, &view, self.spec.frame_bytes)
            fastmp_bc_publish(self.hdr, &self.seqs[slot].seq, tail)
            if self.hdr.sleepers:
                self._after_publish()
        finally:
            PyBuffer_Release(&view)

    def close(self):
        """Stop using this handle (later calls raise ValueError).  If it is
        the writer, subscribers get EOFError once they have taken every
        frame.  Subscribers made by this handle stay usable."""
        if self.closed:
            return
        self.closed = True
        self._release()

    # -- subscribers ----------------------------------------------------------------

    def subscribe(self):
        """A Subscriber with its own cursor, starting at the writer's current
        position: it receives every frame published after this returns.
        RuntimeError if all max_readers entries are held by live subscribers."""
        cdef fastmp_bc_header* hdr = self.hdr
        cdef fastmp_bc_cursor* cursors
        cdef fastmp_bc_cursor* c = NULL
        cdef uint64_t me, claim, old, tail, now_tail
        cdef uint32_t i
        cdef int index = -1, attempt
        cdef Subscriber sub
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        cursors = fastmp_bc_cursors(hdr)
        me = fastmp_claim_me()
        # First a free entry; only if there is none, the entry of a process
        # that is gone (a liveness check costs a few microseconds each).
        for attempt in range(2):
            for i in range(hdr.max_readers):
                claim = fastmp_claim_load(&cursors[i].claim)
                if claim == 0:
                    if fastmp_bc_take_cursor(&cursors[i], me):
                        index = i
                        break
                elif attempt == 1 and not fastmp_bc_process_alive(claim):
                    # A subscriber, or a freer killed mid-free, that is gone.
                    if (fastmp_bc_free_cursor(hdr, &cursors[i], claim)
                            and fastmp_bc_take_cursor(&cursors[i], me)):
                        index = i
                        break
            if index >= 0:
                break
        if index < 0:
            raise RuntimeError(f"all {hdr.max_readers} subscriber entries of this Broadcast "
                               f"are held by live subscribers (max_readers="
                               f"{hdr.max_readers})")
        c = &cursors[index]
        fastmp_bc_use_entry(hdr, index)
        # Start at the tail.  A frame published between our read of it and
        # our store was published before subscribe() returned: move past it,
        # until the tail stands still between store and re-read (a few
        # rounds at most: a writer that publishes faster than this loop
        # turns, 20 ns, only gets a frame it published during the call
        # delivered).
        old = c.position
        tail = fastmp_bc_tail(hdr)
        for attempt in range(SUBSCRIBE_ROUNDS):
            fastmp_bc_publish_position(hdr, c, old, tail)
            old = tail
            now_tail = fastmp_bc_tail(hdr)
            if now_tail == tail or attempt == SUBSCRIBE_ROUNDS - 1:
                break               # `tail` is the position stored
            tail = now_tail
        if self.rviews is None:
            self.rviews = ViewCache(self.spec, self.segment, hdr.frames_offset, self.nslots,
                                    False)
        sub = Subscriber.__new__(Subscriber)
        sub.segment = self.segment
        sub.hdr = hdr
        sub.cur = c
        sub.seqs = self.seqs
        sub.frames = self.frames
        sub.spec = self.spec
        sub.views = self.rviews
        sub.nslots = self.nslots
        sub.stride = self.stride
        sub.skip = self.skip
        sub.index = index
        sub.claim = me
        sub.forkgen = fastmp_claim_fork_gen()
        sub.pos = tail
        sub.cached_tail = tail
        return sub


@cython.final
@cython.no_gc_clear
cdef class Subscriber(FrameOwner):
    """One cursor of a Broadcast (from ``Broadcast.subscribe()``), usable
    by any thread of the process that subscribed (one call at a time).

    * ``recv(block=True, timeout=None)`` -> a new array holding a copy of
      the next frame (ndarray; without NumPy a memoryview over a new
      bytearray).  ``queue.Empty`` when block is false or the timeout
      passes; EOFError once the writer has closed or died and every frame
      it published has been taken.
    * ``recv_into(out, block=True, timeout=None)``: copy into a writable
      buffer of the frame's shape and dtype.  (If it raises after waiting,
      policy "skip", `out` may hold a torn frame it rejected.)
    * ``recv_view(block=True, timeout=None)`` -> Frame: ``with
      sub.recv_view() as view:`` reads the frame in place (read-only); the
      exit gives it back.  policy="skip": if the writer overwrote it
      meanwhile, the release raises fastmp.FrameOverwritten (the data read
      may be torn) and the frame counts as skipped.
    * ``skipped``: frames this subscriber lost to the writer (policy
      "skip"; always 0 with "block").
    * ``qsize()``, ``close()`` (frees the cursor entry; the writer no longer
      waits for it), ``with`` support.

    Not picklable: pass the Broadcast to a child and subscribe there.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("Subscriber objects come from Broadcast.subscribe()")

    def __reduce__(self):
        raise TypeError("a Subscriber belongs to the process that subscribed and cannot be "
                        "pickled: pass the Broadcast to the other process and call "
                        "subscribe() there")

    def __repr__(self):
        state = " closed" if self.closed else ""
        return f"<fastmp.Subscriber #{self.index} position={self.pos}{state}>"

    def __dealloc__(self):
        self._release()

    def __enter__(self):
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    @property
    def skipped(self):
        """Frames this subscriber lost because the writer overwrote them
        before (or while) it read them; always 0 with policy "block"."""
        return self.n_skipped

    # -- state ------------------------------------------------------------------

    cdef int _check(self) except -1:
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        if self.forkgen != fastmp_claim_fork_gen():
            raise RuntimeError("this Subscriber belongs to the process that called "
                               "subscribe(); subscribe again in this process")
        if self.busy:
            raise RuntimeError("another thread is receiving from this Subscriber")
        if self.frame is not None and (<Frame>self.frame).active:
            if _Py_REFCNT(<PyObject*>self.frame) != 1:
                raise RuntimeError("this Subscriber has an open recv_view() frame: release "
                                   "it first")
            # Dropped unreleased (nobody else references it): release it now,
            # quietly - nobody is left to tell that it was overwritten (it
            # still counts as skipped if it was).
            self._end_frame(<Frame>self.frame, False)
        if fastmp_claim_peek(&self.cur.claim) != self.claim:
            raise RuntimeError("this Subscriber's cursor entry was taken over (its process "
                               "was found dead)")
        return 0

    cdef int _release(self) noexcept:
        """Give back an open frame's view and free the cursor entry, if this
        process holds it."""
        if self.hdr == NULL or self.claim == 0:
            return 0
        abandon_handle(self.views, self.frame)
        if self.forkgen == fastmp_claim_fork_gen():
            fastmp_bc_free_cursor(self.hdr, self.cur, self.claim)
        self.claim = 0
        return 0

    def close(self):
        """Free this subscriber's cursor entry (the writer stops waiting for
        it); later calls raise ValueError.  Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.busy:
            # Another thread is inside a receive (waiting, or copying with
            # the GIL released): it frees the entry on its way out, so that
            # a sleep it announced on this entry is retracted first.  Wake
            # it now rather than at the end of its slice.
            fastmp_ec_wake(&self.hdr.data_seq)
            return
        self._release()

    cdef int _done(self) except -1:
        """End of a receive: a close() from another thread meanwhile left
        the freeing of the entry to us."""
        self.busy = False
        if self.closed:
            self._release()
        return 0

    def qsize(self):
        """Frames published and not yet taken (at most `slots`)."""
        cdef uint64_t n
        if self.closed:
            raise ValueError(f"{self!r} is closed")
        n = fastmp_bc_tail(self.hdr) - self.pos
        return n if n < self.nslots else self.nslots

    # -- moving the cursor -----------------------------------------------------------

    cdef int _advance(self, uint64_t position) noexcept:
        if self.claim == 0:
            return 0                    # closed meanwhile: the entry is not ours
        fastmp_bc_publish_position(self.hdr, self.cur, self.pos, position)
        self.pos = position
        return 0

    cdef int _skip_ahead(self) noexcept:
        """The frame at the cursor is gone (overwritten): jump to the oldest
        one that can still be whole, counting what was lost."""
        cdef uint64_t tail = fastmp_bc_tail(self.hdr)
        cdef uint64_t to = self.pos + 1
        if tail >= self.nslots and tail - self.nslots > to:
            to = tail - self.nslots
        self.n_skipped += to - self.pos
        self.cached_tail = tail
        self._advance(to)
        return 0

    # -- waiting -------------------------------------------------------------------

    cdef bint _published(self, double seconds, double deadline) noexcept nogil:
        cdef double until = spin_end(seconds, deadline)
        cdef int i
        while True:
            for i in range(SPIN_POLLS):
                if fastmp_bc_tail(self.hdr) > self.pos:
                    return True
                fastmp_cpu_relax()
            if monotonic() >= until:
                return False

    cdef int _ready(self, double deadline) except -1:
        """1 once the frame at the cursor is published, 0 if the deadline
        passes first; EOFError if the writer is gone and nothing is left."""
        cdef timespec ts
        if self.pos < self.cached_tail:
            return 1
        self.cached_tail = fastmp_bc_tail(self.hdr)
        if self.pos < self.cached_tail:
            return 1
        if deadline > 0 and not self._published(SPIN_HOLDING_GIL, deadline):
            with nogil:
                self._published(SPIN_SECONDS - SPIN_HOLDING_GIL, deadline)
        while True:
            self.cached_tail = fastmp_bc_tail(self.hdr)
            if self.pos < self.cached_tail:
                return 1
            if fastmp_peer_gone(&self.hdr.writer_claim, &self.writer_watch, monotonic(),
                                WAIT_SLICE):
                self.cached_tail = fastmp_bc_tail(self.hdr)
                if self.pos < self.cached_tail:     # published just before it went
                    return 1
                raise EOFError("Broadcast: the writer has closed or exited and this "
                               "subscriber has taken every frame it published")
            if not next_slice(deadline, &ts):
                return 0
            with nogil:
                fastmp_bc_sleep_until_published(self.hdr, self.cur, self.pos, &ts)
            PyErr_CheckSignals()
            if self.closed:
                raise ValueError(f"{self!r} is closed")

    # -- receiving -------------------------------------------------------------------

    cdef int _await_intact(self, double deadline) except -1:
        """Wait for the frame at the cursor (queue.Empty at the deadline);
        policy "skip": skip ahead past frames already overwritten."""
        cdef uint64_t pos
        while True:
            if not self._ready(deadline):
                raise queue.Empty
            pos = self.pos
            if not self.skip or fastmp_bc_frame_intact(&self.seqs[pos % self.nslots].seq, pos):
                return 0
            self._skip_ahead()

    cdef object _receive(self, Py_buffer* out, double deadline):
        """Copy the next frame out (into `out`, or into a new array when
        `out` is NULL) and move past it."""
        cdef uint64_t pos, slot
        cdef uint64_t* seq
        cdef const char* src
        while True:
            self._await_intact(deadline)
            pos = self.pos
            slot = pos % self.nslots
            seq = &self.seqs[slot].seq
            src = self.frames + slot * self.stride
            if out == NULL:
                result = self.spec.copy_new(src)
            else:
                frame_to_buffer(out, src, self.spec.frame_bytes)
                result = None
            if self.skip and not fastmp_bc_frame_still_intact(seq, pos):
                self._skip_ahead()          # torn while copied: never returned
                continue
            self._advance(pos + 1)
            return result

    def recv(self, bint block=True, timeout=None):
        """A copy of the next frame (a new array); see the class docstring."""
        cdef double deadline
        self._check()
        deadline = call_deadline(block, timeout)
        # busy: the GIL is released while waiting and during big copies; a
        # second thread must not take the same frame meanwhile.
        self.busy = True
        try:
            return self._receive(NULL, deadline)
        finally:
            self._done()

    def recv_into(self, out, bint block=True, timeout=None):
        """Copy the next frame into `out` (a writable buffer of the frame's
        shape and dtype)."""
        cdef Py_buffer view
        cdef double deadline
        self._check()
        deadline = call_deadline(block, timeout)
        self.spec._check(out, &view, "Subscriber.recv_into()", True)
        self.busy = True
        try:
            self._receive(&view, deadline)
        finally:
            PyBuffer_Release(&view)
            self._done()

    def recv_view(self, bint block=True, timeout=None):
        """A Frame: ``with sub.recv_view() as view:`` reads the next frame in
        place; leaving the block moves past it."""
        cdef double deadline
        cdef uint64_t pos, slot
        cdef Frame f
        self._check()
        deadline = call_deadline(block, timeout)
        self.busy = True
        try:
            self._await_intact(deadline)
        finally:
            self._done()
        pos = self.pos
        slot = pos % self.nslots
        f = new_frame(self, <PyObject*>self.frame, self.views.take(slot))
        f.position = pos
        f.slot = slot
        self.frame = f
        return f

    cdef int _finish_frame(self, Frame f) except -1:
        return self._end_frame(f, True)

    cdef int _end_frame(self, Frame f, bint report) except -1:
        """Move past the frame `f` viewed; policy "skip": if the writer
        overwrote it meanwhile, it counts as skipped and (`report`)
        FrameOverwritten is raised."""
        cdef uint64_t pos = f.position
        try:
            self.views.retire(f.view)
            if self.closed or self.claim == 0 or self.forkgen != fastmp_claim_fork_gen():
                return 0
            if self.skip and not fastmp_bc_frame_still_intact(&self.seqs[f.slot].seq, pos):
                self._skip_ahead()
                if not report:
                    return 0
                raise FrameOverwritten(
                    f"Broadcast: the writer overwrote frame {pos} while it was viewed (the "
                    f"data read from the view may be torn); it counts as skipped")
            self._advance(pos + 1)
        finally:
            done_handle(f)
        return 0
