# Padded single-writer single-reader float64 channel.  See _float_channel.pyx
# for the protocol and _float_channel_layout.h for the shared layout and the
# memory-ordering argument.

from libc.stdint cimport uint32_t, uint64_t

from fastmp._claims cimport fastmp_peer_watch, fastmp_role
from fastmp._segment cimport Segment
from fastmp._sync cimport timespec

cdef extern from "_float_channel_layout.h" nogil:
    ctypedef struct fastmp_fc_header:
        uint64_t magic
        uint32_t layout_version
        uint32_t header_size
        uint64_t capacity
        uint64_t mask
        uint32_t latest
        uint64_t writer_claim
        uint64_t reader_claim
        uint64_t tail
        uint64_t head
        uint32_t data_seq
        uint32_t reader_sleeping
        uint32_t room_seq
        uint64_t writer_wants
        uint64_t latest_seq
    uint64_t FASTMP_FC_MAGIC
    uint32_t FASTMP_FC_LAYOUT_VERSION
    uint64_t FASTMP_FC_CLOSED

    uint64_t fastmp_fc_load_relaxed(const uint64_t* p)
    uint64_t fastmp_fc_load_acquire(const uint64_t* p)
    uint64_t fastmp_fc_load_seqcst(const uint64_t* p)
    void fastmp_fc_publish_tail(fastmp_fc_header* h, uint64_t tail)
    void fastmp_fc_publish_head(fastmp_fc_header* h, uint64_t head)
    void fastmp_fc_publish_latest(fastmp_fc_header* h, double value)
    bint fastmp_fc_read_latest(const fastmp_fc_header* h, uint64_t* seq, double* value)
    void fastmp_fc_sleep_until_readable(fastmp_fc_header* h, const timespec* slice)
    void fastmp_fc_sleep_until_room(fastmp_fc_header* h, uint64_t wanted, const timespec* slice)


cdef class FloatChannel:
    cdef Segment segment
    cdef fastmp_fc_header* hdr
    cdef double* slots
    cdef uint64_t cap            # capacity (floats); 1 in latest mode
    cdef uint64_t mask
    cdef readonly bint latest
    cdef readonly bint closed

    # Writer side, local to this handle: the claim word this handle installed,
    # and for which thread / fork generation (_claims.h: the fast "am I the
    # writer?" check needs no system call); a lower bound of the reader's head.
    cdef fastmp_role writer
    cdef uint64_t cached_head
    # Reader side: the same, and a lower bound of the writer's tail.
    cdef fastmp_role reader
    cdef uint64_t cached_tail
    # Peer liveness, rate-limited (_claims.h).
    cdef fastmp_peer_watch peer

    cdef int _bind(self, Segment segment) except -1
    cdef int _claim(self, bint writer) except -1
    cdef bint _peer_gone(self, bint reading) noexcept
    cdef bint _readable(self) noexcept nogil
    cdef uint64_t _room(self) noexcept nogil
    cdef bint _spin(self, bint reading, uint64_t wanted, double seconds,
                    double deadline) noexcept nogil
    cdef int _wait(self, bint reading, uint64_t wanted, double deadline) except -1
    cdef int _release_claims(self) noexcept
    cdef double _take_latest(self, double deadline) except? -1.0
