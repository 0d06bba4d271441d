"""Receive buffers for large messages, recycled within a process.

A fresh 64 MiB allocation costs ~20 ms of page faults here (the kernel
zeroes and maps 16,384 pages) before a byte is copied: receiving into new
memory every time caps large messages at ~2.5 GB/s however fast the ring is.
glibc cannot help: allocations above 32 MiB are always fresh mmaps.

So a received message of at least LARGE_MESSAGE bytes lands in a
LargeBuffer: anonymous memory mapped once (pre-faulted with MAP_POPULATE).
When the last object using it (the NumPy array unpickled over it) goes away,
its mapping is kept in a small per-process cache instead of being unmapped,
and the next large message of a similar size reuses it: no page faults,
just the copy.  At most CACHE_BYTES stay cached; `clear_cache()` drops them.
"""

from cpython.buffer cimport PyBuffer_FillInfo

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    void* MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE

cdef enum:
    PAGE = 4096
    CACHE_SLOTS = 4

LARGE_MESSAGE_BYTES = LARGE_MESSAGE
# At most this many bytes of idle mappings are kept per process.
cdef size_t CACHE_BYTES = 256 << 20

cdef char* _cached_data[CACHE_SLOTS]
cdef size_t _cached_size[CACHE_SLOTS]
cdef size_t _cached_total = 0


cdef class LargeBuffer:
    """Writable bytes-like memory for one received message."""

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 0, flags)

    def __len__(self):
        return self.size

    def __dealloc__(self):
        if self.data != NULL:
            _give_back(self.data, self.mapped)
            self.data = NULL


cdef LargeBuffer new_large_buffer(Py_ssize_t size):
    cdef LargeBuffer buffer = LargeBuffer.__new__(LargeBuffer)
    cdef size_t mapped = (<size_t>size + PAGE - 1) // PAGE * PAGE
    cdef int i, best = -1
    cdef void* p
    if mapped == 0:
        mapped = PAGE
    # Best fit among the cached mappings, wasting at most half of one.
    for i in range(CACHE_SLOTS):
        if _cached_data[i] != NULL and mapped <= _cached_size[i] <= 2 * mapped:
            if best < 0 or _cached_size[i] < _cached_size[best]:
                best = i
    if best >= 0:
        buffer.data = _cached_data[best]
        buffer.mapped = _cached_size[best]
        _take_slot(best)
    else:
        with nogil:
            p = mmap(NULL, mapped, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
        if p == MAP_FAILED:
            raise MemoryError(f"cannot map {mapped} bytes for a received message")
        buffer.data = <char*>p
        buffer.mapped = mapped
    buffer.size = size
    return buffer


cdef void _take_slot(int i) noexcept:
    global _cached_total
    _cached_total -= _cached_size[i]
    _cached_data[i] = NULL
    _cached_size[i] = 0


cdef void _give_back(char* data, size_t mapped) noexcept:
    """Keep a mapping for reuse, evicting smaller ones to stay within
    CACHE_BYTES; unmap it when it cannot be kept."""
    global _cached_total
    cdef int i, free_slot = -1, smallest
    if mapped <= CACHE_BYTES:
        while True:
            free_slot = -1
            smallest = -1
            for i in range(CACHE_SLOTS):
                if _cached_data[i] == NULL:
                    free_slot = i
                elif smallest < 0 or _cached_size[i] < _cached_size[smallest]:
                    smallest = i
            if free_slot >= 0 and _cached_total + mapped <= CACHE_BYTES:
                _cached_data[free_slot] = data
                _cached_size[free_slot] = mapped
                _cached_total += mapped
                return
            if smallest < 0:
                break
            munmap(_cached_data[smallest], _cached_size[smallest])
            _take_slot(smallest)
    munmap(data, mapped)


def cached_bytes():
    """Bytes of idle receive buffers this process keeps for reuse."""
    return _cached_total


def clear_cache():
    """Unmap every idle receive buffer kept for reuse."""
    cdef int i
    for i in range(CACHE_SLOTS):
        if _cached_data[i] != NULL:
            munmap(_cached_data[i], _cached_size[i])
            _take_slot(i)


def _new(Py_ssize_t size):
    """A LargeBuffer of `size` bytes (for tests)."""
    return new_large_buffer(size)
