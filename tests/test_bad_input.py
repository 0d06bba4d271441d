"""Bad input to every public call of every fastmp primitive (issue 6, item 3).

A table-driven sweep: wrong types (None, str, float where an int is expected,
objects without __index__, unpicklable objects), negative and huge sizes
(2**63, 2**70), NaN / negative / wrongly typed timeouts, use after close,
pickling outside process start, wrong pipe direction, oversized batches.

Each case asserts a clear exception of the right type and, where the standard
library defines the call, runs the same case on ``multiprocessing`` too
(``impl``), so a difference from the standard library shows up as a failure.
After the failure the object must still work and nothing may have been sent
or taken, wherever the standard library's object keeps working.

The other test files check the common cases (the basic closed-handle and
wrong-direction errors, send_bytes' small bad offsets, batches larger than
the ring); this file adds the wrong types and huge values around them.

Not exercised here, on purpose: capacities of many GiB (a ring's memory is
pre-faulted with MAP_POPULATE, so ``Queue(capacity=2**36)`` tries to touch
64 GiB) and infinite or 2**70-second timeouts on calls that would wait
(fastmp then waits for ever, like ``timeout=None``; the standard library
raises OverflowError).
"""

import array
import math
import multiprocessing
import pickle
import queue
import threading
import time

import pytest
from multiprocessing.reduction import ForkingPickler

import fastmp
import fastmp.connection

IMPLS = {"fastmp": fastmp, "multiprocessing": multiprocessing}

HUGE = (2**63, 2**70)
UNPICKLABLE = {
    "lambda": lambda: (lambda: 1),
    "lock": threading.Lock,
    "generator": lambda: (i for i in range(3)),
}
PICKLE_ERRORS = (pickle.PicklingError, TypeError, AttributeError)
INHERITANCE = "should only be shared between processes through inheritance"


class NoIndex:
    """Neither an int nor convertible to one (no __index__, no __float__)."""


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def _drain(q):
    """Everything left in queue `q` (the standard library's feeder thread may
    still be writing: wait a little for stragglers; fastmp's puts are in the
    ring when they return)."""
    timeout = 0 if isinstance(q, fastmp.Queue) else 0.2
    out = []
    while True:
        try:
            out.append(q.get(True, timeout))
        except queue.Empty:
            return out


def _usable_queue(q, expect=()):
    """`q` still works: what is in it is exactly `expect`, and a round trip works."""
    assert _drain(q) == list(expect)
    q.put("after")
    assert q.get(timeout=5) == "after"


def _usable_pipe(a, b, expect=()):
    """Pipe (a -> b) still works: exactly `expect` was waiting, a round trip works."""
    got = []
    while b.poll(0 if isinstance(b, fastmp.connection.Connection) else 0.05):
        got.append(b.recv_bytes())
    assert got == list(expect)
    a.send_bytes(b"after")
    assert b.recv_bytes() == b"after"


# -- constructors ---------------------------------------------------------------

# (call on the module M, exception) for calls the standard library defines.
CONSTRUCTORS_BOTH = [
    ("Queue(None)", lambda M: M.Queue(None), TypeError),
    ("Queue('3')", lambda M: M.Queue("3"), TypeError),
    ("Queue(2.5)", lambda M: M.Queue(2.5), TypeError),
    ("Queue(NoIndex)", lambda M: M.Queue(NoIndex()), TypeError),
    ("Queue(2**63)", lambda M: M.Queue(2**63), OverflowError),
    ("Queue(2**70)", lambda M: M.Queue(2**70), OverflowError),
    ("JoinableQueue('3')", lambda M: M.JoinableQueue("3"), TypeError),
    ("JoinableQueue(2**70)", lambda M: M.JoinableQueue(2**70), OverflowError),
    ("SimpleQueue(3)", lambda M: M.SimpleQueue(3), TypeError),
    ("Lock(1)", lambda M: M.Lock(1), TypeError),
    ("RLock(1)", lambda M: M.RLock(1), TypeError),
    ("get_context('bogus')", lambda M: M.get_context("bogus"), ValueError),
    ("get_context(5)", lambda M: M.get_context(5), ValueError),
    ("Value('x')", lambda M: M.Value("x"), TypeError),
    ("Value(None)", lambda M: M.Value(None), TypeError),
    ("Value(42)", lambda M: M.Value(42), TypeError),
    ("Value('ii')", lambda M: M.Value("ii"), TypeError),
    ("Value('i', 's')", lambda M: M.Value("i", "s"), TypeError),
    ("Value('i', 1, 2)", lambda M: M.Value("i", 1, 2), TypeError),
    ("Value('d', 'x')", lambda M: M.Value("d", "x"), TypeError),
    ("Value(lock=object())", lambda M: M.Value("i", lock=object()), AttributeError),
    ("RawValue('x')", lambda M: M.RawValue("x"), TypeError),
    ("RawValue('i', None)", lambda M: M.RawValue("i", None), TypeError),
    ("RawValue('i', 1, 2)", lambda M: M.RawValue("i", 1, 2), TypeError),
    ("Array('i', -1)", lambda M: M.Array("i", -1), ValueError),
    ("Array('i', 2**63)", lambda M: M.Array("i", 2**63), OverflowError),
    ("Array('i', 2**70)", lambda M: M.Array("i", 2**70), OverflowError),
    ("Array('i', 2.5)", lambda M: M.Array("i", 2.5), TypeError),
    ("Array('i', None)", lambda M: M.Array("i", None), TypeError),
    ("Array('i', NoIndex)", lambda M: M.Array("i", NoIndex()), TypeError),
    ("Array('x', 3)", lambda M: M.Array("x", 3), TypeError),
    ("Array('i', ['a'])", lambda M: M.Array("i", ["a"]), TypeError),
    ("Array(lock='x')", lambda M: M.Array("i", 3, lock="x"), AttributeError),
    ("RawArray('i', -1)", lambda M: M.RawArray("i", -1), ValueError),
    ("RawArray('i', 2**63)", lambda M: M.RawArray("i", 2**63), OverflowError),
    ("RawArray('i', 2**70)", lambda M: M.RawArray("i", 2**70), OverflowError),
    ("RawArray('d', 2.5)", lambda M: M.RawArray("d", 2.5), TypeError),
    ("RawArray('x', 3)", lambda M: M.RawArray("x", 3), TypeError),
    ("RawArray('i', [1, None])", lambda M: M.RawArray("i", [1, None]), TypeError),
]


@pytest.mark.parametrize("call, exc", [c[1:] for c in CONSTRUCTORS_BOTH],
                         ids=[c[0] for c in CONSTRUCTORS_BOTH])
def test_constructor_bad_arguments(impl, call, exc):
    with pytest.raises(exc):
        call(impl)


def _capacity_cases():
    """fastmp's `capacity` keyword: every constructor that takes one."""
    makers = {
        "Queue": lambda c: fastmp.Queue(capacity=c),
        "JoinableQueue": lambda c: fastmp.JoinableQueue(capacity=c),
        "SimpleQueue": lambda c: fastmp.SimpleQueue(capacity=c),
        "Pipe": lambda c: fastmp.Pipe(capacity=c),
        "Pipe(False)": lambda c: fastmp.Pipe(False, capacity=c),
        "ctx.Queue": lambda c: fastmp.get_context("fork").Queue(capacity=c),
    }
    bad = [(None, TypeError), ("3", TypeError), (2.5, TypeError), (NoIndex(), TypeError),
           (-1, ValueError), (0, ValueError), (1, ValueError), (63, ValueError),
           (True, ValueError), (2**63, OverflowError), (2**70, OverflowError)]
    for name, make in makers.items():
        for value, exc in bad:
            yield pytest.param(make, value, exc, id=f"{name}(capacity={type(value).__name__}:{value!s:.8})")


@pytest.mark.parametrize("make, capacity, exc", list(_capacity_cases()))
def test_capacity_bad_values(make, capacity, exc):
    with pytest.raises(exc):
        make(capacity)


@pytest.mark.parametrize("capacity, exc", [
    (None, TypeError), ("3", TypeError), (2.5, TypeError), (NoIndex(), TypeError),
    (True, TypeError), (-1, ValueError), (0, ValueError), (2**31, ValueError),
    (2**63, ValueError), (2**70, ValueError),
])
def test_float_channel_capacity_bad_values(capacity, exc):
    with pytest.raises(exc, match="capacity"):
        fastmp.FloatChannel(capacity)


# -- timeouts -------------------------------------------------------------------

def _timeout_calls(M):
    """name -> (make the object, call it with timeout t), for calls with a timeout."""
    def full_queue():
        q = M.Queue(1)
        q.put(0)
        return q

    def nonempty_queue():
        q = M.Queue()
        q.put(0)
        time.sleep(0.05 if M is multiprocessing else 0)  # the feeder thread
        return q

    def held_lock():
        lock = M.Lock()
        lock.acquire()
        return lock

    return {
        "Queue.get(empty)": (M.Queue, lambda q, t: q.get(True, t)),
        "Queue.get(nonempty)": (nonempty_queue, lambda q, t: q.get(True, t)),
        "Queue.put(full)": (full_queue, lambda q, t: q.put(1, True, t)),
        "Lock.acquire(free)": (M.Lock, lambda lock, t: lock.acquire(True, t)),
        "Lock.acquire(held)": (held_lock, lambda lock, t: lock.acquire(True, t)),
        "RLock.acquire(free)": (M.RLock, lambda lock, t: lock.acquire(True, t)),
        "Pipe.poll(empty)": (lambda: M.Pipe()[1], lambda conn, t: conn.poll(t)),
        "Pipe(False).poll(empty)": (lambda: M.Pipe(False)[0], lambda conn, t: conn.poll(t)),
    }


@pytest.mark.parametrize("bad", ["1", NoIndex(), [1], 1j], ids=["str", "NoIndex", "list", "complex"])
@pytest.mark.parametrize("name", sorted(_timeout_calls(fastmp)))
def test_timeout_of_wrong_type_raises_type_error(impl, name, bad):
    make, call = _timeout_calls(impl)[name]
    with pytest.raises(TypeError):
        call(make(), bad)


@pytest.mark.parametrize("name", sorted(_timeout_calls(fastmp)))
def test_nan_timeout_raises_value_error(name):
    # The standard library is inconsistent here (ValueError, OSError(EINVAL)
    # or no error at all, depending on the call): fastmp always says ValueError.
    make, call = _timeout_calls(fastmp)[name]
    with pytest.raises(ValueError, match="NaN"):
        call(make(), math.nan)


@pytest.mark.parametrize("t", [-1, -1e-9, -math.inf, -2**70])
def test_negative_timeouts_do_not_wait(impl, t):
    q = impl.Queue(1)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(True, t)
    q.put(1)
    time.sleep(0.05 if impl is multiprocessing else 0)
    with pytest.raises(queue.Full):
        q.put(2, True, t)
    lock = impl.Lock()
    lock.acquire()
    assert lock.acquire(True, t) is False
    lock.release()
    a, b = impl.Pipe()
    assert b.poll(t) is False
    assert time.monotonic() - start < 2.0
    assert q.get(timeout=5) == 1


def test_huge_timeout_with_something_waiting_returns_at_once():
    q = fastmp.Queue()
    q.put(1)
    assert q.get(timeout=math.inf) == 1
    q.put(2)
    assert q.get(timeout=2**70) == 2
    lock = fastmp.Lock()
    assert lock.acquire(timeout=math.inf)
    lock.release()
    a, b = fastmp.Pipe()
    a.send(1)
    assert b.poll(math.inf) and b.poll(2**70)


@pytest.mark.parametrize("bad, exc", [("1", TypeError), (math.nan, ValueError)], ids=["str", "nan"])
def test_poll_validates_timeout_even_with_a_message_waiting(bad, exc):
    a, b = fastmp.Pipe()
    a.send(1)
    with pytest.raises(exc):
        b.poll(bad)


@pytest.mark.parametrize("bad, exc", [("1", TypeError), (math.nan, ValueError)], ids=["str", "nan"])
def test_queue_validates_timeout_even_when_it_would_not_wait(bad, exc):
    q = fastmp.Queue()
    with pytest.raises(exc):
        q.put(1, True, bad)
    assert q.qsize() == 0
    q.put(1)
    with pytest.raises(exc):
        q.get(True, bad)
    assert q.get_nowait() == 1


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_acquire_block_of_wrong_type(kind):
    lock = getattr(fastmp, kind)()
    with pytest.raises(TypeError):
        lock.acquire("x", 0.01)


# -- unpicklable objects ----------------------------------------------------------

@pytest.mark.parametrize("what", sorted(UNPICKLABLE))
@pytest.mark.parametrize("call", ["put", "put_nowait", "put_many", "put_many_nowait"])
@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue"])
def test_queue_unpicklable_raises_in_the_caller_and_enqueues_nothing(kind, call, what):
    # The standard library raises later, in its feeder thread (a documented
    # difference), so only fastmp's behaviour is checked here.
    q = getattr(fastmp, kind)(4)
    q.put("before")
    obj = UNPICKLABLE[what]()
    args = ([1, obj],) if call.startswith("put_many") else (obj,)
    with pytest.raises(PICKLE_ERRORS):
        getattr(q, call)(*args)
    assert q.qsize() == 1
    _usable_queue(q, ["before"])
    if kind == "JoinableQueue":
        for _ in range(2):  # "before" and "after"
            q.task_done()
        done = threading.Thread(target=q.join, daemon=True)
        done.start()
        done.join(5)
        assert not done.is_alive(), "join() waits for a task that was never enqueued"
        with pytest.raises(ValueError, match="too many times"):
            q.task_done()


@pytest.mark.parametrize("what", sorted(UNPICKLABLE))
def test_simple_queue_unpicklable_raises_and_enqueues_nothing(impl, what):
    q = impl.SimpleQueue()
    with pytest.raises(PICKLE_ERRORS):
        q.put(UNPICKLABLE[what]())
    assert q.empty()
    q.put("after")
    assert q.get() == "after"
    assert q.empty()


@pytest.mark.parametrize("what", sorted(UNPICKLABLE))
def test_pipe_unpicklable_raises_and_sends_nothing(impl, what):
    a, b = impl.Pipe()
    with pytest.raises(PICKLE_ERRORS):
        a.send(UNPICKLABLE[what]())
    _usable_pipe(a, b)
    if impl is fastmp:
        with pytest.raises(PICKLE_ERRORS):
            a.send_many([1, UNPICKLABLE[what]()])
        _usable_pipe(a, b)


# -- pickling outside process start ---------------------------------------------

def _shareables(M):
    return {
        "Queue": M.Queue,
        "JoinableQueue": M.JoinableQueue,
        "SimpleQueue": M.SimpleQueue,
        "Lock": M.Lock,
        "RLock": M.RLock,
        "Value": lambda: M.Value("i", 1),
        "Array": lambda: M.Array("d", 3),
    }


@pytest.mark.parametrize("dumps", [pickle.dumps, ForkingPickler.dumps],
                         ids=["pickle.dumps", "ForkingPickler.dumps"])
@pytest.mark.parametrize("name", sorted(_shareables(fastmp)))
def test_pickling_outside_process_start_raises_runtime_error(impl, name, dumps):
    obj = _shareables(impl)[name]()
    with pytest.raises(RuntimeError, match=INHERITANCE):
        dumps(obj)


@pytest.mark.parametrize("dumps", [pickle.dumps, ForkingPickler.dumps],
                         ids=["pickle.dumps", "ForkingPickler.dumps"])
@pytest.mark.parametrize("name", ["RawValue", "RawArray"])
def test_pickling_raw_shared_objects_outside_process_start_raises(impl, name, dumps):
    # The standard library: ForkingPickler says RuntimeError; plain pickle
    # fails on the class or the mmap (PicklingError / TypeError).
    obj = impl.RawValue("i", 1) if name == "RawValue" else impl.RawArray("i", 2)
    with pytest.raises((RuntimeError, pickle.PicklingError, TypeError)):
        dumps(obj)


@pytest.mark.parametrize("dumps", [pickle.dumps, ForkingPickler.dumps],
                         ids=["pickle.dumps", "ForkingPickler.dumps"])
def test_pickling_fastmp_only_objects_raises_and_leaves_them_usable(dumps):
    # The standard library lets a Connection be pickled (it is sent through
    # the resource sharer); fastmp refuses, as documented.
    a, b = fastmp.Pipe()
    with pytest.raises(RuntimeError, match=INHERITANCE):
        dumps(a)
    _usable_pipe(a, b)
    ch = fastmp.FloatChannel(4)
    with pytest.raises(RuntimeError, match=INHERITANCE):
        dumps(ch)
    ch.send(1.5)
    assert ch.recv(timeout=1) == 1.5
    q = fastmp.Queue()
    with pytest.raises(RuntimeError):
        dumps(q)
    _usable_queue(q)
    v = fastmp.Value("i", 3)
    with pytest.raises(RuntimeError):
        dumps(v)
    with v.get_lock():
        v.value += 1
    assert v.value == 4


# -- use after close ---------------------------------------------------------------

QUEUE_AFTER_CLOSE = [
    ("put", (1,), ValueError), ("get", (), ValueError), ("put_nowait", (1,), ValueError),
    ("get_nowait", (), ValueError), ("get", (False,), ValueError), ("get", (True, 0.01), ValueError),
    ("qsize", (), None), ("empty", (), None), ("full", (), None), ("close", (), None),
    ("cancel_join_thread", (), None), ("join_thread", (), None),
]


@pytest.mark.parametrize("kind", ["Queue", "JoinableQueue"])
@pytest.mark.parametrize("method, args, exc", QUEUE_AFTER_CLOSE,
                         ids=[f"{m}{a}" for m, a, _ in QUEUE_AFTER_CLOSE])
def test_queue_after_close(impl, kind, method, args, exc):
    q = getattr(impl, kind)()
    q.close()
    if exc is None:
        getattr(q, method)(*args)
    else:
        with pytest.raises(exc, match="is closed"):
            getattr(q, method)(*args)


@pytest.mark.parametrize("method, args", [
    ("put_many", ([1],)), ("put_many_nowait", ([1],)), ("get_many", ()), ("get_many_nowait", ()),
    ("put_many", ([],)), ("get_many", (True, 0.01, 5)),
])
def test_queue_batches_after_close_raise_value_error(method, args):
    q = fastmp.Queue()
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        getattr(q, method)(*args)


def test_joinable_queue_task_done_after_close(impl):
    q = impl.JoinableQueue()
    q.close()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


@pytest.mark.parametrize("method, args", [("put", (1,)), ("get", ()), ("empty", ())])
def test_simple_queue_after_close_raises_os_error(impl, method, args):
    q = impl.SimpleQueue()
    q.close()
    with pytest.raises(OSError, match="handle is closed"):
        getattr(q, method)(*args)
    q.close()  # closing twice is fine


@pytest.mark.parametrize("method, args", [
    ("send_many", ([1],)), ("recv_many", ()), ("recv_many", (0,)), ("send_bytes", (b"x", 5)),
    ("recv_bytes", (-1,)), ("recv_bytes_into", (bytearray(1), -1)), ("poll", (math.nan,)),
    ("poll", ("x",)), ("send", (lambda: 1,)),
])
def test_closed_connection_says_handle_is_closed_before_anything_else(method, args):
    # A closed handle is the first thing checked: even bad arguments get
    # OSError("handle is closed") (the standard library's order).
    a, b = fastmp.Pipe()
    a.close()
    with pytest.raises(OSError, match="^handle is closed$"):
        getattr(a, method)(*args)


def _float_channel_after_close_cases():
    calls = [("send", (1.0,)), ("recv", ()), ("send_many", ([1.0],)), ("recv_many", (2,)),
             ("recv_many", (array.array("d", [0.0]),)), ("qsize", ()), ("empty", ()),
             ("full", ()), ("send", ("bad",)), ("recv", (True, math.nan))]
    for latest in (False, True):
        for i, (method, args) in enumerate(calls):
            yield pytest.param(latest, method, args,
                               id=f"{'latest' if latest else 'fifo'}-{method}-{i}")


@pytest.mark.parametrize("latest, method, args", list(_float_channel_after_close_cases()))
def test_float_channel_after_close_raises_value_error(latest, method, args):
    ch = fastmp.FloatChannel(4, latest=latest)
    ch.close()
    with pytest.raises(ValueError, match="closed"):
        getattr(ch, method)(*args)
    ch.close()
    assert ch.closed and ch.capacity >= 1
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(ch)


# -- Pipe: buffers, offsets, sizes, maxlength -----------------------------------

SEND_BYTES_BAD = [
    ((b"abc", 2**63), ValueError, "buffer length < offset"),
    ((b"abc", 2**70), ValueError, "buffer length < offset"),
    ((b"abc", 0, 2**63), ValueError, r"buffer length < offset \+ size"),
    ((b"abc", 0, 2**70), ValueError, r"buffer length < offset \+ size"),
    ((b"abc", -2**70), ValueError, "offset is negative"),
    ((b"abc", 0, -2**70), ValueError, "size is negative"),
    ((b"abc", None), TypeError, None),
    ((b"abc", "1"), TypeError, None),
    ((b"abc", 1.5), TypeError, None),
    ((b"abc", 0, 1.5), TypeError, None),
    ((b"abc", NoIndex()), TypeError, None),
    ((None,), TypeError, "bytes-like"),
    (("text",), TypeError, "bytes-like"),
    ((5,), TypeError, "bytes-like"),
    ((NoIndex(),), TypeError, "bytes-like"),
]


@pytest.mark.parametrize("args, exc, match", SEND_BYTES_BAD,
                         ids=[f"{type(a[-1]).__name__}:{a[-1]!s:.8}-{len(a)}" for a, _, _ in SEND_BYTES_BAD])
def test_send_bytes_bad_arguments_send_nothing(impl, args, exc, match):
    a, b = impl.Pipe()
    with pytest.raises(exc, match=match):
        a.send_bytes(*args)
    _usable_pipe(a, b)


@pytest.mark.parametrize("maxlength, exc", [(-1, ValueError), (-2**70, ValueError),
                                            ("3", TypeError), (NoIndex(), TypeError)])
def test_recv_bytes_bad_maxlength_takes_nothing(impl, maxlength, exc):
    a, b = impl.Pipe()
    a.send_bytes(b"xyz")
    with pytest.raises(exc):
        b.recv_bytes(maxlength)
    _usable_pipe(a, b, [b"xyz"])


@pytest.mark.parametrize("maxlength", HUGE)
def test_recv_bytes_huge_maxlength_is_no_limit(maxlength):
    a, b = fastmp.Pipe()
    a.send_bytes(b"xyz")
    assert b.recv_bytes(maxlength) == b"xyz"


@pytest.mark.parametrize("maxlength", HUGE)
def test_recv_bytes_huge_maxlength_loses_nothing(maxlength):
    a, b = fastmp.Pipe()
    a.send_bytes(b"xyz")
    try:
        got = [b.recv_bytes(maxlength)]
    except OverflowError:
        got = []
    _usable_pipe(a, b, [] if got == [b"xyz"] else [b"xyz"])


@pytest.mark.parametrize("args, exc, match", [
    ((bytearray(8), 2**63), ValueError, "offset too large"),
    ((bytearray(8), 2**70), ValueError, "offset too large"),
    ((bytearray(8), -2**70), ValueError, "negative offset"),
    ((bytearray(8), "1"), TypeError, None),
    ((bytearray(8), None), TypeError, None),
    ((None,), TypeError, "bytes-like"),
    (("text",), TypeError, "bytes-like"),
])
def test_recv_bytes_into_bad_arguments_take_nothing(impl, args, exc, match):
    a, b = impl.Pipe()
    a.send_bytes(b"xyz")
    with pytest.raises(exc, match=match):
        b.recv_bytes_into(*args)
    _usable_pipe(a, b, [b"xyz"])


@pytest.mark.parametrize("args", [(bytearray(8), 1.5), (b"readonly",)], ids=["float offset", "read-only"])
def test_recv_bytes_into_errors_found_after_the_read_leave_the_pipe_usable(impl, args):
    # The standard library checks these only after reading the message, which
    # is then gone; fastmp checks them first and keeps it.  Either way the
    # pipe must still work after.
    a, b = impl.Pipe()
    a.send_bytes(b"xyz")
    with pytest.raises(TypeError):
        b.recv_bytes_into(*args)
    _usable_pipe(a, b, [b"xyz"] if impl is fastmp else [])


def test_wrong_direction_with_bad_arguments_still_says_direction(impl):
    reader, writer = impl.Pipe(False)
    with pytest.raises(OSError, match="read-only"):
        reader.send(lambda: 1)
    with pytest.raises(OSError, match="read-only"):
        reader.send_bytes(b"x", 99)
    with pytest.raises(OSError, match="write-only"):
        writer.recv_bytes(-1)
    with pytest.raises(OSError, match="write-only"):
        writer.recv_bytes_into(bytearray(1), -1)
    with pytest.raises(OSError, match="write-only"):
        writer.poll("x")
    writer.send_bytes(b"ok")
    assert reader.recv_bytes() == b"ok"


@pytest.mark.parametrize("duplex", ["x", None, 2.5, 0, []])
def test_pipe_duplex_is_truthiness_as_in_the_standard_library(impl, duplex):
    a, b = impl.Pipe(duplex)
    if duplex:
        a.send(1)
        assert b.recv() == 1
    else:
        b.send(1)
        assert a.recv() == 1
        with pytest.raises(OSError):
            a.send(1)


# -- batches: counts, oversized batches, bad iterables ---------------------------

BAD_COUNTS = [(0, ValueError), (-1, ValueError), (-2**70, OverflowError), (None, TypeError),
              ("3", TypeError), (2.5, TypeError), (NoIndex(), TypeError),
              (2**63, OverflowError), (2**70, OverflowError)]


@pytest.mark.parametrize("n, exc", BAD_COUNTS, ids=[f"{n!s:.8}" for n, _ in BAD_COUNTS])
@pytest.mark.parametrize("call", ["get_many", "get_many_nowait"])
def test_get_many_bad_count_takes_nothing(call, n, exc):
    q = fastmp.Queue()
    q.put(1)
    with pytest.raises(exc):
        if call == "get_many":
            q.get_many(True, 0.01, max_messages_to_get=n)
        else:
            q.get_many_nowait(max_messages_to_get=n)
    assert q.qsize() == 1
    _usable_queue(q, [1])


@pytest.mark.parametrize("n, exc", BAD_COUNTS, ids=[f"{n!s:.8}" for n, _ in BAD_COUNTS])
def test_recv_many_bad_count_takes_nothing(n, exc):
    a, b = fastmp.Pipe()
    a.send_bytes(b"x")
    if n == -2**70:
        exc = ValueError    # recv_many checks "at least 1" before converting
    with pytest.raises(exc):
        b.recv_many(n)
    _usable_pipe(a, b, [b"x"])


def test_recv_many_error_names_its_own_parameter():
    a, b = fastmp.Pipe()
    a.send(1)
    with pytest.raises(ValueError, match=r"max_messages\b"):
        b.recv_many(0)


@pytest.mark.parametrize("xs, exc", [
    (None, TypeError), (5, TypeError), (NoIndex(), TypeError),
    ([1, 2, 3, 4, 5], ValueError),  # more messages than maxsize: can never fit
    ([b"x" * 100] * 20, ValueError),  # more bytes than the ring: can never fit
])
@pytest.mark.parametrize("call", ["put_many", "put_many_nowait"])
def test_put_many_bad_batches_enqueue_nothing(call, xs, exc):
    q = fastmp.Queue(4, capacity=1024)
    q.put("before")
    with pytest.raises(exc):
        getattr(q, call)(xs)
    assert q.qsize() == 1
    _usable_queue(q, ["before"])


def test_put_many_whose_iterable_raises_enqueues_nothing():
    def items():
        yield 1
        yield 2
        raise KeyError("boom")

    q = fastmp.Queue()
    with pytest.raises(KeyError):
        q.put_many(items())
    assert q.qsize() == 0
    _usable_queue(q)
    a, b = fastmp.Pipe()
    with pytest.raises(KeyError):
        a.send_many(items())
    _usable_pipe(a, b)


@pytest.mark.parametrize("xs, exc", [
    (None, TypeError), (5, TypeError), ([b"x" * 1000] * 200, ValueError),
])
def test_send_many_bad_batches_send_nothing(xs, exc):
    a, b = fastmp.Pipe(capacity=64 * 1024)
    with pytest.raises(exc):
        a.send_many(xs)
    _usable_pipe(a, b)


# -- FloatChannel ---------------------------------------------------------------

@pytest.mark.parametrize("x, exc", [
    (None, TypeError), ("1", TypeError), ("1.5", TypeError), (NoIndex(), TypeError),
    (1 + 2j, TypeError), ([1.0], TypeError), (2**1100, OverflowError),
])
@pytest.mark.parametrize("latest", [False, True], ids=["fifo", "latest"])
def test_float_channel_send_bad_value_sends_nothing(latest, x, exc):
    ch = fastmp.FloatChannel(4, latest=latest)
    with pytest.raises(exc):
        ch.send(x)
    with pytest.raises(queue.Empty):
        ch.recv(block=False)
    ch.send(2.5)
    assert ch.recv(timeout=1) == 2.5


@pytest.mark.parametrize("t, exc", [(math.nan, ValueError), ("1", TypeError), (NoIndex(), TypeError)])
def test_float_channel_bad_timeouts(t, exc):
    ch = fastmp.FloatChannel(2)
    for call in (lambda: ch.recv(True, t), lambda: ch.recv_many(2, True, t)):
        with pytest.raises(exc):
            call()
    ch.send(1.0)
    for call in (lambda: ch.recv(True, t), lambda: ch.recv_many(2, True, t),
                 lambda: ch.send(2.0, True, t), lambda: ch.send_many([2.0], True, t)):
        with pytest.raises(exc):
            call()
    assert ch.qsize() == 1
    ch.send(3.0)
    with pytest.raises(exc):
        ch.send(4.0, True, t)  # full
    assert list(ch.recv_many(8)) == [1.0, 3.0]


@pytest.mark.parametrize("values, exc", [
    (None, TypeError), (5, TypeError), ("abc", TypeError), (b"abcdefgh", TypeError),
    (array.array("f", [1.0]), TypeError), (array.array("i", [1]), TypeError),
    ([1.0, "x"], TypeError), ([1.0, None], TypeError), ([1.0, NoIndex()], TypeError),
], ids=["None", "int", "str", "bytes", "array-f", "array-i", "list-str", "list-None", "list-NoIndex"])
def test_float_channel_send_many_bad_values_send_nothing(values, exc):
    ch = fastmp.FloatChannel(4)
    with pytest.raises(exc):
        ch.send_many(values)
    assert ch.qsize() == 0
    assert ch.send_many([1.0, 2.0]) == 2
    assert list(ch.recv_many(4)) == [1.0, 2.0]


def test_float_channel_send_many_oversized_batch_reports_what_went_in():
    ch = fastmp.FloatChannel(4)
    with pytest.raises(queue.Full) as info:
        ch.send_many(array.array("d", range(6)), timeout=0.01)
    assert info.value.sent == 4
    assert list(ch.recv_many(8)) == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(queue.Full) as info:
        ch.send_many([9.0] * 6, block=False)
    assert info.value.sent == 4


@pytest.mark.parametrize("out, exc", [
    (0, ValueError), (-1, ValueError), (None, TypeError), ("3", TypeError), (2.5, TypeError),
    (NoIndex(), TypeError), (2**63, OverflowError), (2**70, OverflowError),
    (bytearray(8), TypeError), (array.array("d"), ValueError), (array.array("f", [0.0] * 4), TypeError),
    (b"x" * 8, TypeError), (memoryview(array.array("d", [0.0] * 4))[::2], TypeError),
], ids=["0", "-1", "None", "str", "float", "NoIndex", "2**63", "2**70", "bytearray",
        "empty-array", "array-f", "bytes", "strided"])
@pytest.mark.parametrize("latest", [False, True], ids=["fifo", "latest"])
def test_float_channel_recv_many_bad_target_takes_nothing(latest, out, exc):
    ch = fastmp.FloatChannel(4, latest=latest)
    ch.send(1.0)
    with pytest.raises(exc):
        ch.recv_many(out, timeout=0.01)
    assert ch.recv(timeout=1) == 1.0


# -- Value / Array contents -----------------------------------------------------

VALUE_BAD = [
    ("v.value = 's'", lambda v, a, c: setattr(v, "value", "s"), TypeError),
    ("v.value = None", lambda v, a, c: setattr(v, "value", None), TypeError),
    ("v.value = 2.5", lambda v, a, c: setattr(v, "value", 2.5), TypeError),
    ("v.value = NoIndex", lambda v, a, c: setattr(v, "value", NoIndex()), TypeError),
    ("a[3]", lambda v, a, c: a[3], IndexError),
    ("a[-4]", lambda v, a, c: a[-4], IndexError),
    ("a[2**63]", lambda v, a, c: a[2**63], IndexError),
    ("a[2**70] = 1", lambda v, a, c: a.__setitem__(2**70, 1), IndexError),
    ("a[-2**70]", lambda v, a, c: a[-2**70], IndexError),
    ("a['0']", lambda v, a, c: a["0"], TypeError),
    ("a[1.5]", lambda v, a, c: a[1.5], TypeError),
    ("a[None] = 1", lambda v, a, c: a.__setitem__(None, 1), TypeError),
    ("a[NoIndex]", lambda v, a, c: a[NoIndex()], TypeError),
    ("a[0] = 's'", lambda v, a, c: a.__setitem__(0, "s"), TypeError),
    ("a[0] = 2.5", lambda v, a, c: a.__setitem__(0, 2.5), TypeError),
    ("a[0:2] = [1]", lambda v, a, c: a.__setitem__(slice(0, 2), [1]), ValueError),
    ("a[0:2] = [1, 2, 3]", lambda v, a, c: a.__setitem__(slice(0, 2), [1, 2, 3]), ValueError),
    ("a[0:2] = ['x', 'y']", lambda v, a, c: a.__setitem__(slice(0, 2), ["x", "y"]), TypeError),
    ("c.value = 'str'", lambda v, a, c: setattr(c, "value", "str"), TypeError),
    ("c.value = b'toolong'", lambda v, a, c: setattr(c, "value", b"toolong"), ValueError),
    ("c.raw = b'toolong'", lambda v, a, c: setattr(c, "raw", b"toolong"), ValueError),
    ("c[0] = 'x'", lambda v, a, c: c.__setitem__(0, "x"), TypeError),
    ("c[0] = b'xy'", lambda v, a, c: c.__setitem__(0, b"xy"), TypeError),
]


@pytest.mark.parametrize("call, exc", [c[1:] for c in VALUE_BAD], ids=[c[0] for c in VALUE_BAD])
def test_synchronized_bad_access_raises_and_releases_the_lock(impl, call, exc):
    v, a, c = impl.Value("i", 5), impl.Array("i", [1, 2, 3]), impl.Array("c", b"abcd")
    with pytest.raises(exc):
        call(v, a, c)
    for obj in (v, a, c):
        assert obj.get_lock().acquire(False), "the lock stayed held after the error"
        obj.get_lock().release()
    assert v.value == 5 and a[:] == [1, 2, 3] and c.raw == b"abcd"


@pytest.mark.parametrize("kind, exc, match", [
    ("Lock", ValueError, "released too many times"),
    ("RLock", AssertionError, "not owned"),
])
def test_release_of_unheld_lock(impl, kind, exc, match):
    lock = getattr(impl, kind)()
    with pytest.raises(exc, match=match):
        lock.release()
    assert lock.acquire(timeout=1)
    lock.release()
