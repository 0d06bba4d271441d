# Large receive buffers whose pages are reused from message to message.

cdef enum:
    # Writable (out-of-band) message bodies at least this large are received
    # into a recycled LargeBuffer rather than a fresh bytearray.
    LARGE_MESSAGE = 4 << 20

cdef class LargeBuffer:
    cdef char* data
    cdef Py_ssize_t size
    cdef size_t mapped

cdef LargeBuffer new_large_buffer(Py_ssize_t size)
