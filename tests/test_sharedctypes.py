"""fastmp.sharedctypes (RawValue, RawArray, Value, Array, copy, synchronized)
against multiprocessing.sharedctypes (compat.md items 15-16).

Wherever the standard library defines the behaviour, a test runs against both
modules (the ``impl`` fixture: "fastmp" and "stdlib"), so the expectation is
shown to be multiprocessing's own.  The C fast paths of fastmp's wrappers
(``Value.value`` and ``Array[i]`` under a fastmp lock) are held to plain
ctypes: every assignment case computes its expectation from a ctypes object
of the same type, then checks Value and Array of both libraries, under
fastmp's RLock (fast path), fastmp's Lock (fast path, not recursive) and a
multiprocessing RLock (the generic path).

fastmp-only behaviour says so: numpy.asarray() of an Array is a zero-copy view,
fastmp does not import numpy, 5,000 Values share a handful of descriptors.

Rules kept throughout: no sleeping in the hope that a race goes one way
(processes start together on an Event); timeouts are safety nets; every
child process goes through the ``procs`` fixture.
"""

import ctypes
import decimal
import gc
import math
import multiprocessing
import multiprocessing.sharedctypes as mp_sharedctypes
import os
import pickle
import subprocess
import sys
import threading
from multiprocessing.reduction import ForkingPickler

import pytest

import fastmp
import fastmp.sharedctypes as fm_sharedctypes

from conftest import fastmp_shm_entries, open_fd_count, shm_entries

pytestmark = pytest.mark.timeout(60)

#: Safety net for anything that should happen "at once" (never a pacing device).
TIMEOUT = 30.0

MODULES = {"fastmp": fm_sharedctypes, "stdlib": mp_sharedctypes}
TYPECODES = "cubBhHiIlLqQfd"
NUMERIC = "bBhHiIlLqQfd"
CTYPE = {**mp_sharedctypes.typecode_to_type, "?": ctypes.c_bool}

#: A value of each typecode that survives a round trip unchanged.
SAMPLE = {"c": b"x", "u": "\u00e9", "b": -7, "B": 250, "h": -30000, "H": 65000,
          "i": -2**31, "I": 2**32 - 1, "l": -2**63, "L": 2**64 - 1, "q": 2**63 - 1,
          "Q": 2**64 - 1, "f": 0.5, "d": 1.0 / 3}
ZERO = {"c": b"\x00", "u": "\x00", "f": 0.0, "d": 0.0}


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double), ("flag", ctypes.c_bool)]


@pytest.fixture(params=sorted(MODULES))
def impl(request):
    """The module under test: fastmp.sharedctypes or multiprocessing.sharedctypes."""
    return MODULES[request.param]


@pytest.fixture
def np():
    return pytest.importorskip("numpy")


def is_fastmp(module):
    return module is fm_sharedctypes


def lock_is_free(lock):
    """Whether another thread can take `lock` at once (it gives it back)."""
    result = []

    def probe():
        got = lock.acquire(False)
        if got:
            lock.release()
        result.append(got)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    return result == [True]


def fd_targets():
    """What this process's descriptors point to."""
    targets = []
    for name in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass    # the descriptor listdir itself used
    return targets


def zero_of(code):
    return ZERO.get(code, 0)


# -- child targets (module level: picklable for spawn and forkserver) -------------------

def _child_uses_objects(v, a, rv, ra, s, st, w, lock, rlock, out):
    """The parent holds `lock` (also w's lock) and `rlock`."""
    with v.get_lock():
        v.value += 10
    a[:] = [x * 2 for x in a[:]]
    a[-1] = a[-1] + 0.5
    rv.value = rv.value * 3
    ra[:] = list(range(len(ra)))
    s.value = b"world"
    st.x = st.x + 1
    st.y = 0.25
    out[0] = int(lock.acquire(False))
    out[1] = int(rlock.acquire(False))
    out[2] = w.get_lock()._holder_pid()        # the lock given to Value: the same shared lock
    out[3] = int(type(v.get_lock()) is fastmp.RLock and type(w.get_lock()) is fastmp.Lock)
    out[4] = int(isinstance(v, fm_sharedctypes.Synchronized)
                 and isinstance(a, fm_sharedctypes.SynchronizedArray)
                 and isinstance(s, fm_sharedctypes.SynchronizedString)
                 and type(rv) is ctypes.c_longlong and len(ra) == 5)
    lock.release()                             # a Lock may be released by another process
    out[5] = 1


def _increment(v, a, go, n):
    go.wait(TIMEOUT)
    for _ in range(n):
        with v.get_lock():
            v.value += 1
        with a.get_lock():
            a[0] += 1
            a[1] -= 1


def _mixed_child(objects, out):
    """objects: name -> a Value/Array/RawValue/RawArray of either library."""
    for i, (name, obj) in enumerate(sorted(objects.items())):
        if name.endswith("value"):
            obj.value = obj.value + 100
        else:
            obj[0] = obj[0] + 100
        out[i] = 1


# == RawValue / RawArray ===========================================================================

@pytest.mark.parametrize("code", TYPECODES)
def test_raw_value_is_a_zeroed_ctypes_object_of_the_typecode(impl, code):
    obj = impl.RawValue(code)
    assert type(obj) is CTYPE[code]
    assert ctypes.sizeof(obj) == ctypes.sizeof(CTYPE[code])
    assert obj.value == zero_of(code)
    obj.value = SAMPLE[code]
    assert obj.value == SAMPLE[code]


@pytest.mark.parametrize("code", TYPECODES)
def test_raw_value_initialiser(impl, code):
    obj = impl.RawValue(code, SAMPLE[code])
    assert obj.value == SAMPLE[code]
    assert impl.RawValue(CTYPE[code], SAMPLE[code]).value == SAMPLE[code]


@pytest.mark.parametrize("code", TYPECODES)
def test_raw_array_is_zeroed_and_sized(impl, code):
    arr = impl.RawArray(code, 7)
    assert isinstance(arr, ctypes.Array)
    assert arr._type_ is CTYPE[code] and arr._length_ == 7 and len(arr) == 7
    assert ctypes.sizeof(arr) == 7 * ctypes.sizeof(CTYPE[code])
    zero = zero_of(code)
    assert all(item == zero for item in arr)
    assert len(impl.RawArray(code, 0)) == 0


@pytest.mark.parametrize("code", TYPECODES)
def test_raw_array_initialiser(impl, code):
    items = [SAMPLE[code], zero_of(code), SAMPLE[code]]
    arr = impl.RawArray(code, items)
    assert len(arr) == 3
    assert list(arr) == items
    assert impl.RawArray(CTYPE[code], items)[:] == arr[:]


def test_raw_array_initialiser_string_and_range(impl):
    assert impl.RawArray("c", b"hello").raw == b"hello"
    assert impl.RawArray("u", "h\u00e9").value == "h\u00e9"
    assert list(impl.RawArray("i", range(5))) == [0, 1, 2, 3, 4]


def test_memory_is_zero_even_after_earlier_objects_are_gone(impl):
    """RawValue/RawArray promise zeroed memory, also where earlier objects
    were written and dropped."""
    for _ in range(3):
        objs = [impl.RawArray("q", 9) for _ in range(50)] + [impl.RawValue("d") for _ in range(50)]
        for obj in objs:
            if isinstance(obj, ctypes.Array):
                assert list(obj) == [0] * 9
                obj[:] = [-1] * 9
            else:
                assert obj.value == 0.0
                obj.value = -1.5
        del objs
        gc.collect()


def test_raw_initialiser_errors_are_ctypes_own(impl):
    with pytest.raises(TypeError):
        impl.RawValue("i", 1.5)
    with pytest.raises(TypeError):
        impl.RawValue("i", 1, 2)
    with pytest.raises(TypeError, match="too many initializers"):
        impl.RawValue(Point, 1, 2.0, True, 4)
    with pytest.raises(TypeError):
        impl.RawArray("i", [1, "x"])
    assert impl.RawValue("b", 300).value == 44   # ctypes' constructor wraps too


@pytest.mark.parametrize("ctype", [ctypes.c_bool, ctypes.c_int8, ctypes.c_uint64, ctypes.c_char,
                                   ctypes.c_wchar, ctypes.c_float, ctypes.c_longdouble,
                                   ctypes.c_size_t, ctypes.c_void_p],
                         ids=lambda t: t.__name__)
def test_ctypes_types(impl, ctype):
    obj = impl.RawValue(ctype)
    assert type(obj) is ctype
    assert ctypes.string_at(ctypes.addressof(obj), ctypes.sizeof(obj)) == bytes(ctypes.sizeof(obj))
    arr = impl.RawArray(ctype, 3)
    assert arr._type_ is ctype and len(arr) == 3
    assert ctypes.string_at(ctypes.addressof(arr), ctypes.sizeof(arr)) == bytes(ctypes.sizeof(arr))


def test_structure(impl):
    raw = impl.RawValue(Point)
    assert type(raw) is Point and (raw.x, raw.y, raw.flag) == (0, 0.0, False)
    raw = impl.RawValue(Point, 3, 2.5, True)
    assert (raw.x, raw.y, raw.flag) == (3, 2.5, True)
    points = impl.RawArray(Point, [(1, 1.5, False), (2, 2.5, True)])
    assert [(p.x, p.y, p.flag) for p in points] == [(1, 1.5, False), (2, 2.5, True)]
    assert ctypes.sizeof(points) == 2 * ctypes.sizeof(Point)


# == Value / Array: the lock argument ==============================================================

@pytest.mark.parametrize("lock", [True, None], ids=["True", "None"])
def test_lock_true_or_none_makes_a_new_rlock(impl, lock):
    v = impl.Value("i", 5, lock=lock)
    a = impl.Array("i", 3, lock=lock)
    w = impl.Value("i", 5)
    for obj in (v, a, w):
        assert isinstance(obj, impl.SynchronizedBase)
        assert type(obj.get_lock()).__name__ == "RLock"
    assert v.get_lock() is not w.get_lock()
    if is_fastmp(impl):
        assert type(v.get_lock()) is fastmp.RLock and type(a.get_lock()) is fastmp.RLock
    assert v.value == 5 and a[:] == [0, 0, 0]


def test_lock_false_returns_the_raw_object(impl):
    v = impl.Value("d", 2.5, lock=False)
    assert type(v) is ctypes.c_double and v.value == 2.5
    a = impl.Array("h", [1, 2], lock=False)
    assert isinstance(a, ctypes.Array) and a._type_ is ctypes.c_short and a[:] == [1, 2]
    s = impl.Array("c", b"ab", lock=False)
    assert isinstance(s, ctypes.Array) and s.raw == b"ab"
    assert not isinstance(v, impl.SynchronizedBase)


GIVEN_LOCKS = {
    "fastmp.Lock": fastmp.Lock,
    "fastmp.RLock": fastmp.RLock,
    "multiprocessing.Lock": multiprocessing.Lock,
    "multiprocessing.RLock": multiprocessing.RLock,
}


@pytest.mark.parametrize("given", sorted(GIVEN_LOCKS))
def test_a_given_lock_is_used_as_given(impl, given):
    lock = GIVEN_LOCKS[given]()
    v = impl.Value("i", 1, lock=lock)
    a = impl.Array("d", [1.0, 2.0], lock=lock)
    s = impl.Array("c", b"hi", lock=lock)
    for obj in (v, a, s):
        assert obj.get_lock() is lock
    v.value = 42
    a[1] = 3.5
    s.value = b"yo"
    assert (v.value, a[:], s.value) == (42, [1.0, 3.5], b"yo")
    assert lock_is_free(lock)
    with v.get_lock():              # the lock guards every object made with it
        assert not lock_is_free(lock)
        v.get_obj().value += 1
    assert v.value == 43
    assert lock_is_free(lock)


@pytest.mark.parametrize("bad", [object(), 5, "lock", 0], ids=["object", "int", "str", "zero"])
def test_a_lock_without_acquire_raises_attribute_error(impl, bad):
    message = "%r has no method 'acquire'" % bad
    with pytest.raises(AttributeError) as value_error:
        impl.Value("i", lock=bad)
    assert str(value_error.value) == message
    with pytest.raises(AttributeError) as array_error:
        impl.Array("i", 3, lock=bad)
    assert str(array_error.value) == message


def test_context_methods_are_fastmps():
    ctx = fastmp.get_context("fork")
    v = ctx.Value("i", 3)
    a = ctx.Array("d", 2)
    assert isinstance(v, fm_sharedctypes.Synchronized) and type(v.get_lock()) is fastmp.RLock
    assert isinstance(a, fm_sharedctypes.SynchronizedArray)
    assert type(ctx.Value("i", lock=False)) is ctypes.c_int
    assert type(ctx.RawValue("d", 1.5)) is ctypes.c_double
    assert ctx.RawArray("i", [1, 2])[:] == [1, 2]
    assert ctx.Value("i", lock=fastmp.Lock()).get_lock().__class__ is fastmp.Lock
    assert fastmp.Value is fm_sharedctypes.Value and fastmp.RawArray is fm_sharedctypes.RawArray


# == Synchronized ==================================================================================

def test_synchronized_value(impl):
    v = impl.Value("i", 7)
    assert type(v).__name__ == "Synchronized" and isinstance(v, impl.SynchronizedBase)
    assert v.value == 7
    v.value = -3
    assert v.value == -3
    raw = v.get_obj()
    assert type(raw) is ctypes.c_int and raw.value == -3
    raw.value = 11                       # the wrapper reads the same memory
    assert v.value == 11
    assert repr(v) == "<Synchronized wrapper for c_int(11)>"
    lock = v.get_lock()
    assert v.acquire() is True
    assert lock._semlock._is_mine() and not lock_is_free(lock)
    v.release()
    assert lock_is_free(lock)
    with v as entered:
        assert entered is True
        assert not lock_is_free(lock)
        v.value += 1                     # the lock is recursive
    assert lock_is_free(lock)
    assert v.value == 12
    assert v.acquire(False) is True and v.acquire(timeout=1) is True
    v.release()
    v.release()


@pytest.mark.parametrize("code", TYPECODES)
def test_value_of_every_typecode(impl, code):
    v = impl.Value(code)
    assert v.value == zero_of(code)
    assert type(v.get_obj()) is CTYPE[code]
    v.value = SAMPLE[code]
    assert v.value == SAMPLE[code]
    assert type(v.value) is type(SAMPLE[code])
    assert impl.Value(code, SAMPLE[code]).value == SAMPLE[code]
    assert repr(v) == f"<Synchronized wrapper for {v.get_obj()!r}>"


@pytest.mark.parametrize("code", TYPECODES)
def test_array_of_every_typecode(impl, code):
    items = [SAMPLE[code], zero_of(code), SAMPLE[code], zero_of(code)]
    a = impl.Array(code, items)
    assert len(a) == 4
    assert [a[i] for i in range(4)] == items
    assert a[-1] == items[-1] and a[-4] == items[0]
    a[1] = SAMPLE[code]
    a[-1] = SAMPLE[code]
    assert [a[i] for i in range(4)] == [SAMPLE[code]] * 4
    assert a[:] == a.get_obj()[:]
    zeros = impl.Array(code, 3)
    assert [zeros[i] for i in range(3)] == [zero_of(code)] * 3


def test_synchronized_array(impl):
    a = impl.Array("i", [10, 11, 12, 13, 14])
    assert type(a).__name__ == "SynchronizedArray"
    assert len(a) == 5
    assert a[0] == 10 and a[4] == 14 and a[-1] == 14 and a[-5] == 10
    for bad in (5, -6, 100, -100):
        with pytest.raises(IndexError, match="invalid index"):
            a[bad]
        with pytest.raises(IndexError, match="invalid index"):
            a[bad] = 1
    assert a[:] == [10, 11, 12, 13, 14]
    assert a[1:3] == [11, 12] and a[::2] == [10, 12, 14] and a[::-1] == [14, 13, 12, 11, 10]
    assert a[-2:] == [13, 14] and a[10:20] == []
    a[1:3] = [21, 22]
    a[::2] = [0, 2, 4]
    assert a[:] == [0, 21, 2, 13, 4]
    with pytest.raises(ValueError):
        a[0:2] = [1]                      # ctypes: same size only
    assert list(a) == [0, 21, 2, 13, 4]   # iteration by __getitem__ until IndexError
    assert [x for x in a[:]] == list(a)
    assert sum(a[:]) == 40
    with pytest.raises(TypeError):
        a["1"]
    assert a[True] == 21                   # a bool is an index
    assert repr(a).startswith("<SynchronizedArray wrapper for <")
    assert a.get_obj()[:] == a[:]
    assert lock_is_free(a.get_lock())


def test_array_of_structures_and_bools(impl):
    flags = impl.Array(ctypes.c_bool, [True, False, True])
    assert flags[:] == [True, False, True]
    flags[1] = 7
    assert flags[1] is True
    points = impl.Array(Point, 2)
    points[1] = Point(5, 0.5, True)
    assert (points[1].x, points[1].y, points[1].flag) == (5, 0.5, True)


def test_synchronized_string(impl):
    s = impl.Array("c", b"hello\x00x")
    assert type(s).__name__ == "SynchronizedString"
    assert len(s) == 7
    assert s.value == b"hello" and s.raw == b"hello\x00x"
    assert s[0] == b"h" and s[-1] == b"x" and s[:] == b"hello\x00x" and s[1:3] == b"el"
    s.value = b"hi"
    assert s.raw == b"hi\x00lo\x00x"
    s.raw = b"abcdefg"
    assert s.value == b"abcdefg"
    s[0] = b"A"
    s[1:3] = b"BC"
    assert s.raw == b"ABCdefg"
    with pytest.raises(ValueError):
        s.value = b"x" * 8
    with pytest.raises(ValueError):
        s.raw = b"x" * 8
    with pytest.raises(TypeError):
        s.value = "text"
    assert s.raw == b"ABCdefg"
    assert lock_is_free(s.get_lock())
    assert impl.Array("c", 4).raw == b"\x00" * 4
    wide = impl.Array("u", "h\u00e9llo")
    assert type(wide).__name__ == "SynchronizedArray" and wide[:] == "h\u00e9llo" and wide[1] == "\u00e9"


def test_structure_wrapper_has_per_field_properties(impl):
    s = impl.Value(Point, 1, 2.5, True)
    assert type(s).__name__ == "SynchronizedPoint" and isinstance(s, impl.SynchronizedBase)
    for name in ("x", "y", "flag"):
        assert isinstance(type(s).__dict__[name], property)
    assert (s.x, s.y, s.flag) == (1, 2.5, True)
    s.x = 10
    s.y = -0.5
    s.flag = False
    raw = s.get_obj()
    assert type(raw) is Point and (raw.x, raw.y, raw.flag) == (10, -0.5, False)
    assert type(impl.Value(Point)) is type(s)          # one wrapper class per Structure
    assert repr(s).startswith("<SynchronizedPoint wrapper for <")
    assert lock_is_free(s.get_lock())
    with pytest.raises(AttributeError):
        s.z


# == the fast paths: exactly ctypes' semantics =====================================================

class IntSub(int):
    pass


class FloatSub(float):
    pass


class Index:
    def __init__(self, n):
        self.n = n

    def __index__(self):
        return self.n

    def __repr__(self):
        return f"Index({self.n})"


NAN = float("nan")

ASSIGNMENTS = [
    # integers wrap modulo 2**bits, as ctypes stores them
    ("b", 300), ("b", -129), ("b", 127), ("b", -128), ("B", -1), ("B", 263),
    ("h", 40000), ("h", -32769), ("H", -1), ("H", 65536 + 3),
    ("i", 2**31), ("i", -2**31 - 1), ("I", -1), ("I", 2**32 + 9),
    ("l", 2**63), ("l", 2**64 + 5), ("L", -1), ("L", -2**70 - 3),
    ("q", 2**70), ("q", -2**63 - 1), ("Q", -1), ("Q", 2**64 + 5), ("Q", 2**128 + 1),
    # what an integer field refuses or converts
    ("i", 1.5), ("q", 2.0), ("B", 1.0), ("i", "1"), ("i", None), ("i", b"1"), ("i", 1j),
    ("i", True), ("i", IntSub(5)), ("i", Index(7)), ("H", Index(-1)), ("q", Index(2**70)),
    ("i", decimal.Decimal(3)),
    # doubles
    ("d", 3), ("d", -0.0), ("d", 2**53 + 1), ("d", 2**1100), ("d", -2**1100), ("d", True),
    ("d", "1.0"), ("d", None), ("d", FloatSub(2.5)), ("d", decimal.Decimal("1.5")),
    ("d", float("inf")), ("d", NAN), ("d", IntSub(7)),
    # floats: rounded to single precision
    ("f", 0.1), ("f", 1e300), ("f", -1e300), ("f", 2**200), ("f", 16777217), ("f", NAN),
    ("f", 2**1100), ("f", 3), ("f", 1e-50), ("f", "x"),
    # bools: any truth value
    ("?", 5), ("?", 0), ("?", 0.0), ("?", [1]), ("?", ""), ("?", "x"), ("?", None),
    ("?", True), ("?", 2**70),
    # characters
    ("c", b"x"), ("c", "x"), ("c", 65), ("c", b"xy"), ("u", "y"), ("u", b"y"),
]

#: Ways to hold the number: the library, and the lock of the wrapper.
HOLDERS = {
    "fastmp": lambda: {},                                      # fastmp RLock: fast path
    "fastmp+fastmp.Lock": lambda: {"lock": fastmp.Lock()},     # fast path, not recursive
    "fastmp+mp.RLock": lambda: {"lock": multiprocessing.RLock()},   # generic path
    "stdlib": lambda: {},
}


def outcome(store, load):
    """('ok', value, type) after store(), or ('raises', type, message)."""
    try:
        store()
    except Exception as e:  # noqa: BLE001 - compared with ctypes'
        return ("raises", type(e), str(e))
    value = load()
    if isinstance(value, float) and math.isnan(value):
        value = "nan"
    return ("ok", value, type(value))


@pytest.mark.parametrize("holder", sorted(HOLDERS))
@pytest.mark.parametrize("code, value", ASSIGNMENTS,
                         ids=[f"{c}={v!r}"[:32] for c, v in ASSIGNMENTS])
def test_assignment_matches_ctypes(holder, code, value):
    ctype = CTYPE[code]
    module = mp_sharedctypes if holder == "stdlib" else fm_sharedctypes
    kwargs = HOLDERS[holder]()
    initial = SAMPLE.get(code, True)

    plain = ctype(initial)
    expected = outcome(lambda: setattr(plain, "value", value), lambda: plain.value)
    unchanged = ("ok",) + outcome(lambda: None, lambda: ctype(initial).value)[1:]

    v = module.Value(ctype, initial, **kwargs)
    assert outcome(lambda: setattr(v, "value", value), lambda: v.value) == expected
    if expected[0] == "raises":
        assert outcome(lambda: None, lambda: v.value) == unchanged
    assert lock_is_free(v.get_lock())

    if code == "c":
        return      # a c_char Array is a SynchronizedString: items are bytes of length 1
    plain_array = (ctype * 3)(initial, initial, initial)
    expected = outcome(lambda: plain_array.__setitem__(1, value), lambda: plain_array[1])
    a = module.Array(ctype, [initial] * 3, **kwargs)
    for i in (1, -2):
        assert outcome(lambda: a.__setitem__(i, value), lambda: a[i]) == expected
    assert lock_is_free(a.get_lock())


@pytest.mark.parametrize("code", NUMERIC + "?")
def test_reads_return_ctypes_types(code):
    ctype = CTYPE[code]
    for module in (fm_sharedctypes, mp_sharedctypes):
        v = module.Value(ctype)
        a = module.Array(ctype, 2)
        assert type(v.value) is type(ctype().value)
        assert type(a[0]) is type(ctype().value)


@pytest.mark.parametrize("index", [2**70, -2**70])
def test_huge_index_raises_index_error(index):
    for module in (mp_sharedctypes, fm_sharedctypes):
        a = module.Array("i", 3)
        with pytest.raises(IndexError):
            a[index]
        with pytest.raises(IndexError):
            a[index] = 1


# == copy / synchronized ===========================================================================

def test_copy(impl):
    v = impl.RawValue("d", 2.5)
    c = impl.copy(v)
    assert type(c) is ctypes.c_double and c.value == 2.5
    assert ctypes.addressof(c) != ctypes.addressof(v)
    c.value = 1.0
    assert v.value == 2.5
    arr = impl.RawArray("i", [1, 2, 3])
    arr_copy = impl.copy(arr)
    assert type(arr_copy) is type(arr) and arr_copy[:] == [1, 2, 3]
    arr_copy[0] = 9
    assert arr[:] == [1, 2, 3]
    point = impl.copy(impl.RawValue(Point, 4, 4.5, True))
    assert (point.x, point.y, point.flag) == (4, 4.5, True)
    plain = impl.copy(ctypes.c_int(8))    # of any ctypes object, into shared memory
    assert plain.value == 8 and hasattr(plain, "_wrapper")
    wrapped = impl.Value("i", 3)
    copied = impl.copy(wrapped.get_obj())
    assert copied.value == 3 and impl.synchronized(copied).value == 3


def test_synchronized(impl):
    v = impl.synchronized(impl.RawValue("i", 4))
    assert type(v).__name__ == "Synchronized" and v.value == 4
    assert type(v.get_lock()).__name__ == "RLock"
    a = impl.synchronized(impl.RawArray("d", 2))
    assert type(a).__name__ == "SynchronizedArray"
    s = impl.synchronized(impl.RawArray("c", b"ab"))
    assert type(s).__name__ == "SynchronizedString" and s.value == b"ab"
    p = impl.synchronized(impl.RawValue(Point, 1))
    assert type(p).__name__ == "SynchronizedPoint" and p.x == 1
    lock = fastmp.Lock()
    assert impl.synchronized(impl.RawValue("i"), lock).get_lock() is lock
    if is_fastmp(impl):
        assert type(v.get_lock()) is fastmp.RLock


def test_synchronizing_twice_raises_assertion_error(impl):
    for obj in (impl.Value("i"), impl.Array("i", 2), impl.Array("c", 2), impl.Value(Point)):
        with pytest.raises(AssertionError, match=r"^object already synchronized$"):
            impl.synchronized(obj)


# == pickling ======================================================================================

@pytest.mark.parametrize("what", ["Value", "Array", "String", "Structure"])
def test_pickling_a_wrapper_outside_process_start_raises_runtime_error(impl, what):
    obj = {"Value": lambda: impl.Value("i"), "Array": lambda: impl.Array("d", 2),
           "String": lambda: impl.Array("c", 2), "Structure": lambda: impl.Value(Point)}[what]()
    message = f"^{type(obj).__name__} objects should only be shared between processes through inheritance$"
    with pytest.raises(RuntimeError, match=message):
        pickle.dumps(obj)
    with pytest.raises(RuntimeError, match=message):
        ForkingPickler.dumps(obj)


def test_pickling_a_raw_object_for_a_process_outside_process_start_raises_runtime_error(impl):
    for obj in (impl.RawValue("i"), impl.RawArray("d", 3), impl.Value("i", lock=False)):
        with pytest.raises(RuntimeError,
                           match=f"^{type(obj).__name__} objects should only be shared"):
            ForkingPickler.dumps(obj)


# == numpy =========================================================================================

@pytest.mark.parametrize("code", NUMERIC)
def test_numpy_asarray_is_a_zero_copy_view(np, code):
    for arr in (fastmp.Array(code, [1, 2, 3, 4]), fastmp.RawArray(code, [1, 2, 3, 4])):
        raw = arr.get_obj() if hasattr(arr, "get_obj") else arr
        view = np.asarray(arr)
        assert view.dtype == np.dtype(code)
        assert view.shape == (4,)
        assert view.flags.writeable
        assert np.shares_memory(view, np.frombuffer(raw, dtype=view.dtype))
        assert view.ctypes.data == ctypes.addressof(raw)
        view[1] = 7                     # numpy -> shared array
        assert arr[1] == 7
        arr[2] = 9                      # shared array -> numpy
        assert view[2] == 9
        assert view.tolist() == [1, 7, 9, 4]
        assert np.shares_memory(view, np.asarray(arr))


def test_numpy_array_copies_and_converts(np):
    a = fastmp.Array("d", [1.0, 2.0, 3.0])
    copied = np.array(a)                 # copy=True by default
    assert copied.tolist() == [1.0, 2.0, 3.0] and not np.shares_memory(copied, np.asarray(a))
    copied[0] = 99
    assert a[0] == 1.0
    converted = np.asarray(a, dtype=np.float32)
    assert converted.dtype == np.float32 and converted.tolist() == [1.0, 2.0, 3.0]
    assert np.asarray(a, dtype=np.float64).ctypes.data == ctypes.addressof(a.get_obj())
    if int(np.__version__.split(".")[0]) >= 2:
        assert np.shares_memory(np.array(a, copy=False), np.asarray(a))


def test_numpy_copy_false_with_another_dtype_raises_value_error(np):
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("numpy < 2 has no copy=False protocol")
    raw = fastmp.RawArray("d", 3)
    with pytest.raises(ValueError):
        np.array(raw, dtype=np.float32, copy=False)
    with pytest.raises(ValueError):
        np.array(fastmp.Array("d", 3), dtype=np.float32, copy=False)


def test_importing_fastmp_does_not_import_numpy(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    code = ("import fastmp, fastmp.sharedctypes, sys\n"
            "fastmp.Array('d', 3); fastmp.Value('i')\n"
            "assert 'numpy' not in sys.modules, 'numpy was imported'")
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr


# == resources =====================================================================================

def test_five_thousand_values_share_a_handful_of_descriptors():
    """fastmp only: Values come from shared arenas, not one segment each."""
    gc.collect()
    fds_before = open_fd_count()
    targets_before = set(fd_targets())
    shm_before = shm_entries()
    values = [fastmp.Value("i", i) for i in range(5000)]
    arrays = [fastmp.Array("d", 4) for _ in range(100)]
    opened = open_fd_count() - fds_before
    assert opened <= 16, f"{opened} descriptors for 5,100 objects"
    assert not fastmp_shm_entries(shm_before)
    assert not [target for target in set(fd_targets()) - targets_before
                if target.startswith("/dev/shm")]
    # Every object has memory of its own.
    values[-1].value = -1
    assert [v.value for v in values[:3]] + [values[-1].value] == [0, 1, 2, -1]
    assert len({ctypes.addressof(v.get_obj()) for v in values}) == 5000
    del values, arrays
    gc.collect()
    # All given back, but for the arena that new blocks still come from.
    assert open_fd_count() - fds_before <= 1


# == processes =====================================================================================

def test_objects_passed_to_a_child(start_method, procs):
    v = fastmp.Value("i", 5)
    a = fastmp.Array("d", [1.0, 2.0, 3.0])
    rv = fastmp.RawValue("q", 7)
    ra = fastmp.RawArray("i", 5)
    s = fastmp.Array("c", b"hello")
    st = fastmp.Value(Point, 1, 2.0, False)
    lock, rlock = fastmp.Lock(), fastmp.RLock()
    w = fastmp.Value("i", 0, lock=lock)
    out = fastmp.RawArray("q", 6)
    lock.acquire()
    rlock.acquire()
    child = procs.start(start_method, _child_uses_objects, v, a, rv, ra, s, st, w, lock, rlock, out)
    procs.join(child)
    assert list(out) == [0, 0, os.getpid(), 1, 1, 1]
    assert v.value == 15
    assert a[:] == [2.0, 4.0, 6.5]
    assert rv.value == 21
    assert ra[:] == [0, 1, 2, 3, 4]
    assert s.value == b"world"
    assert (st.x, st.y) == (2, 0.25)
    assert lock.acquire(False) is True          # the child released our hold
    lock.release()
    rlock.release()
    assert lock_is_free(rlock) and lock_is_free(v.get_lock())


@pytest.mark.parametrize("method, impl_name", [("fork", "fastmp"), ("spawn", "fastmp"),
                                               ("forkserver", "fastmp"), ("fork", "stdlib")])
def test_concurrent_increments_under_the_lock_are_exact(method, impl_name, procs):
    """3 processes, started together, each add n under the Value's (and the
    Array's) own lock.  (The standard library's result is shown once, with fork.)"""
    ctx = multiprocessing.get_context(method)
    if impl_name == "fastmp":
        v, a = fastmp.Value("i", 0), fastmp.Array("q", 2)
    else:
        v, a = ctx.Value("i", 0), ctx.Array("q", 2)
    go = ctx.Event()
    n = 3000
    for _ in range(3):
        procs.start(ctx, _increment, v, a, go, n)
    go.set()
    procs.join()
    assert v.value == 3 * n
    assert a[:] == [3 * n, -3 * n]


def test_fastmp_and_stdlib_objects_in_one_program_and_one_spawn_child(procs):
    ctx = multiprocessing.get_context("spawn")
    objects = {
        "fastmp value": fastmp.Value("i", 1),
        "fastmp array": fastmp.Array("d", [1.5, 0.0]),
        "fastmp raw value": fastmp.RawValue("q", 2),
        "fastmp raw array": fastmp.RawArray("i", [3, 0]),
        "fastmp value with a stdlib lock, value": fastmp.Value("i", 4, lock=ctx.RLock()),
        "stdlib value": ctx.Value("i", 5),
        "stdlib array": ctx.Array("d", [6.5, 0.0]),
        "stdlib raw value": mp_sharedctypes.RawValue("q", 7),
        "stdlib raw array": mp_sharedctypes.RawArray("i", [8, 0]),
        "stdlib value with a fastmp lock, value": mp_sharedctypes.Value("i", 9, lock=fastmp.RLock()),
    }
    # Used side by side here first.
    objects["fastmp value"].value += objects["stdlib value"].value
    assert objects["fastmp value"].value == 6
    out = fastmp.RawArray("i", len(objects))
    procs.join(procs.start(ctx, _mixed_child, objects, out))
    assert list(out) == [1] * len(objects)
    got = {name: (obj.value if name.endswith("value") else obj[0])
           for name, obj in objects.items()}
    assert got == {
        "fastmp value": 106, "fastmp array": 101.5, "fastmp raw value": 102,
        "fastmp raw array": 103, "fastmp value with a stdlib lock, value": 104,
        "stdlib value": 105, "stdlib array": 106.5, "stdlib raw value": 107,
        "stdlib raw array": 108, "stdlib value with a fastmp lock, value": 109,
    }
