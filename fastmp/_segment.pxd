# Shared-memory segments: an anonymous, already-unlinked file mapped MAP_SHARED.

cdef class Segment:
    cdef readonly Py_ssize_t size
    cdef int fd
    cdef char* addr
    cdef object __weakref__

    cdef int _map(self) except -1
