"""Small blocks of shared memory for Value, Array, RawValue, RawArray and the
locks: carved out of shared segments ("arenas") so that a thousand Values
cost a handful of descriptors, not a thousand.

Blocks are handed out bump-pointer fashion, each aligned to a 64-byte cache
line (two Values never share a line, so two processes each hammering its own
Value do not slow each other down).  A block is never reused: an arena's
memory is zero on creation, which is what RawValue/RawArray promise, and it is
freed (by the kernel, with the last descriptor or mapping) once every object
carved from it is gone in every process.  Blocks larger than a quarter arena
get a segment of their own.

A SharedBlock quacks like multiprocessing.heap.BufferWrapper
(`create_memoryview()`), so the standard library's own ctypes reducer
(multiprocessing.sharedctypes.reduce_ctype / rebuild_ctype) passes fastmp's
ctypes objects to child processes too, and the two libraries' objects can be
mixed in one program.
"""

import os
import threading

from fastmp._segment import Segment

__all__ = ["SharedBlock", "allocate", "ARENA_SIZE", "ALIGNMENT"]

ARENA_SIZE = 1 << 16
ALIGNMENT = 64


class SharedBlock:
    """`size` bytes at `offset` in `segment`, zero-filled when allocated."""

    __slots__ = ("segment", "offset", "size")

    def __init__(self, segment, offset, size):
        self.segment = segment
        self.offset = offset
        self.size = size

    @property
    def address(self):
        return self.segment.address + self.offset

    def create_memoryview(self):
        """A writable view of the block (what multiprocessing's rebuild_ctype
        asks a BufferWrapper for)."""
        return memoryview(self.segment)[self.offset:self.offset + self.size]

    def __reduce__(self):
        # The segment's reduction allows this only while starting a process.
        return (SharedBlock, (self.segment, self.offset, self.size))


_lock = threading.Lock()
_arena = None
_used = 0


def _forget_arena_in_child():
    # A forked child shares the parent's current arena: both would hand out
    # the same offsets.  The child starts its own.  (The lock may have been
    # held by another parent thread at fork time: replace it.)
    global _arena, _used, _lock
    _lock = threading.Lock()
    _arena = None
    _used = 0


os.register_at_fork(after_in_child=_forget_arena_in_child)


def allocate(size):
    """A new zero-filled SharedBlock of at least `size` bytes (>= 1)."""
    global _arena, _used
    if size < 1:
        size = 1
    rounded = (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
    if rounded > ARENA_SIZE // 4:
        return SharedBlock(Segment(rounded), 0, size)
    with _lock:
        if _arena is None or _used + rounded > ARENA_SIZE:
            _arena = Segment(ARENA_SIZE)
            _used = 0
        block = SharedBlock(_arena, _used, size)
        _used += rounded
    return block
