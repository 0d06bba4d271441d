"""Shared memory that cannot leak.

A Segment is a memfd (or, where memfd is missing, a file in /dev/shm that is
unlinked the moment it is created, as the standard library's heap does),
mapped MAP_SHARED.  No name ever exists in /dev/shm, so nothing is left
behind even when every process using it is killed with SIGKILL: the kernel
frees the memory with the last descriptor or mapping.

A forked child inherits the mapping.  A spawn or forkserver child receives
the descriptor when the segment is pickled for it (multiprocessing's DupFd,
allowed only while a process is being started) and maps it again.
"""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.errno cimport errno
from libc.string cimport strerror
from posix.unistd cimport close, ftruncate

import os

from multiprocessing import context as _mp_context
from multiprocessing import reduction as _mp_reduction

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    void* MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_POPULATE
    int memfd_create(const char* name, unsigned int flags)
    unsigned int MFD_CLOEXEC


cdef int _new_anonymous_fd() except -1:
    cdef int fd = memfd_create(b"fastmp", MFD_CLOEXEC)
    if fd >= 0:
        return fd
    # Kernels without memfd (or a seccomp filter refusing it): an unlinked file.
    import tempfile
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="fastmp-", dir=directory)
    os.unlink(path)
    return fd


cdef class Segment:
    """A block of shared memory of `size` bytes, zero-filled on creation."""

    def __cinit__(self):
        self.fd = -1
        self.addr = NULL
        self.size = 0

    def __init__(self, Py_ssize_t size):
        if size <= 0:
            raise ValueError(f"segment size must be positive, got {size}")
        self.fd = _new_anonymous_fd()
        if ftruncate(self.fd, size) != 0:
            err = errno
            close(self.fd)
            self.fd = -1
            raise OSError(err, f"cannot size a shared-memory segment to {size} bytes: "
                               f"{strerror(err).decode()}")
        self.size = size
        self._map()

    @staticmethod
    def _from_fd(int fd, Py_ssize_t size):
        """Map a descriptor received from the parent (spawn/forkserver)."""
        cdef Segment self = Segment.__new__(Segment)
        self.fd = fd
        self.size = size
        self._map()
        return self

    cdef int _map(self) except -1:
        # MAP_POPULATE pre-faults every page now: a first touch in the hot
        # path costs ~2.6 us per 4 KiB page on this kind of machine.
        cdef void* p = mmap(NULL, <size_t>self.size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_POPULATE, self.fd, 0)
        if p == MAP_FAILED:
            err = errno
            raise OSError(err, f"cannot map a shared-memory segment of {self.size} bytes: "
                               f"{strerror(err).decode()}")
        self.addr = <char*>p
        return 0

    @property
    def address(self):
        return <size_t>self.addr

    # The whole mapping as a writable buffer: ctypes' from_buffer and
    # memoryview slices over it keep the segment (and so the mapping) alive.
    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.addr, self.size, 0, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass

    def __dealloc__(self):
        if self.addr != NULL:
            munmap(self.addr, <size_t>self.size)
            self.addr = NULL
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    def __reduce__(self):
        # Only while starting a child (spawn/forkserver), as for multiprocessing's
        # own pipes and semaphores: the descriptor travels with the process.
        _mp_context.assert_spawning(self)
        return (_rebuild_segment, (_mp_reduction.DupFd(self.fd), self.size))


def _rebuild_segment(dupfd, Py_ssize_t size):
    return Segment._from_fd(dupfd.detach(), size)
