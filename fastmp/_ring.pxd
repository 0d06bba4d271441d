# Framed ring: variable-size messages, many writers and many readers, one
# robust mutex.  See _ring.pyx for the protocol and _ring_layout.h for the
# shared layout.

from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from fastmp._segment cimport Segment
from fastmp._side cimport SideArena
from fastmp._sync cimport pthread_mutex_t

cdef extern from "_ring_layout.h":
    ctypedef struct fastmp_ring_header:
        uint64_t magic
        uint32_t layout_version
        uint32_t header_size
        uint64_t capacity
        int64_t maxsize
        uint32_t armed
        pthread_mutex_t mutex
        uint32_t not_empty
        uint32_t not_full
        uint64_t tail
        int64_t written
        uint64_t head
        int64_t taken
        int64_t pending
        int32_t readers_waiting
        int32_t writers_waiting
        int32_t stream_writer
        int32_t stream_reader
        uint64_t stream_start
        uint64_t stream_remaining
        uint32_t signalled
        uint32_t hangups
    uint64_t FASTMP_RING_MAGIC
    uint32_t FASTMP_RING_LAYOUT_VERSION

# put() results
cdef enum:
    PUT_WRITTEN = 0     # in the ring, visible to readers
    PUT_ADMITTED = 1    # counted against maxsize but no room yet: the caller
                        # keeps it and hands it to put_admitted() later
    PUT_FULL = 2        # maxsize reached and the deadline passed
    PUT_UNCOUNTED = 3   # unbounded ring whose lock a live process kept past
                        # the wait: the caller buffers it and writes it later
                        # with put_many (not put_admitted: it was not counted)

cdef struct record_header:
    uint64_t length
    uint32_t kind
    uint32_t reserved

cdef class FramedRing:
    cdef readonly Segment segment
    # Where large messages' out-of-band buffers go (_side.pyx); shared like
    # the segment.
    cdef readonly SideArena side
    cdef fastmp_ring_header* hdr
    cdef char* data
    cdef readonly uint64_t capacity
    cdef readonly int64_t maxsize
    cdef uint64_t stream_chunk
    # Per process, set by a Connection (bind_connection), -1 otherwise:
    cdef int hangup_fd      # socket that reads EOF once the other side is gone
    cdef int ready_fd       # eventfd mirroring "records waiting" (when armed)
    cdef uint32_t seen_hangups
    cdef bint peer_closed   # this process saw the other end gone

    cdef int _peer_gone(self) noexcept nogil
    cdef int _check_peer_for_writer(self, bint force) except -1
    cdef void _signal_ready(self) noexcept nogil
    cdef void _clear_ready(self) noexcept nogil
    cdef void _retract_stream(self, bint admitted) noexcept nogil

    cdef void _copy_in(self, uint64_t pos, const char* src, uint64_t n) noexcept nogil
    cdef void _copy_out(self, uint64_t pos, char* dst, uint64_t n) noexcept nogil
    cdef int _lock(self, double deadline=*, double patience=*) except -1
    cdef void _relock(self) noexcept nogil
    cdef void _admit_pending(self, Py_ssize_t k) noexcept nogil
    cdef void _drop_pending(self, Py_ssize_t k) noexcept nogil
    cdef void _skip_orphaned_stream(self) noexcept nogil
    cdef void _unlock(self) noexcept nogil
    cdef void _spin_unlocked(self, double deadline) noexcept
    cdef int _await_records(self, bint* spun, double deadline, bint may_end) except -1
    cdef int _wait(self, bint for_readers, double deadline) except -1
    cdef int _spin_until_changed(self, bint for_readers, double deadline) except -1
    cdef void _wake_readers(self, bint everyone) noexcept nogil
    cdef void _wake_writers(self) noexcept nogil
    cdef int send(self, uint32_t kind, object body) except -1
    cdef bint _try_put_bytes(self, uint32_t kind, bytes body, uint64_t need) except -1
    cdef object receive(self, int64_t max_length, const int64_t* length_extra=*)
    cdef object _get(self, Py_ssize_t max_messages, double deadline, int64_t max_length=*,
                     const int64_t* length_extra=*)
    cdef object _take(self, Py_ssize_t max_n)
    cdef object _take_one(self, record_header* rh)
    cdef uint64_t _message_length(self, record_header* rh, const int64_t* length_extra) noexcept nogil
    cdef object _copy_body(self, uint64_t pos, record_header* rh)
    cdef object _place(self, uint32_t kind, object body)
    cdef object _claim_side(self, object body)
    cdef list _prepare_batch(self, object records, uint64_t* need, bint place=*,
                             uint64_t* side_need=*)
    cdef bint _side_room(self, uint64_t side_need) noexcept nogil
    cdef int _put_records(self, list bodies, uint64_t need, int mode, double deadline,
                          double room_wait, uint64_t side_need=*) except -1
    cdef object _consume_stream(self, bint discard)
    cdef bint _clear_dead_stream_writer(self) noexcept nogil
    cdef bint _count_allows(self, Py_ssize_t k, bint admitted) noexcept nogil
    cdef int _put_stream(self, uint32_t kind, object body, uint64_t length, bint admitted,
                         double deadline, double room_deadline) except -1
