# Constructor argument checks shared by the shared-memory channels (Ring,
# Broadcast, FloatChannel): cimport-only, there is no _args module.

from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint64_t

cdef extern from "<unistd.h>" nogil:
    long sysconf(int name)
    int _SC_PHYS_PAGES
    int _SC_PAGE_SIZE


# `value` (a count such as slots or capacity) as an int >= 1: TypeError
# "{name} must be {kind}, not <type>" for bool or a non-integer, ValueError
# "{name} must be at least {least}, got <value>" below 1.
cdef inline object count_arg(object value, str name, str kind="an int", str least="1"):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {kind}, not bool")
    try:
        value = PyNumber_Index(value)      # operator.index
    except TypeError:
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least {least}, got {value}")
    return value


# Bytes of physical memory of this machine: constructors refuse a segment
# larger than that with a ValueError.
cdef inline uint64_t physical_memory() noexcept nogil:
    return <uint64_t>sysconf(_SC_PHYS_PAGES) * <uint64_t>sysconf(_SC_PAGE_SIZE)
