# Checks of what the shared-memory channels (Ring, Broadcast, FloatChannel)
# are built from: constructor arguments, and the segment a pickled handle
# attaches to.  cimport-only, there is no _args module.

from cpython.number cimport PyNumber_Index
from libc.stdint cimport uint32_t, uint64_t

from fastmp._segment cimport Segment

cdef extern from "<unistd.h>" nogil:
    long sysconf(int name)
    int _SC_PHYS_PAGES
    int _SC_PAGE_SIZE


# `value` as an int (operator.index): TypeError "{what}, not <type>" for
# bool or a non-integer.
cdef inline object int_arg(object value, str what):
    if isinstance(value, bool):
        raise TypeError(f"{what}, not bool")
    try:
        return PyNumber_Index(value)
    except TypeError:
        raise TypeError(f"{what}, not {type(value).__name__}") from None


# `value` (a count such as slots or capacity) as an int >= 1: TypeError
# "{name} must be {kind}, not <type>" for bool or a non-integer, ValueError
# "{name} must be at least {least}, got <value>" below 1.
cdef inline object count_arg(object value, str name, str kind="an int", str least="1"):
    value = int_arg(value, f"{name} must be {kind}")
    if value < 1:
        raise ValueError(f"{name} must be at least {least}, got {value}")
    return value


# Bytes of physical memory of this machine: constructors refuse a segment
# larger than that with a ValueError.
cdef inline uint64_t physical_memory() noexcept nogil:
    return <uint64_t>sysconf(_SC_PHYS_PAGES) * <uint64_t>sysconf(_SC_PAGE_SIZE)


# The fields every fastmp layout header begins with (_typed_ring_layout.h,
# _broadcast_layout.h, _float_channel_layout.h assert it).
cdef extern from *:
    """
    typedef struct { uint64_t magic; uint32_t layout_version; } fastmp_layout_head;
    """
    ctypedef struct fastmp_layout_head:
        uint64_t magic
        uint32_t layout_version


# `segment` holds a header of `header_size` bytes with this magic and layout
# version, else ValueError naming `name` ("Ring", "Broadcast", ...).
cdef inline int check_layout(Segment segment, size_t header_size, uint64_t magic,
                             uint32_t version, str name) except -1:
    cdef const fastmp_layout_head* head = <const fastmp_layout_head*>segment.addr
    if segment.size < <Py_ssize_t>header_size or head.magic != magic:
        raise ValueError(f"shared memory does not hold a fastmp {name}")
    if head.layout_version != version:
        raise ValueError(f"{name} layout version {head.layout_version} is not the "
                         f"supported version {version}")
    return 0
