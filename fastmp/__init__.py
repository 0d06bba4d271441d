"""fastmp: shared-memory, Cython-compiled drop-in replacements for
multiprocessing's primitives.

    import fastmp as multiprocessing      # or: from fastmp import Queue

Everything fastmp does not reimplement is re-exported from multiprocessing,
so the module can stand in for it as a whole.
"""

import multiprocessing as _multiprocessing

from fastmp._broadcast import Broadcast
from fastmp._float_channel import FloatChannel
from fastmp._frames import FrameOverwritten
from fastmp._lock import Lock, RLock
from fastmp._typed_ring import Ring
from fastmp.connection import Pipe
from fastmp.context import get_context
from fastmp.queues import JoinableQueue, Queue, SimpleQueue
from fastmp.sharedctypes import Array, RawArray, RawValue, Value

# The rest of multiprocessing's public API, unchanged.
for _name in _multiprocessing.__all__:
    if _name not in globals():
        globals()[_name] = getattr(_multiprocessing, _name)
del _name

__all__ = sorted(set(_multiprocessing.__all__) | {"Queue", "JoinableQueue", "SimpleQueue", "Pipe", "Lock", "RLock", "Value",
                                                "Array", "RawValue", "RawArray", "FloatChannel", "Ring",
                                                "Broadcast", "FrameOverwritten", "get_context"})
__version__ = "0.1.0"
