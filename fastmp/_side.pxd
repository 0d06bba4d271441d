# Side arenas: shared memory beside a framed ring that carries the
# out-of-band buffers of large messages (one copy instead of two).  See
# _side.pyx for the protocol and _side_layout.h for the shared layout.

from libc.stdint cimport uint32_t, uint64_t

from fastmp._segment cimport Segment

cdef extern from "_side_layout.h":
    ctypedef struct fastmp_side_region:
        uint64_t owner
        uint64_t offset
        uint64_t size
        uint64_t generation
    ctypedef struct fastmp_side_header:
        uint64_t magic
        uint32_t layout_version
        uint64_t file_end
        fastmp_side_region regions[64]  # FASTMP_SIDE_REGIONS
    uint64_t FASTMP_SIDE_MAGIC
    uint32_t FASTMP_SIDE_LAYOUT_VERSION
    int FASTMP_SIDE_REGIONS
    int FASTMP_SIDE_HEADER_BYTES
    uint32_t FASTMP_SIDE_EMPTY, FASTMP_SIDE_FREE, FASTMP_SIDE_WRITING
    uint32_t FASTMP_SIDE_QUEUED, FASTMP_SIDE_HELD, FASTMP_SIDE_BUSY
    uint64_t fastmp_side_owner(uint32_t state, uint32_t pid) nogil
    uint64_t fastmp_side_load(const uint64_t* p) nogil
    void fastmp_side_store(uint64_t* p, uint64_t v) nogil
    int fastmp_side_cas(uint64_t* p, uint64_t expected, uint64_t desired) nogil
    uint64_t fastmp_side_fetch_add(uint64_t* p, uint64_t n) nogil

cdef enum:
    # Messages whose out-of-band buffers add up to at least this many bytes
    # travel through the side arena (issue: "arrays of 1 MB and more").
    SIDE_MIN_BYTES = 512 * 1024


cdef class _Mapping:
    cdef char* addr
    cdef uint64_t offset
    cdef uint64_t size


cdef class _Lease:
    cdef SideArena arena
    cdef _Mapping mapping
    cdef int index
    cdef uint32_t state     # WRITING (sender) or HELD (receiver); QUEUED once sent
    cdef uint32_t pid
    cdef uint64_t generation
    cdef uint64_t offset
    cdef uint64_t size

    cdef int _map(self) except -1
    cdef void mark_queued(self) noexcept nogil


cdef class SideArena:
    cdef readonly Segment segment
    cdef fastmp_side_header* hdr
    cdef dict mappings      # region index -> _Mapping, this process's

    cdef bint _reclaimable(self, uint64_t owner, uint32_t me) noexcept nogil
    cdef void _free_the_dead(self, uint32_t me) noexcept
    cdef _Lease _allocate(self, uint64_t size)
    cdef _Lease _lease(self, int index, uint32_t me, uint32_t state=*)
    cdef void _forget(self, int index) noexcept
    cdef _Mapping _mapping(self, int index, uint64_t offset, uint64_t size)
    cdef void _trim(self, int freed) noexcept
    cdef uint64_t queued_bytes(self) noexcept nogil
    cdef object pack(self, list parts)
    cdef object claim(self, object record)
