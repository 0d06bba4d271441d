# cython: boundscheck=True, wraparound=True, cdivision=False
"""Side arenas: large arrays cross a ring with one copy.

Through the ring itself a message is copied twice: into the ring by its
sender, out of it by its receiver.  For a large NumPy array that second copy
(and the receive buffer it needs) is pure waste, so a ring keeps a *side
arena* beside it (one memfd, shared like the ring): a message whose
out-of-band buffers add up to SIDE_MIN_BYTES or more has them copied into a
region of the arena by its sender (the one copy), and the ring carries only
a small record naming the region (KIND_SIDE).  The receiver maps the region
and unpickles the arrays straight over it: they live in shared memory until
the last of them goes away, and then the region is free for the next
message.

The arena's first page is a table of regions (_side_layout.h says who may
change what, and how).  In short:

* A sender takes a FREE region that fits (best fit, at most twice the size
  needed), or gives an EMPTY or unfitting one fresh memory at the end of the
  file (fallocate: the pages are allocated once, then reused from message to
  message, so no page faults in the steady state), copies the buffers in
  with the GIL released, and marks it QUEUED under the ring mutex just
  before the record is published.  A put that fails (Full, timeout, Ctrl-C)
  gives the region back.
* The receiver that takes the record claims the region (QUEUED -> HELD by
  its pid), still under the ring mutex, and maps it lazily, when the
  unpickler first asks for a buffer.  The arrays hold a _Lease; the lease's
  end marks the region FREE.
* Crash safety: a region HELD or WRITING by a process that is gone is taken
  back by the next sender that needs memory, so a receiver killed while
  holding arrays leaks nothing; a QUEUED region is never taken back, so a
  sender may exit right after put() and its message still arrives.  When
  every process has closed the arena, the kernel frees all of it.
* Memory: FREE regions are kept for reuse up to KEEP_BYTES in all; beyond
  that a freed region's pages are punched out of the file.  With all 64
  region entries busy (receivers keeping many large arrays alive), messages
  travel through the ring as before (two copies), never fail.

Each process maps each region it touches once and keeps the mapping while
the region keeps its place in the file (mappings), so a reused region costs
neither a system call nor a page fault.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from libc.errno cimport ESRCH, errno
from libc.string cimport memcpy, strerror
from posix.signal cimport kill
from posix.unistd cimport getpid

import io
import os
import pickle
import struct

from fastmp._sync cimport pid_alive

__all__ = ["SideArena", "KEEP_BYTES", "SIDE_MIN"]

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    void* MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_POPULATE

cdef extern from "<fcntl.h>" nogil:
    int fallocate(int fd, int mode, long offset, long length)
    int FALLOC_FL_PUNCH_HOLE
    int FALLOC_FL_KEEP_SIZE

cdef enum:
    PAGE = 4096
    # Buffers start 64-byte aligned in a region (NumPy and SIMD like it).
    BUFFER_ALIGN = 64
    # Copies at least this large run with the GIL released.
    BIG_COPY = 262144

SIDE_MIN = SIDE_MIN_BYTES

# FREE regions kept for reuse, in all, per arena.
cdef uint64_t _PHYSICAL = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
KEEP_BYTES = min(512 << 20, _PHYSICAL // 8)
cdef uint64_t _keep_bytes = KEEP_BYTES

# The record a side message leaves in the ring:
#   [u64 length of the same message as a KIND_PICKLE_OOB body (maxlength checks)]
#   [u32 region index][u32 0][u64 generation]
#   then the KIND_PICKLE_OOB header [u64 n|flags][u64 len(pickle)][u64 len(buffer i)]...
#   and the pickle (padded to 8); the buffers are in the region, each 64-byte aligned.
cdef object _SIDE_HEADER = struct.Struct("<QIIQ")
SIDE_HEADER_BYTES = _SIDE_HEADER.size
cdef unsigned long long _HAS_READONLY = 1ULL << 63


cdef inline uint64_t _align(uint64_t n, uint64_t to) noexcept nogil:
    return (n + to - 1) // to * to


cdef inline uint32_t _state(uint64_t owner) noexcept nogil:
    return <uint32_t>(owner >> 32)


cdef inline uint32_t _pid(uint64_t owner) noexcept nogil:
    return <uint32_t>(owner & 0xffffffffULL)


cdef class _Mapping:
    """This process's mapping of one region (unmapped when the last lease
    using it and the arena's cache have let go)."""

    def __dealloc__(self):
        if self.addr != NULL:
            munmap(self.addr, <size_t>self.size)
            self.addr = NULL


cdef class _Lease:
    """One message's use of a region: a sender's while it copies and sends,
    a receiver's while arrays unpickled over it are alive.  Exports the
    region as a writable buffer; its end gives the region back."""

    def __getbuffer__(self, Py_buffer* view, int flags):
        self._map()
        PyBuffer_FillInfo(view, self, self.mapping.addr, <Py_ssize_t>self.size, 0, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass

    cdef int _map(self) except -1:
        if self.mapping is None:
            self.mapping = self.arena._mapping(self.index, self.offset, self.size)
        return 0

    cdef void mark_queued(self) noexcept nogil:
        """Sender, ring mutex held, just before the record is published:
        from now on the region belongs to the message, not to this process."""
        fastmp_side_store(&self.arena.hdr.regions[self.index].owner,
                          fastmp_side_owner(FASTMP_SIDE_QUEUED, self.pid))
        self.state = FASTMP_SIDE_QUEUED

    def __dealloc__(self):
        # A forked child inherits its parent's leases (arrays); only the
        # process that took the region gives it back.
        if self.arena is None or self.state == FASTMP_SIDE_QUEUED or <uint32_t>getpid() != self.pid:
            return
        if fastmp_side_cas(&self.arena.hdr.regions[self.index].owner,
                           fastmp_side_owner(self.state, self.pid),
                           fastmp_side_owner(FASTMP_SIDE_FREE, 0)):
            self.arena._trim(self.index)


cdef class SideMessage:
    """A received side record: the pickle and where each out-of-band buffer
    lies in the claimed region.  load() unpickles (zero copy)."""

    cdef _Lease lease
    cdef object pickled
    cdef list lengths
    cdef list offsets
    cdef bint readonly_flag
    cdef readonly uint64_t oob_length

    def load(self):
        cdef Py_ssize_t i
        view = memoryview(self.lease)
        buffers = [view[self.offsets[i]:self.offsets[i] + self.lengths[i]]
                   for i in range(len(self.lengths))]
        self.lease = None       # the buffers keep it alive now
        if self.readonly_flag:
            from fastmp._message import _WritableBuffersUnpickler
            return _WritableBuffersUnpickler(io.BytesIO(self.pickled), buffers=buffers).load()
        return pickle.loads(self.pickled, buffers=buffers)

    def oob_body(self):
        """The message as a KIND_PICKLE_OOB body (bytes): for recv_bytes,
        which must hand out the bytes themselves."""
        cdef Py_ssize_t i
        view = memoryview(self.lease)
        n = len(self.lengths)
        parts = [struct.pack(f"<{n + 2}Q", n | (_HAS_READONLY if self.readonly_flag else 0),
                             len(self.pickled), *self.lengths),
                 self.pickled, b"\0" * ((8 - len(self.pickled) % 8) % 8)]
        for i in range(n):
            parts.append(view[self.offsets[i]:self.offsets[i] + self.lengths[i]])
            parts.append(b"\0" * ((8 - self.lengths[i] % 8) % 8))
        self.lease = None
        return b"".join(parts)


cdef list _buffer_offsets(list lengths, uint64_t* total):
    cdef list offsets = []
    cdef uint64_t at = 0
    for length in lengths:
        offsets.append(at)
        at = _align(at + <uint64_t>length, BUFFER_ALIGN)
    total[0] = at
    return offsets


cdef class SideArena:
    """The regions of large-message memory beside one ring."""

    def __init__(self):
        self.segment = Segment(FASTMP_SIDE_HEADER_BYTES)
        self._bind()
        # The segment is zero-filled: every entry starts EMPTY.
        self.hdr.file_end = FASTMP_SIDE_HEADER_BYTES
        self.hdr.layout_version = FASTMP_SIDE_LAYOUT_VERSION
        self.hdr.magic = FASTMP_SIDE_MAGIC

    def _bind(self):
        self.hdr = <fastmp_side_header*>self.segment.addr
        self.mappings = {}

    @staticmethod
    def _attach(Segment segment):
        cdef SideArena arena = SideArena.__new__(SideArena)
        cdef fastmp_side_header* hdr = <fastmp_side_header*>segment.addr
        if segment.size < FASTMP_SIDE_HEADER_BYTES or hdr.magic != FASTMP_SIDE_MAGIC:
            raise ValueError("shared memory does not hold a fastmp side arena")
        if hdr.layout_version != FASTMP_SIDE_LAYOUT_VERSION:
            raise ValueError(f"fastmp side arena layout version {hdr.layout_version} is not "
                             f"the supported version {FASTMP_SIDE_LAYOUT_VERSION}")
        arena.segment = segment
        arena._bind()
        return arena

    def __reduce__(self):
        # The segment's reduction allows this only while a process starts.
        return (SideArena._attach, (self.segment,))

    # -- regions ----------------------------------------------------------

    cdef _Mapping _mapping(self, int index, uint64_t offset, uint64_t size):
        """This process's mapping of region `index` at (offset, size),
        reused while the region stays where it is."""
        cdef _Mapping mapping = self.mappings.get(index)
        cdef void* p
        if mapping is not None and mapping.offset == offset and mapping.size == size:
            return mapping
        with nogil:
            p = mmap(NULL, <size_t>size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     self.segment.fd, <long>offset)
        if p == MAP_FAILED:
            err = errno
            raise OSError(err, f"cannot map {size} bytes of a large message: "
                               f"{strerror(err).decode()}")
        mapping = _Mapping.__new__(_Mapping)
        mapping.addr = <char*>p
        mapping.offset = offset
        mapping.size = size
        self.mappings[index] = mapping
        return mapping

    cdef bint _reclaimable(self, uint64_t owner, uint32_t me) noexcept nogil:
        """FREE, or in a state only its (now gone) process could leave."""
        cdef uint32_t state = _state(owner), pid = _pid(owner)
        if state == FASTMP_SIDE_FREE:
            return True
        if state == FASTMP_SIDE_WRITING or state == FASTMP_SIDE_HELD or state == FASTMP_SIDE_BUSY:
            return pid != me and not pid_alive(<int>pid)
        return False

    cdef void _free_the_dead(self, uint32_t me) noexcept:
        """Give back the regions held (WRITING, HELD) by processes that no
        longer exist at all: a receiver killed with arrays alive, a sender
        killed mid-copy.  One kill(pid, 0) per holder, so every allocation
        can afford it; a dead process not yet reaped by its parent (a
        zombie) still answers kill and is caught by _reclaimable's /proc
        check when memory runs short."""
        cdef uint64_t owner
        cdef uint32_t state, pid
        cdef int i
        for i in range(FASTMP_SIDE_REGIONS):
            owner = fastmp_side_load(&self.hdr.regions[i].owner)
            state = _state(owner)
            pid = _pid(owner)
            if (state == FASTMP_SIDE_WRITING or state == FASTMP_SIDE_HELD) and pid != me and \
                    kill(<int>pid, 0) != 0 and errno == ESRCH and \
                    fastmp_side_cas(&self.hdr.regions[i].owner, owner,
                                    fastmp_side_owner(FASTMP_SIDE_FREE, 0)):
                self._trim(i)

    cdef _Lease _allocate(self, uint64_t size):
        """A region of at least `size` bytes held WRITING by this process,
        or None when every entry is taken (the caller uses the ring)."""
        cdef uint32_t me = <uint32_t>getpid()
        cdef fastmp_side_region* r
        cdef uint64_t owner, best_owner = 0, spare_owner = 0, offset
        cdef int i, best, spare, attempt, rc
        cdef bint look_at_dead = False
        cdef _Lease lease
        size = _align(size, PAGE)
        self._free_the_dead(me)
        for attempt in range(8):
            best = -1
            spare = -1
            for i in range(FASTMP_SIDE_REGIONS):
                r = &self.hdr.regions[i]
                owner = fastmp_side_load(&r.owner)
                if _state(owner) == FASTMP_SIDE_EMPTY:
                    if spare < 0 or _state(spare_owner) != FASTMP_SIDE_EMPTY:
                        spare, spare_owner = i, owner
                elif _state(owner) == FASTMP_SIDE_FREE or (
                        look_at_dead and self._reclaimable(owner, me)):
                    if _state(owner) != FASTMP_SIDE_BUSY and size <= r.size <= 2 * size:
                        if best < 0 or r.size < self.hdr.regions[best].size:
                            best, best_owner = i, owner
                    elif spare < 0:
                        spare, spare_owner = i, owner
            if best < 0 and not look_at_dead:
                # No free region fits.  Before fresh memory, look for regions
                # of processes that are gone (a /proc check per owner, so
                # not on the common path, where a freed region fits).
                look_at_dead = True
                continue
            if best >= 0:
                r = &self.hdr.regions[best]
                if not fastmp_side_cas(&r.owner, best_owner,
                                       fastmp_side_owner(FASTMP_SIDE_WRITING, me)):
                    continue    # somebody else took it: look again
                r.generation += 1
                return self._lease(best, me)
            if spare < 0:
                return None
            # Give the spare entry fresh memory of the right size.
            r = &self.hdr.regions[spare]
            if not fastmp_side_cas(&r.owner, spare_owner, fastmp_side_owner(FASTMP_SIDE_BUSY, me)):
                continue
            self._forget(spare)
            offset = fastmp_side_fetch_add(&self.hdr.file_end, size)
            with nogil:
                if r.size:
                    fallocate(self.segment.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              <long>r.offset, <long>r.size)
                r.size = 0
                rc = fallocate(self.segment.fd, 0, <long>offset, <long>size)
            if rc != 0:
                # No memory for it (ENOMEM/ENOSPC): the message goes the
                # ring's way instead.
                fastmp_side_store(&r.owner, fastmp_side_owner(FASTMP_SIDE_EMPTY, 0))
                return None
            r.offset = offset
            r.size = size
            r.generation += 1
            fastmp_side_store(&r.owner, fastmp_side_owner(FASTMP_SIDE_WRITING, me))
            return self._lease(spare, me)
        return None

    cdef _Lease _lease(self, int index, uint32_t me, uint32_t state=FASTMP_SIDE_WRITING):
        """A lease on region `index`, which this process now holds in `state`."""
        cdef _Lease lease = _Lease.__new__(_Lease)
        cdef fastmp_side_region* r = &self.hdr.regions[index]
        lease.arena = self
        lease.index = index
        lease.pid = me
        lease.state = state
        lease.generation = r.generation
        lease.offset = r.offset
        lease.size = r.size
        return lease

    cdef void _forget(self, int index) noexcept:
        """This process's mapping of `index` is about to be stale."""
        self.mappings.pop(index, None)

    cdef void _trim(self, int freed) noexcept:
        """Region `freed` just became FREE: if the arena now keeps more than
        _keep_bytes idle, punch its pages out of the file."""
        cdef uint64_t idle = 0, owner
        cdef int i
        cdef uint32_t me
        cdef fastmp_side_region* r
        for i in range(FASTMP_SIDE_REGIONS):
            owner = fastmp_side_load(&self.hdr.regions[i].owner)
            if _state(owner) == FASTMP_SIDE_FREE:
                idle += self.hdr.regions[i].size
        if idle <= _keep_bytes:
            return
        me = <uint32_t>getpid()
        r = &self.hdr.regions[freed]
        if not fastmp_side_cas(&r.owner, fastmp_side_owner(FASTMP_SIDE_FREE, 0),
                               fastmp_side_owner(FASTMP_SIDE_BUSY, me)):
            return              # already reused
        self._forget(freed)
        with nogil:
            fallocate(self.segment.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      <long>r.offset, <long>r.size)
        r.size = 0
        fastmp_side_store(&r.owner, fastmp_side_owner(FASTMP_SIDE_EMPTY, 0))

    cdef uint64_t queued_bytes(self) noexcept nogil:
        """Bytes of regions QUEUED: sent and not yet taken by a reader."""
        cdef uint64_t queued = 0
        cdef int i
        for i in range(FASTMP_SIDE_REGIONS):
            if _state(fastmp_side_load(&self.hdr.regions[i].owner)) == FASTMP_SIDE_QUEUED:
                queued += self.hdr.regions[i].size
        return queued

    # -- messages ---------------------------------------------------------

    cdef object pack(self, list parts):
        """Sender.  `parts` is a KIND_PICKLE_OOB body as _message.encode
        builds it ([header, pickle, pad, buffer 1, pad, ...]).  Copies the
        buffers into a region and returns (record parts, lease), or None
        when no region is available."""
        cdef Py_buffer view
        cdef uint64_t total = 0, oob_length = 0
        cdef Py_ssize_t i, n
        cdef _Lease lease
        cdef char* dst
        raws = parts[3::2]
        n = len(raws)
        lengths = [raw.nbytes for raw in raws]
        offsets = _buffer_offsets(lengths, &total)
        lease = self._allocate(total)
        if lease is None:
            return None
        lease._map()
        for part in parts:
            oob_length += <uint64_t>memoryview(part).nbytes
        for i in range(n):
            PyObject_GetBuffer(raws[i], &view, PyBUF_SIMPLE)
            try:
                dst = lease.mapping.addr + <uint64_t>offsets[i]
                if view.len >= BIG_COPY:
                    with nogil:
                        memcpy(dst, view.buf, <size_t>view.len)
                else:
                    memcpy(dst, view.buf, <size_t>view.len)
            finally:
                PyBuffer_Release(&view)
        head = _SIDE_HEADER.pack(oob_length, lease.index, 0, lease.generation)
        return [head, parts[0], parts[1], parts[2]], lease

    cdef object claim(self, object record):
        """Receiver, ring mutex held, the record just taken: make its region
        this process's (HELD) and return a SideMessage for it."""
        cdef uint32_t me = <uint32_t>getpid()
        cdef uint64_t owner, oob_length, generation, total = 0
        cdef uint32_t index, state
        cdef fastmp_side_region* r
        cdef SideMessage message
        oob_length, index, _, generation = _SIDE_HEADER.unpack_from(record, 0)
        if index >= <uint32_t>FASTMP_SIDE_REGIONS:
            raise ValueError("corrupted fastmp side record")
        r = &self.hdr.regions[index]
        while True:
            owner = fastmp_side_load(&r.owner)
            state = _state(owner)
            # QUEUED is what a sender leaves.  HELD by a dead process: a
            # receiver died holding the ring mutex before it could advance
            # past this record, so the record (and region) is still ours to take.
            if r.generation != generation or not (
                    state == FASTMP_SIDE_QUEUED or
                    (state == FASTMP_SIDE_HELD and _pid(owner) != me and not pid_alive(<int>_pid(owner)))):
                raise OSError("fastmp: a large message was lost: its memory was taken back "
                              "after a receiver died while taking it")
            if fastmp_side_cas(&r.owner, owner, fastmp_side_owner(FASTMP_SIDE_HELD, me)):
                break
        lease = self._lease(index, me, FASTMP_SIDE_HELD)
        at = _SIDE_HEADER.size
        (count,) = struct.unpack_from("<Q", record, at)
        message = SideMessage.__new__(SideMessage)
        message.readonly_flag = (count & _HAS_READONLY) != 0
        count &= ~_HAS_READONLY
        lengths = list(struct.unpack_from(f"<{count + 1}Q", record, at + 8))
        pickle_length = lengths.pop(0)
        at += 8 * (count + 2)
        message.pickled = bytes(memoryview(record)[at:at + pickle_length])
        message.lengths = lengths
        message.offsets = _buffer_offsets(lengths, &total)
        message.oob_length = oob_length
        message.lease = lease
        return message

    # -- observers ----------------------------------------------------------

    def stats(self):
        """{state name: (regions, bytes)} over the whole arena (approximate
        while other processes work on it)."""
        names = {FASTMP_SIDE_EMPTY: "empty", FASTMP_SIDE_FREE: "free",
                 FASTMP_SIDE_WRITING: "writing", FASTMP_SIDE_QUEUED: "queued",
                 FASTMP_SIDE_HELD: "held", FASTMP_SIDE_BUSY: "busy"}
        out = {name: [0, 0] for name in names.values()}
        cdef int i
        for i in range(FASTMP_SIDE_REGIONS):
            entry = out[names[_state(fastmp_side_load(&self.hdr.regions[i].owner))]]
            entry[0] += 1
            entry[1] += self.hdr.regions[i].size
        return {name: tuple(v) for name, v in out.items()}

    def file_bytes(self):
        """How far the arena's file extends (sparse: punched regions hold
        no memory)."""
        return self.hdr.file_end

    # -- for tests ----------------------------------------------------------

    def _hold_region(self, Py_ssize_t size):
        """A region held WRITING by this process, as a sender holds one while
        it copies (None when none is available)."""
        return self._allocate(<uint64_t>size)


def _set_keep_bytes(uint64_t n):
    """Change how many idle bytes an arena keeps (tests); returns the old value."""
    global _keep_bytes
    old = _keep_bytes
    _keep_bytes = n
    return old
