"""fastmp.get_context(): multiprocessing contexts whose queues, pipes, locks and
shared values are fastmp's.

Each context subclasses the standard library's context for its start method
(so it *is* a multiprocessing.context.BaseContext, its Process is that
method's Process class, and every primitive fastmp does not reimplement is
the standard library's), and overrides the primitives fastmp provides.

Pool and concurrent.futures.ProcessPoolExecutor call ctx.SimpleQueue() and
then reach into its pipe (`_reader`, `_writer`, `_rlock`, and
multiprocessing.connection.wait on `_reader`): fastmp.SimpleQueue carries
those attributes over a fastmp.Pipe, whose Connections have a fileno() that
wait() can use (see fastmp/connection.py), so both run on fastmp's queues.

Lock and RLock are fastmp's too.  The context's Condition, Event and Barrier
stay the standard library's and take the context's locks: fastmp's locks
answer the `_semlock._is_mine()` / `_count()` calls that Condition makes.
"""

import multiprocessing
from multiprocessing import context as _mp_context

from fastmp import _lock, connection, queues, sharedctypes

__all__ = ["get_context", "ForkContext", "SpawnContext", "ForkServerContext"]


class _FastmpPrimitives:
    """The primitives fastmp reimplements, made for this context."""

    def Queue(self, maxsize=0, *, capacity=queues.DEFAULT_CAPACITY):
        """A fastmp.Queue (see fastmp.queues.Queue)."""
        return queues.Queue(maxsize, capacity=capacity, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0, *, capacity=queues.DEFAULT_CAPACITY):
        """A fastmp.JoinableQueue whose task count belongs to this context."""
        return queues.JoinableQueue(maxsize, capacity=capacity, ctx=self.get_context())

    def SimpleQueue(self, *, capacity=queues.DEFAULT_CAPACITY):
        """A fastmp.SimpleQueue whose locks belong to this context."""
        return queues.SimpleQueue(capacity=capacity, ctx=self.get_context())

    def Pipe(self, duplex=True, *, capacity=connection.DEFAULT_CAPACITY):
        """A fastmp.Pipe (see fastmp.connection.Pipe)."""
        return connection.Pipe(duplex, capacity=capacity)

    def Lock(self):
        """A fastmp.Lock (see fastmp/_lock.pyx)."""
        return _lock.Lock()

    def RLock(self):
        """A fastmp.RLock."""
        return _lock.RLock()

    def Value(self, typecode_or_type, *args, lock=True):
        """A fastmp.Value (see fastmp.sharedctypes)."""
        return sharedctypes.Value(typecode_or_type, *args, lock=lock, ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        """A fastmp.Array."""
        return sharedctypes.Array(typecode_or_type, size_or_initializer, lock=lock,
                                  ctx=self.get_context())

    def RawValue(self, typecode_or_type, *args):
        """A fastmp.RawValue: a ctypes object in shared memory."""
        return sharedctypes.RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        """A fastmp.RawArray: a ctypes array in shared memory."""
        return sharedctypes.RawArray(typecode_or_type, size_or_initializer)

    def get_context(self, method=None):
        if method is None:
            return self
        return get_context(method)


class ForkContext(_FastmpPrimitives, _mp_context.ForkContext):
    pass


class SpawnContext(_FastmpPrimitives, _mp_context.SpawnContext):
    pass


class ForkServerContext(_FastmpPrimitives, _mp_context.ForkServerContext):
    pass


_CONTEXTS = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


def get_context(method=None):
    """The fastmp context for `method` ("fork", "spawn" or "forkserver").

    None means the start method multiprocessing would use now: the one set
    with set_start_method, else the platform's default.  As with
    multiprocessing.get_context, asking does not fix the start method."""
    if method is None:
        method = (multiprocessing.get_start_method(allow_none=True)
                  or multiprocessing.get_all_start_methods()[0])
    try:
        ctx = _CONTEXTS[method]
    except (KeyError, TypeError):
        raise ValueError(f"cannot find context for {method!r}") from None
    ctx._check_available()
    return ctx
