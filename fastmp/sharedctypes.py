"""fastmp.Value, Array, RawValue, RawArray: multiprocessing.sharedctypes' API
over fastmp's shared memory and locks.

    from fastmp import Value, Array
    counter = Value("i", 0)                 # lock=True: a fastmp RLock
    with counter.get_lock():
        counter.value += 1
    samples = Array("d", 1000)              # numpy.asarray(samples): zero-copy view

Raw objects are plain ctypes objects in shared memory, zeroed, exactly as
the standard library's (RawValue/RawArray return ctypes instances; Value and
Array wrap them with a lock).  The memory comes from fastmp's arenas
(fastmp/_arena.py: memfds, 64-byte aligned blocks); the objects reach child
processes through the standard library's own ctypes reducer, so they can be
passed as Process arguments under every start method, and pickling them at
any other time fails as it does for the standard library's (RuntimeError
from multiprocessing's pickler).

What is faster: `Value(lock=True).value` and `Array(lock=True)[i]` take a
fastmp RLock (one atomic instruction each way) and read or write the number
in C (see fastmp/_sharedctypes.pyx).  What is the same: everything else.
"""

import ctypes
from multiprocessing.sharedctypes import rebuild_ctype, reduce_ctype  # noqa: F401 (re-exported)
from multiprocessing.sharedctypes import typecode_to_type

from fastmp._arena import allocate
from fastmp._lock import RLock
from fastmp._sharedctypes import (
    Synchronized, SynchronizedArray, SynchronizedBase, SynchronizedString,
)

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized"]


def _new_value(type_):
    # rebuild_ctype registers the standard library's reducer for the type
    # and keeps the block (our BufferWrapper look-alike) on the object.
    return rebuild_ctype(type_, allocate(ctypes.sizeof(type_)), None)


def RawValue(typecode_or_type, *args):
    """A ctypes object allocated from shared memory (zeroed, then
    initialised with `args`)."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array allocated from shared memory: zeroed, of that size,
    or holding the initializer's items."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        return _new_value(type_ * size_or_initializer)
    result = _new_value(type_ * len(size_or_initializer))
    result.__init__(*size_or_initializer)
    return result


def _lock_for(lock):
    if lock in (True, None):
        return RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return lock


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A synchronized wrapper for a RawValue.  lock=True or None: a new
    fastmp RLock; lock=False: the raw ctypes object; else the lock given."""
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock), ctx=ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A synchronized wrapper for a RawArray (lock as for Value)."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock), ctx=ctx)


def copy(obj):
    """A copy of a ctypes object, in new shared memory."""
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


_structure_wrappers = {}


def _field_property(name):
    def get(self):
        with self._lock:
            return getattr(self._obj, name)

    def set(self, value):
        with self._lock:
            setattr(self._obj, name, value)
    return property(get, set)


def synchronized(obj, lock=None, ctx=None):
    """Wrap a ctypes object in shared memory with a lock (a new fastmp RLock
    if `lock` is None)."""
    assert not isinstance(obj, SynchronizedBase), "object already synchronized"
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    try:
        wrapper = _structure_wrappers[cls]
    except KeyError:
        names = [field[0] for field in cls._fields_]
        wrapper = _structure_wrappers[cls] = type(
            "Synchronized" + cls.__name__, (SynchronizedBase,),
            {name: _field_property(name) for name in names})
    return wrapper(obj, lock, ctx)
