# fastmp.Ring: a single-producer single-consumer ring of fixed-size typed
# frames.  See _typed_ring.pyx for the API and _typed_ring_layout.h for the
# shared layout and the memory-ordering argument.

from libc.stdint cimport uint32_t, uint64_t

from fastmp._claims cimport fastmp_peer_watch, fastmp_role
from fastmp._frames cimport Frame, FrameSpec, FrameStore, Reservation, ViewCache
from fastmp._segment cimport Segment
from fastmp._sync cimport timespec

cdef extern from "_typed_ring_layout.h" nogil:
    ctypedef struct fastmp_tr_header:
        uint64_t magic
        uint32_t layout_version
        uint32_t header_size
        uint64_t slots
        uint64_t stride
        uint64_t frame_bytes
        uint32_t itemsize
        uint32_t ndim
        uint64_t dims[8]
        uint64_t writer_claim
        uint64_t reader_claim
        uint64_t tail
        uint64_t head
        uint32_t data_seq
        uint32_t reader_sleeping
        uint32_t room_seq
        uint32_t writer_sleeping
    uint64_t FASTMP_TR_MAGIC
    uint32_t FASTMP_TR_LAYOUT_VERSION

    uint64_t fastmp_tr_load_relaxed(const uint64_t* p)
    uint64_t fastmp_tr_load_acquire(const uint64_t* p)
    void fastmp_tr_publish_tail(fastmp_tr_header* h, uint64_t tail)
    void fastmp_tr_publish_head(fastmp_tr_header* h, uint64_t head)
    void fastmp_tr_sleep_until_readable(fastmp_tr_header* h, const timespec* slice)
    void fastmp_tr_sleep_until_room(fastmp_tr_header* h, const timespec* slice)


# FrameStore: segment, spec, nslots, closed.
cdef class Ring(FrameStore):
    cdef fastmp_tr_header* hdr
    cdef char* base                 # slot 0
    cdef Py_ssize_t stride

    # Writer side (handle-local): role (_claims.h), a lower bound of the
    # reader's head, the slot views, the reusable Reservation.
    cdef fastmp_role writer
    cdef uint64_t cached_head
    cdef ViewCache wviews
    cdef object res                 # Reservation or None
    cdef bint reserving             # a Reservation of this handle is open
    # Reader side: the same, with a lower bound of the writer's tail.
    cdef fastmp_role reader
    cdef uint64_t cached_tail
    cdef ViewCache rviews
    cdef object frame               # Frame or None
    cdef bint viewing               # a Frame of this handle is open
    cdef fastmp_peer_watch peer

    cdef int _bind(self, Segment segment, FrameSpec spec) except -1
    cdef object _closed_exc(self)
    cdef int _claim(self, bint writer) except -1
    cdef int _release_claims(self) noexcept
    cdef bint _readable(self) noexcept nogil
    cdef bint _has_room(self) noexcept nogil
    cdef bint _spin(self, bint reading, double seconds, double deadline) noexcept nogil
    cdef int _wait(self, bint reading, double deadline) except -1
    cdef uint64_t _writable_position(self, double deadline) except? 0xffffffffffffffff
    cdef uint64_t _readable_position(self, double deadline) except? 0xffffffffffffffff
