# cython: boundscheck=True, wraparound=True, cdivision=False
# (Python-object code: keep Python's indexing and modulo semantics here.)
"""The synchronized wrappers behind fastmp.Value and fastmp.Array.

multiprocessing's Synchronized.value is a Python property that calls
lock.acquire(), reads the ctypes object's .value and calls lock.release():
three Python-level calls and a ctypes attribute lookup (~440 ns here).  When
the lock is a fastmp Lock or RLock and the object a plain number (typecodes
b B h H i I l L q Q f d, and ? for reading), these classes take the lock,
read or write the number in place and give the lock back in C.  Everything
else (other types, slices, a lock of another library) takes the standard
library's path: `with lock: obj.<attr>`, so behaviour and errors are
ctypes' own.
"""

import ctypes
from multiprocessing import context as _mp_context

from cpython.long cimport PyLong_AsUnsignedLongLongMask, PyLong_CheckExact
from cpython.float cimport PyFloat_AsDouble, PyFloat_CheckExact
from cpython.number cimport PyNumber_AsSsize_t
from libc.math cimport INFINITY
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from fastmp._lock cimport _LockBase, fastmp_lock_state, lock_acquire, lock_release

__all__ = ["SynchronizedBase", "Synchronized", "SynchronizedArray", "SynchronizedString"]

# ctypes types whose values are read and written in place, and their codes.
# Exact types only: a subclass may override how its value converts.
cdef dict _FAST_TYPES = {
    ctypes.c_byte: "b", ctypes.c_ubyte: "B", ctypes.c_short: "h", ctypes.c_ushort: "H",
    ctypes.c_int: "i", ctypes.c_uint: "I", ctypes.c_long: "l", ctypes.c_ulong: "L",
    ctypes.c_longlong: "q", ctypes.c_ulonglong: "Q", ctypes.c_float: "f",
    ctypes.c_double: "d", ctypes.c_bool: "?",
}


cdef object _read(char code, char* p):
    if code == b"d":
        return (<double*>p)[0]
    if code == b"l" or code == b"q":
        return (<int64_t*>p)[0]
    if code == b"i":
        return (<int32_t*>p)[0]
    if code == b"L" or code == b"Q":
        return (<uint64_t*>p)[0]
    if code == b"I":
        return (<uint32_t*>p)[0]
    if code == b"f":
        return <double>(<float*>p)[0]
    if code == b"h":
        return (<int16_t*>p)[0]
    if code == b"H":
        return (<uint16_t*>p)[0]
    if code == b"b":
        return (<int8_t*>p)[0]
    if code == b"B":
        return (<uint8_t*>p)[0]
    # "?"
    return (<uint8_t*>p)[0] != 0


cdef bint _write(char code, char* p, object value) except -1:
    """Store `value` as ctypes would, or return False (untouched) when it
    is not the exact int or float this fast path handles."""
    cdef uint64_t bits
    if code == b"d" or code == b"f":
        if not (PyFloat_CheckExact(value) or PyLong_CheckExact(value)):
            return False
        if code == b"d":
            (<double*>p)[0] = PyFloat_AsDouble(value)
        else:
            (<float*>p)[0] = <float>PyFloat_AsDouble(value)
        return True
    if code == b"?" or not PyLong_CheckExact(value):
        return False
    # ctypes stores integers modulo 2**bits, without an overflow error.
    bits = PyLong_AsUnsignedLongLongMask(value)
    if code == b"l" or code == b"q" or code == b"L" or code == b"Q":
        (<uint64_t*>p)[0] = bits
    elif code == b"i" or code == b"I":
        (<uint32_t*>p)[0] = <uint32_t>bits
    elif code == b"h" or code == b"H":
        (<uint16_t*>p)[0] = <uint16_t>bits
    else:
        (<uint8_t*>p)[0] = <uint8_t>bits
    return True


cdef class SynchronizedBase:
    """multiprocessing.sharedctypes.SynchronizedBase: a ctypes object in
    shared memory and the lock that guards it."""

    cdef readonly object _obj
    cdef readonly object _lock
    cdef object acquire_method, release_method
    cdef fastmp_lock_state* lstate     # the lock's state if it is fastmp's, else NULL
    cdef bint lrecursive

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        if lock:
            self._lock = lock
        else:
            from fastmp._lock import RLock
            self._lock = RLock()
        self.acquire_method = self._lock.acquire
        self.release_method = self._lock.release
        if isinstance(self._lock, _LockBase):
            self.lstate = (<_LockBase>self._lock).state
            self.lrecursive = (<_LockBase>self._lock).recursive

    # The standard library sets these as instance attributes.
    @property
    def acquire(self):
        return self.acquire_method

    @property
    def release(self):
        return self.release_method

    def __enter__(self):
        if self.lstate != NULL:
            return bool(lock_acquire(self.lstate, self.lrecursive, INFINITY))
        return self._lock.__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        if self.lstate != NULL:
            lock_release(self.lstate, self.lrecursive)
            return None
        return self._lock.__exit__(exc_type, exc_value, traceback)

    def __reduce__(self):
        _mp_context.assert_spawning(self)
        from fastmp.sharedctypes import synchronized
        return synchronized, (self._obj, self._lock)

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    def __repr__(self):
        return "<%s wrapper for %s>" % (type(self).__name__, self._obj)

    cdef inline int _take(self) except -1:
        lock_acquire(self.lstate, self.lrecursive, INFINITY)
        return 0

    cdef inline int _give(self) except -1:
        lock_release(self.lstate, self.lrecursive)
        return 0


cdef class Synchronized(SynchronizedBase):
    """A Value: `.value` read and written under the lock."""

    cdef char code          # fast-path typecode, 0 for the generic path
    cdef char* addr

    def __init__(self, obj, lock=None, ctx=None):
        SynchronizedBase.__init__(self, obj, lock, ctx)
        code = _FAST_TYPES.get(type(obj))
        if code is not None and self.lstate != NULL:
            self.code = ord(code)
            self.addr = <char*><size_t>ctypes.addressof(obj)

    @property
    def value(self):
        cdef object result
        if self.code:
            self._take()
            result = _read(self.code, self.addr)
            self._give()
            return result
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, value):
        cdef bint done
        if self.code:
            self._take()
            try:
                done = _write(self.code, self.addr, value)
            finally:
                self._give()
            if done:
                return
        with self._lock:
            self._obj.value = value


cdef class SynchronizedArray(SynchronizedBase):
    """An Array: len(), indexing and slices under the lock.  numpy.asarray()
    gives a zero-copy view of the shared array (taken without the lock)."""

    cdef char code
    cdef char* addr
    cdef Py_ssize_t length, itemsize

    def __init__(self, obj, lock=None, ctx=None):
        SynchronizedBase.__init__(self, obj, lock, ctx)
        self.length = len(obj)
        code = _FAST_TYPES.get(obj._type_)
        if code is not None and self.lstate != NULL:
            self.code = ord(code)
            self.addr = <char*><size_t>ctypes.addressof(obj)
            self.itemsize = ctypes.sizeof(obj._type_)

    def __len__(self):
        return self.length

    cdef inline Py_ssize_t _index(self, object index) except -1:
        # As ctypes: an index beyond Py_ssize_t is an IndexError too.
        cdef Py_ssize_t i = PyNumber_AsSsize_t(index, IndexError)
        if i < 0:
            i += self.length
        if i < 0 or i >= self.length:
            raise IndexError("invalid index")
        return i

    def __getitem__(self, i):
        cdef object result
        cdef Py_ssize_t k
        if self.code and PyLong_CheckExact(i):
            k = self._index(i)
            self._take()
            result = _read(self.code, self.addr + k * self.itemsize)
            self._give()
            return result
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value):
        cdef bint done
        cdef Py_ssize_t k
        if self.code and PyLong_CheckExact(i):
            k = self._index(i)
            self._take()
            try:
                done = _write(self.code, self.addr + k * self.itemsize, value)
            finally:
                self._give()
            if done:
                return
        with self._lock:
            self._obj[i] = value

    def __array__(self, dtype=None, copy=None):
        # NumPy's protocol: copy=False means "a view or an error".
        import numpy
        view = numpy.asarray(self._obj)
        if dtype is not None and view.dtype != numpy.dtype(dtype):
            if copy is False:
                raise ValueError("Unable to avoid copy while creating an array as requested: "
                                 f"the shared array holds {view.dtype}, not {numpy.dtype(dtype)}")
            return view.astype(dtype)
        if copy:
            return view.copy()
        return view


cdef class SynchronizedString(SynchronizedArray):
    """A c_char Array: `.value` and `.raw` under the lock, as well as
    indexing."""

    @property
    def value(self):
        with self._lock:
            return self._obj.value

    @value.setter
    def value(self, value):
        with self._lock:
            self._obj.value = value

    @property
    def raw(self):
        with self._lock:
            return self._obj.raw

    @raw.setter
    def raw(self, value):
        with self._lock:
            self._obj.raw = value
