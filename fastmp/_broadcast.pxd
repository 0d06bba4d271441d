# One writer, many subscribers with their own cursors.  See _broadcast.pyx
# for the protocol and _broadcast_layout.h for the shared layout, the memory
# ordering and what survives a crash.

from libc.stdint cimport uint32_t, uint64_t

from fastmp._claims cimport fastmp_peer_watch, fastmp_role
from fastmp._frames cimport Frame, FrameOwner, FrameSpec, FrameStore, ViewCache
from fastmp._segment cimport Segment
from fastmp._sync cimport timespec

cdef extern from "_broadcast_layout.h" nogil:
    ctypedef struct fastmp_bc_header:
        uint64_t magic
        uint32_t layout_version
        uint32_t policy
        uint64_t slots
        uint64_t frame_bytes
        uint64_t stride
        uint64_t frames_offset
        uint32_t max_readers
        uint64_t writer_claim
        uint32_t entries_used
        uint64_t tail
        uint32_t data_seq
        uint32_t sleepers
        uint32_t room_seq
        uint64_t writer_needs
    ctypedef struct fastmp_bc_cursor:
        uint64_t claim
        uint64_t position
        uint32_t sleeping
    ctypedef struct fastmp_bc_slot:
        uint64_t seq
    uint64_t FASTMP_BC_MAGIC
    uint32_t FASTMP_BC_LAYOUT_VERSION
    uint32_t FASTMP_BC_POLICY_BLOCK
    uint32_t FASTMP_BC_POLICY_SKIP

    fastmp_bc_cursor* fastmp_bc_cursors(fastmp_bc_header* h)
    fastmp_bc_slot* fastmp_bc_slots(fastmp_bc_header* h)
    uint64_t fastmp_bc_segment_size(uint64_t max_readers, uint64_t slots, uint64_t stride)
    bint fastmp_bc_is_subscriber(uint64_t claim)
    uint32_t fastmp_bc_entries_used(fastmp_bc_header* h)
    void fastmp_bc_use_entry(fastmp_bc_header* h, uint32_t index)
    bint fastmp_bc_process_alive(uint64_t claim)
    uint64_t fastmp_bc_tail(const fastmp_bc_header* h)
    void fastmp_bc_begin_frame(uint64_t* seq, uint64_t position)
    void fastmp_bc_publish(fastmp_bc_header* h, uint64_t* seq, uint64_t position)
    uint64_t fastmp_bc_slowest(fastmp_bc_header* h, uint64_t upto)
    void fastmp_bc_clear_writer_needs(fastmp_bc_header* h)
    void fastmp_bc_sleep_until_room(fastmp_bc_header* h, uint64_t needs, const timespec* slice)
    void fastmp_bc_publish_position(fastmp_bc_header* h, fastmp_bc_cursor* c, uint64_t old,
                                    uint64_t position)
    void fastmp_bc_sleep_until_published(fastmp_bc_header* h, fastmp_bc_cursor* c,
                                         uint64_t position, const timespec* slice)
    bint fastmp_bc_take_cursor(fastmp_bc_cursor* c, uint64_t me)
    bint fastmp_bc_free_cursor(fastmp_bc_header* h, fastmp_bc_cursor* c, uint64_t claim)
    bint fastmp_bc_frame_intact(const uint64_t* seq, uint64_t position)
    bint fastmp_bc_frame_still_intact(const uint64_t* seq, uint64_t position)


# FrameStore: segment, spec, nslots, closed.
cdef class Broadcast(FrameStore):
    cdef fastmp_bc_header* hdr
    cdef fastmp_bc_slot* seqs
    cdef char* frames
    cdef uint64_t stride
    cdef bint skip

    # Writer side, local to this handle: the role it holds (_claims.h), a
    # lower bound of the slowest claimed cursor (policy "block"), the
    # writable views and the reusable Reservation, and when the liveness of
    # the subscribers holding it back (or counted asleep) is next checked.
    cdef fastmp_role writer
    cdef uint64_t cached_low
    cdef ViewCache wviews
    cdef object res                     # last Reservation (reused when idle)
    cdef double next_liveness_check
    # Read-only views shared by this process's subscribers of this handle.
    cdef ViewCache rviews

    cdef int _bind(self, Segment segment, FrameSpec spec) except -1
    cdef str _repr_extra(self)
    cdef int _claim(self) except -1
    cdef uint64_t _room(self, double deadline) except? 0
    cdef bint _slowest_reaches(self, uint64_t needs, double seconds,
                               double deadline) noexcept nogil
    cdef int _wait_room(self, uint64_t tail, double deadline) except -1
    cdef int _free_dead(self, uint64_t needs) except -1
    cdef int _after_publish(self) except -1
    cdef bint _reserving(self) except -1
    cdef int _release(self) noexcept


cdef class Subscriber(FrameOwner):
    # No reference to the Broadcast handle: dropping that handle closes its
    # writer role (EOF for subscribers) even while subscribers live on.
    cdef Segment segment                # keeps the memory mapped
    cdef fastmp_bc_header* hdr
    cdef fastmp_bc_cursor* cur
    cdef fastmp_bc_slot* seqs
    cdef char* frames
    cdef FrameSpec spec
    cdef ViewCache views
    cdef uint64_t nslots
    cdef uint64_t stride
    cdef bint skip
    cdef readonly bint closed
    cdef readonly int index             # entry in the cursor table

    cdef uint64_t claim                 # the claim word of this entry
    cdef unsigned int forkgen           # ... valid in this process only
    cdef uint64_t pos                   # next frame (mirrors the shared cursor)
    cdef uint64_t cached_tail           # lower bound of the writer's tail
    cdef uint64_t n_skipped
    cdef bint busy                      # a thread is inside a receive
    cdef object frame                   # last Frame (reused when idle)
    cdef fastmp_peer_watch writer_watch

    cdef int _check(self) except -1
    cdef bint _published(self, double seconds, double deadline) noexcept nogil
    cdef int _ready(self, double deadline) except -1
    cdef int _await_intact(self, double deadline) except -1
    cdef int _advance(self, uint64_t position) noexcept
    cdef int _skip_ahead(self) noexcept
    cdef object _receive(self, Py_buffer* out, double deadline)
    cdef int _release(self) noexcept
    cdef int _done(self) except -1
    cdef int _end_frame(self, Frame f, bint report) except -1
