"""fastmp.Pipe / fastmp.connection.Connection against multiprocessing.Pipe.

Wherever the standard library's behaviour is the specification, a test runs
against both implementations (the ``impl`` fixture: "fastmp" and "stdlib"),
so the expectation is shown to be multiprocessing's own and not an invention
of this file.  fastmp-only features (send_many/recv_many, capacity=, the
refusal to pickle a Connection outside process start) and the documented
differences (recv_bytes(maxlength) keeps a too-long message) are tested on
fastmp alone and say so.

Rules kept throughout: no sleeping in the hope that a race goes one way.
Processes and threads are sequenced with Events and handshakes; where a test
wants a thread to be *blocked* before it acts (say, before closing the other
end), it waits until the thread sits in a blocking wait (state S in
/proc/self/task/<tid>/stat).  That look is only there to exercise the
blocking path: every assertion holds whether or not the thread had blocked
yet.  Timeouts are safety nets only.  Every child process goes through the
``procs`` fixture, which reaps it whatever happens.
"""

import array
import gc
import multiprocessing
import os
import pickle
import select
import signal
import threading
import time
from multiprocessing.connection import wait

import pytest

import fastmp
from fastmp.connection import Connection

from conftest import Call, fastmp_shm_entries, interrupt_when_blocked, shm_entries, start_fresh_python

pytestmark = pytest.mark.timeout(60)

#: Safety net for anything that should happen "at once" (never a pacing device).
TIMEOUT = 30.0
#: A small ring: "full" and "larger than the ring" are cheap to reach.
SMALL = 4096
FORK = multiprocessing.get_context("fork")

PIPES = {"fastmp": fastmp.Pipe, "stdlib": multiprocessing.Pipe}


@pytest.fixture(params=sorted(PIPES))
def impl(request):
    """The Pipe function under test: fastmp.Pipe or multiprocessing.Pipe."""
    return request.param


def make_pipe(impl, duplex=True, small=False):
    """A pipe of the implementation `impl`.  small=True gives fastmp a 4 KiB
    ring (the standard library has no such knob; its OS buffers are what
    they are)."""
    if impl == "fastmp" and small:
        return fastmp.Pipe(duplex, capacity=SMALL)
    return PIPES[impl](duplex)


def ends(a, b, duplex):
    """(sender, receiver) for a pipe made with `duplex`."""
    return (a, b) if duplex else (b, a)


# -- helpers: threads that block ------------------------------------------------

def _task_state(native_id):
    with open(f"/proc/self/task/{native_id}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_until_blocked(thread, timeout=10.0):
    """Return once `thread` has been in a blocking wait (state S) for several
    consecutive looks (or has finished).  Only makes it likely that the next
    action lands while the thread is blocked; no assertion depends on it."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return
        try:
            state = _task_state(thread.native_id)
        except FileNotFoundError:
            return
        streak = streak + 1 if state == "S" else 0
        if streak >= 5:
            return
        time.sleep(0.002)
    raise AssertionError(f"{thread.name} never blocked")


class NotPicklable(Exception):
    pass


class Unpicklable:
    """Pickling it raises NotPicklable."""

    def __reduce__(self):
        raise NotPicklable("refuses to be pickled")


def send_until_error(conn, payload):
    """Send `payload` forever; only an exception ends it."""
    while True:
        conn.send_bytes(payload)


# -- child targets (module level: picklable for spawn and forkserver) -------------

def _echo(conn):
    """Send every object back until None, then close."""
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(obj)
    conn.close()


def _send_then_wait(conn, n, release):
    """Send n messages, wait for `release`, return without closing `conn`."""
    for i in range(n):
        conn.send(("msg", i))
    release.wait(TIMEOUT)


def _close_and_stay(conn, go, stay):
    """On `go`: close `conn` but stay alive until `stay`."""
    go.wait(TIMEOUT)
    conn.close()
    stay.wait(TIMEOUT)


def _leave(conn, how, go, closed, stay):
    """The reader that goes away: on `go`, close its end, set `closed` and
    stay alive ("close"), or return without closing ("exit"); "sigkill"
    waits to be killed (on `stay`, which nobody may set after the kill: a
    multiprocessing Event cannot be set once a process waiting on it is killed)."""
    if how == "sigkill":
        stay.wait(TIMEOUT)
        return
    go.wait(TIMEOUT)
    if how == "close":
        conn.close()
        closed.set()
        stay.wait(TIMEOUT)


def _send_when_told(conn, go, done):
    go.wait(TIMEOUT)
    conn.send("hello")
    done.wait(TIMEOUT)


def _answer_each_request(conn):
    """For each "next" reply with a counter; on "stop" close."""
    i = 0
    while conn.recv() == "next":
        conn.send(i)
        i += 1
    conn.close()


def _payload(i):
    if i % 1000 == 999:
        return bytes([i % 251]) * 50_000
    return i.to_bytes(4, "little") * (i % 50)


def _send_sequence(conn, tag, n):
    """n messages (tag, i, payload(i)), alternating send and send_many."""
    i = 0
    while i < n:
        if (i // 50) % 2:
            k = min(10, n - i)
            conn.send_many([(tag, j, _payload(j)) for j in range(i, i + k)])
            i += k
        else:
            conn.send((tag, i, _payload(i)))
            i += 1


def _check_sequence(conn, tag, n, errors):
    """Receive n messages from _send_sequence, alternating recv and recv_many."""
    expect = 0
    while expect < n:
        # Never more than n: the sender's next message is not ours to take.
        batch = conn.recv_many(min(64, n - expect)) if expect % 2 else [conn.recv()]
        for msg in batch:
            if msg != (tag, expect, _payload(expect)) and len(errors) < 10:
                errors.append(f"expected {tag} #{expect}, got {str(msg)[:80]}")
            expect += 1


def _chatter(conn, n):
    """Send n messages to the parent while receiving n from it, then report."""
    errors = []
    sender = threading.Thread(target=_send_sequence, args=(conn, "c2p", n))
    sender.start()
    _check_sequence(conn, "p2c", n, errors)
    sender.join()
    conn.send(("report", errors))
    conn.close()


# == construction, direction, state =============================================

def test_pipe_returns_two_connections():
    a, b = fastmp.Pipe()
    assert type(a) is type(b) is Connection
    r, w = fastmp.Pipe(duplex=False)
    assert isinstance(r, Connection) and isinstance(w, Connection)


def test_duplex_sends_both_ways(impl):
    a, b = make_pipe(impl)
    assert (a.readable, a.writable, a.closed) == (True, True, False)
    assert (b.readable, b.writable, b.closed) == (True, True, False)
    a.send("a to b")
    b.send("b to a")
    assert b.recv() == "a to b"
    assert a.recv() == "b to a"
    # Interleaved, several in flight each way.
    for i in range(5):
        a.send(("a", i))
        b.send(("b", i))
    assert [b.recv() for _ in range(5)] == [("a", i) for i in range(5)]
    assert [a.recv() for _ in range(5)] == [("b", i) for i in range(5)]


def test_simplex_gives_reader_then_writer(impl):
    r, w = make_pipe(impl, duplex=False)
    assert (r.readable, r.writable) == (True, False)
    assert (w.readable, w.writable) == (False, True)
    w.send(42)
    assert r.recv() == 42


def test_wrong_direction_raises_os_error(impl):
    r, w = make_pipe(impl, duplex=False)
    for call in (lambda: r.send(1), lambda: r.send_bytes(b"x")):
        with pytest.raises(OSError, match="^connection is read-only$"):
            call()
    for call in (w.recv, w.recv_bytes, lambda: w.recv_bytes_into(bytearray(8)), w.poll,
                 lambda: w.poll(None)):
        with pytest.raises(OSError, match="^connection is write-only$"):
            call()
    # The refused calls neither sent nor consumed anything.
    assert not r.poll()
    w.send("still fine")
    assert r.recv() == "still fine"


def test_wrong_direction_batches_raise_os_error():
    """fastmp only: send_many / recv_many follow send / recv."""
    r, w = fastmp.Pipe(duplex=False)
    with pytest.raises(OSError, match="read-only"):
        r.send_many([1])
    with pytest.raises(OSError, match="write-only"):
        w.recv_many()


def test_bad_capacity():
    """fastmp only."""
    with pytest.raises(TypeError):
        fastmp.Pipe(capacity="big")
    with pytest.raises(ValueError):
        fastmp.Pipe(capacity=10)


# == close =======================================================================

def test_context_manager_closes(impl):
    a, b = make_pipe(impl)
    with a as entered, b:
        assert entered is a
        a.send(1)
        assert b.recv() == 1
    assert a.closed and b.closed

    a, b = make_pipe(impl)
    with pytest.raises(ZeroDivisionError):
        with a:
            1 / 0
    assert a.closed
    with pytest.raises(EOFError):
        b.recv()


def test_close_is_idempotent_and_keeps_the_direction_flags(impl):
    r, w = make_pipe(impl, duplex=False)
    for conn in (r, w):
        flags = (conn.readable, conn.writable)
        conn.close()
        conn.close()
        assert conn.closed
        # As in the standard library, readable/writable describe the end's
        # direction and do not change on close.
        assert (conn.readable, conn.writable) == flags


def _calls_on(conn, impl):
    calls = {
        "send": lambda: conn.send(1),
        "send_bytes": lambda: conn.send_bytes(b"x"),
        "recv": conn.recv,
        "recv_bytes": conn.recv_bytes,
        "recv_bytes(maxlength)": lambda: conn.recv_bytes(10),
        "recv_bytes_into": lambda: conn.recv_bytes_into(bytearray(8)),
        "poll": conn.poll,
        "poll(None)": lambda: conn.poll(None),
        "fileno": conn.fileno,
    }
    if impl == "fastmp":
        calls["send_many"] = lambda: conn.send_many([1])
        calls["recv_many"] = conn.recv_many
    return calls


@pytest.mark.parametrize("which", ["duplex", "reader", "writer"])
def test_every_method_after_close_raises_handle_is_closed(impl, which):
    a, b = make_pipe(impl, duplex=which == "duplex")
    conn = b if which == "writer" else a
    conn.close()
    for name, call in _calls_on(conn, impl).items():
        with pytest.raises(OSError, match="^handle is closed$"):
            call()
            pytest.fail(f"{name} after close did not raise")


def test_dropping_an_end_closes_it(impl):
    a, b = make_pipe(impl)
    a.send("sent before the drop")
    del a
    gc.collect()
    assert b.recv() == "sent before the drop"
    assert b.poll(TIMEOUT)
    with pytest.raises(EOFError):
        b.recv()


# == objects =====================================================================

OBJECTS = [
    None, True, False, 0, -1, 2**100, 3.25, float("inf"), complex(1, -2),
    "", "text with ü and \N{SNOWMAN}", b"", b"raw bytes", bytes(range(256)), bytearray(b"ba"),
    (), (1, "two", 3.0), [1, [2, [3, []]]], {"k": [1, 2], 3: (4,)}, {1, 2}, frozenset({3}),
    range(5), slice(1, 9, 2), ("nested", {"a": (b"x" * 1000, [None, {"deep": b"y"}])}),
    list(range(10_000)),
]


def test_send_recv_objects_in_order(impl):
    a, b = make_pipe(impl)
    for obj in OBJECTS:
        a.send(obj)
    for obj in OBJECTS:
        got = b.recv()
        assert type(got) is type(obj)
        assert got == obj
    assert not b.poll()


def test_bytes_arrive_as_bytes_and_bytearrays_as_bytearrays(impl):
    a, b = make_pipe(impl)
    for obj in (b"", b"abc", bytearray(), bytearray(b"abc"), b"\0" * 5000):
        a.send(obj)
        got = b.recv()
        assert type(got) is type(obj) and got == obj


def test_unpicklable_object_raises_and_sends_nothing(impl):
    a, b = make_pipe(impl)
    a.send("before")
    with pytest.raises(NotPicklable):
        a.send(("first part fine", Unpicklable()))
    a.send("after")
    assert [b.recv(), b.recv()] == ["before", "after"]
    assert not b.poll()


def test_numpy_arrays(impl):
    np = pytest.importorskip("numpy")
    readonly = np.arange(10.0)
    readonly.flags.writeable = False
    arrays = [
        np.arange(1000, dtype=np.float64),
        np.arange(64 * 64, dtype=np.int16).reshape(64, 64),
        np.asfortranarray(np.arange(30, dtype=np.int32).reshape(5, 6)),
        np.arange(20, dtype=np.int64)[::3],              # not contiguous
        np.zeros(0, dtype=np.uint8),
        np.array(5),                                     # 0-d
        np.array([True, False]),
        np.ones(7, dtype=np.complex128),
        np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")]),
        readonly,
    ]
    a, b = make_pipe(impl)
    for arr in arrays:
        a.send(arr)
    for arr in arrays:
        got = b.recv()
        assert isinstance(got, np.ndarray)
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert np.array_equal(got, arr)
        # Writable on arrival, even the read-only one, as with the standard library.
        assert got.flags.writeable
        if got.size:
            got.flat[0] = got.flat[-1]


def test_large_numpy_arrays_stream_through_the_default_ring():
    """fastmp only: messages larger than the 1 MiB ring stream while the
    receiver reads."""
    np = pytest.importorskip("numpy")
    big = np.arange(3 * (1 << 20) // 8, dtype=np.float64)       # 3 MiB
    big2d = np.arange(600 * 700, dtype=np.int32).reshape(600, 700).T  # 1.6 MiB, F order
    a, b = fastmp.Pipe()
    assert big.nbytes > fastmp.connection.DEFAULT_CAPACITY
    sender = Call(lambda: [a.send(big), a.send(("in a tuple", big2d)), a.send("after")])
    sender.start()
    got = b.recv()
    assert got.dtype == big.dtype and np.array_equal(got, big)
    assert got.flags.writeable
    got[0] = -1
    tag, got2d = b.recv()
    assert tag == "in a tuple"
    assert got2d.shape == big2d.shape and np.array_equal(got2d, big2d)
    assert got2d.flags.writeable
    assert b.recv() == "after"
    assert sender.outcome() == ([None, None, None], None)


def test_large_bytes_stream(impl):
    """3 MiB through either pipe (fastmp: through a 4 KiB ring), with a
    small message before and after."""
    a, b = make_pipe(impl, small=True)
    big = bytes(range(256)) * (3 * 4096)
    sender = Call(lambda: [a.send(b"first"), a.send(big), a.send_bytes(big), a.send("last")])
    sender.start()
    assert b.recv() == b"first"
    assert b.recv() == big
    assert b.recv_bytes() == big
    assert b.recv() == "last"
    assert sender.outcome()[1] is None


# == send_bytes / recv_bytes / recv_bytes_into ====================================

def _buffers():
    return {
        "bytes": bytes(range(40)),
        "bytearray": bytearray(range(40)),
        "memoryview": memoryview(bytes(range(40))),
        "array('i')": array.array("i", range(10)),   # itemsize 4: offsets count bytes
    }


@pytest.mark.parametrize("kind", sorted(_buffers()))
@pytest.mark.parametrize("offset, size", [(0, None), (3, None), (4, 8), (0, 0), ("end", None),
                                          ("end", 0), (0, "all")])
def test_send_bytes_offset_and_size(impl, kind, offset, size):
    buf = _buffers()[kind]
    raw = bytes(memoryview(buf).cast("B"))
    n = len(raw)
    offset = n if offset == "end" else offset
    size = n if size == "all" else size
    a, b = make_pipe(impl)
    a.send_bytes(buf, offset, size)
    end = n if size is None else offset + size
    assert b.recv_bytes() == raw[offset:end]
    assert not b.poll()


@pytest.mark.parametrize("kind", sorted(_buffers()))
@pytest.mark.parametrize("offset, size, message", [
    (-1, None, "offset is negative"),
    ("n+1", None, "buffer length < offset"),
    (0, -1, "size is negative"),
    ("n-2", 3, r"buffer length < offset \+ size"),
    (1, "n", r"buffer length < offset \+ size"),
])
def test_send_bytes_bad_offset_or_size_raises_value_error_and_sends_nothing(
        impl, kind, offset, size, message):
    buf = _buffers()[kind]
    n = memoryview(buf).nbytes
    values = {"n+1": n + 1, "n-2": n - 2, "n": n}
    a, b = make_pipe(impl)
    with pytest.raises(ValueError, match=message):
        a.send_bytes(buf, values.get(offset, offset), values.get(size, size))
    assert not b.poll()


def test_send_bytes_of_a_non_contiguous_buffer_raises_and_sends_nothing(impl):
    a, b = make_pipe(impl)
    with pytest.raises(Exception):
        a.send_bytes(memoryview(bytearray(b"abcdefgh"))[::2])
    assert not b.poll()


def test_recv_bytes_negative_maxlength_raises_value_error(impl):
    a, b = make_pipe(impl)
    a.send_bytes(b"abc")
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    assert b.recv_bytes() == b"abc"


def test_recv_bytes_maxlength_fits(impl):
    a, b = make_pipe(impl)
    a.send_bytes(b"12345")
    assert b.recv_bytes(5) == b"12345"
    a.send_bytes(b"")
    assert b.recv_bytes(0) == b""
    # An object's bytes are its pickle: a maxlength of exactly that fits.
    a.send(("obj", 1))
    size = len(b.recv_bytes())
    a.send(("obj", 1))
    assert pickle.loads(b.recv_bytes(size)) == ("obj", 1)


def test_recv_bytes_longer_than_maxlength_raises_os_error(impl):
    r, w = make_pipe(impl, duplex=False)
    w.send_bytes(b"x" * 100)
    w.send_bytes(b"next")
    with pytest.raises(OSError):
        r.recv_bytes(99)
    if impl == "stdlib":
        # The standard library gives up on the connection.
        assert r.closed or not r.readable
    else:
        # fastmp (documented difference): the message stays in the pipe.
        assert r.poll()
        assert r.recv_bytes() == b"x" * 100
        assert r.recv_bytes() == b"next"


def test_recv_bytes_longer_than_maxlength_stays_readable_when_streamed():
    """fastmp only: the same for a message larger than the ring."""
    r, w = fastmp.Pipe(duplex=False, capacity=SMALL)
    big = bytes(range(256)) * 100
    sender = Call(w.send_bytes, big)
    sender.start()
    assert r.poll(TIMEOUT)
    with pytest.raises(OSError):
        r.recv_bytes(len(big) - 1)
    assert r.recv_bytes(len(big)) == big
    assert sender.outcome() == (None, None)


@pytest.mark.parametrize("obj", [b"x" * 10, ("tuple", 1), "text"], ids=["bytes", "tuple", "str"])
def test_recv_bytes_maxlength_keeps_an_object_message_readable(obj):
    # recv_bytes of a send() message returns a pickle; a maxlength one byte
    # short of that pickle raises and leaves the message in the pipe.
    a, b = fastmp.Pipe()
    a.send(obj)
    size = len(b.recv_bytes())
    a.send(obj)
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(size - 1)
    assert b.poll()
    assert pickle.loads(b.recv_bytes(size)) == obj


def test_recv_bytes_maxlength_keeps_an_array_message_readable():
    np = pytest.importorskip("numpy")
    a, b = fastmp.Pipe()
    array = np.arange(1000, dtype=np.float64)
    a.send(array)
    data = b.recv_bytes()
    back = pickle.loads(data)
    assert back.flags.writeable and (back == array).all()
    a.send(array)
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(len(data) - 1)
    assert (pickle.loads(b.recv_bytes(len(data))) == array).all()


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "array('i')"])
def test_recv_bytes_into_returns_the_length(impl, kind):
    make = {"bytearray": lambda: bytearray(b"." * 32),
            "memoryview": lambda: memoryview(bytearray(b"." * 32)),
            "array('i')": lambda: array.array("i", [-1] * 8)}[kind]
    a, b = make_pipe(impl)
    message = b"ABCDEFGH"
    for offset in (0, 8, 24):
        buf = make()
        before = bytes(memoryview(buf).cast("B"))
        a.send_bytes(message)
        assert b.recv_bytes_into(buf, offset) == len(message)
        after = bytes(memoryview(buf).cast("B"))
        assert after == before[:offset] + message + before[offset + len(message):]
    # An empty message fits anywhere, even at the very end.
    a.send_bytes(b"")
    assert b.recv_bytes_into(make(), 32) == 0
    assert not b.poll()


@pytest.mark.parametrize("offset, message", [(-1, "negative offset"), (33, "offset too large")])
def test_recv_bytes_into_bad_offset_raises_value_error_and_takes_nothing(impl, offset, message):
    a, b = make_pipe(impl)
    a.send_bytes(b"abc")
    with pytest.raises(ValueError, match=message):
        b.recv_bytes_into(bytearray(32), offset)
    assert b.recv_bytes() == b"abc"


def test_recv_bytes_into_too_small_raises_buffer_too_short_with_the_whole_message(impl):
    assert fastmp.BufferTooShort is multiprocessing.BufferTooShort
    a, b = make_pipe(impl)
    message = bytes(range(100))
    buf = bytearray(99)
    a.send_bytes(message)
    with pytest.raises(multiprocessing.BufferTooShort) as info:
        b.recv_bytes_into(buf)
    assert info.value.args[0] == message
    assert buf == bytearray(99)     # untouched
    # Because of the offset, this time.
    a.send_bytes(message)
    with pytest.raises(multiprocessing.BufferTooShort) as info:
        b.recv_bytes_into(bytearray(150), 51)
    assert info.value.args[0] == message
    # The message was taken, as in the standard library.
    assert not b.poll()


def test_send_bytes_then_recv_unpickles(impl):
    a, b = make_pipe(impl)
    obj = {"x": [1, 2, (3, "four")], "y": b"raw"}
    a.send_bytes(pickle.dumps(obj))
    assert b.recv() == obj
    a.send_bytes(b"not a pickle")
    with pytest.raises(pickle.UnpicklingError):
        b.recv()
    a.send("the pipe still works")
    assert b.recv() == "the pipe still works"


def test_send_then_recv_bytes_returns_a_pickle(impl):
    a, b = make_pipe(impl)
    for obj in ({"x": [1, 2]}, b"exact bytes", "text", 12345, None):
        a.send(obj)
        assert pickle.loads(b.recv_bytes()) == obj
    a.send(("into", 1))
    buf = bytearray(1000)
    n = b.recv_bytes_into(buf)
    assert pickle.loads(buf[:n]) == ("into", 1)


# == send_many / recv_many (fastmp only) ============================================

def test_send_many_recv_many_order_and_max_messages():
    a, b = fastmp.Pipe()
    a.send("single 0")
    a.send_many([("batch", i) for i in range(10)])
    a.send("single 1")
    a.send_many([])                                   # sends nothing
    assert b.recv_many(1) == ["single 0"]
    assert b.recv_many(4) == [("batch", i) for i in range(4)]
    assert b.recv() == ("batch", 4)
    assert b.recv_many() == [("batch", i) for i in range(5, 10)] + ["single 1"]
    assert not b.poll()
    with pytest.raises(ValueError):
        b.recv_many(0)


def test_recv_many_default_limit_and_mixed_kinds():
    a, b = fastmp.Pipe()
    n = fastmp.connection.DEFAULT_RECV_MANY + 5
    a.send_many(range(n // 2))
    for i in range(n // 2, n):
        a.send(i)
    a.send_bytes(pickle.dumps("raw"))
    a.send(b"exact")
    got = b.recv_many()
    assert got == list(range(fastmp.connection.DEFAULT_RECV_MANY))
    assert b.recv_many() == list(range(fastmp.connection.DEFAULT_RECV_MANY, n)) + ["raw", b"exact"]


def test_recv_many_blocks_until_at_least_one():
    a, b = fastmp.Pipe()
    receiver = Call(b.recv_many)
    receiver.start()
    wait_until_blocked(receiver)
    assert receiver.is_alive(), "recv_many returned with nothing to receive"
    a.send_many([1, 2, 3])        # published together: the waiter gets all three
    assert receiver.outcome() == ([1, 2, 3], None)


def test_recv_many_returns_a_streamed_message_alone():
    a, b = fastmp.Pipe(capacity=SMALL)
    big = b"B" * (10 * SMALL)
    sender = Call(lambda: [a.send(big), a.send("small")])
    sender.start()
    assert b.recv_many() == [big]
    assert b.recv_many() == ["small"]
    assert sender.outcome()[1] is None


def test_send_many_batch_too_large_for_the_ring_raises_and_sends_nothing():
    a, b = fastmp.Pipe(capacity=SMALL)
    with pytest.raises(ValueError):
        a.send_many([b"x" * 2000, b"y" * 2000, b"z" * 2000])
    assert not b.poll()
    # A batch of one larger than the ring streams like send().
    sender = Call(a.send_many, [b"w" * (3 * SMALL)])
    sender.start()
    assert b.recv() == b"w" * (3 * SMALL)
    assert sender.outcome() == (None, None)


def test_send_many_with_an_unpicklable_object_sends_nothing():
    a, b = fastmp.Pipe()
    with pytest.raises(NotPicklable):
        a.send_many([1, Unpicklable(), 3])
    assert not b.poll()


def test_recv_many_drains_then_raises_eof():
    a, b = fastmp.Pipe()
    a.send_many([1, 2])
    a.close()
    assert b.recv_many() == [1, 2]
    with pytest.raises(EOFError):
        b.recv_many()


# == poll ========================================================================

def test_poll_without_and_with_a_message(impl):
    a, b = make_pipe(impl)
    assert b.poll() is False
    assert b.poll(0) is False
    assert b.poll(0.0) is False
    a.send("x")
    assert b.poll() is True
    assert b.poll(0) is True
    assert b.poll(None) is True
    assert b.poll(TIMEOUT) is True
    assert b.poll() is True            # poll takes nothing
    assert b.recv() == "x"
    assert b.poll() is False
    assert a.poll() is False           # the other direction is untouched


def test_poll_with_a_timeout_waits_at_least_that_long(impl):
    a, b = make_pipe(impl)
    start = time.monotonic()
    assert b.poll(0.2) is False
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 0.2 + 10


def test_negative_poll_timeout_is_like_zero(impl):
    a, b = make_pipe(impl)
    start = time.monotonic()
    assert b.poll(-1) is False
    assert b.poll(-0.5) is False
    assert time.monotonic() - start < 1.0
    a.send(1)
    assert b.poll(-1) is True


def test_poll_is_true_once_the_peer_is_closed(impl):
    a, b = make_pipe(impl)
    a.close()
    assert b.poll() is True
    assert b.poll(None) is True
    with pytest.raises(EOFError):
        b.recv()
    assert b.poll() is True


def test_poll_forever_wakes_when_another_process_sends(start_method, procs):
    r, w = fastmp.Pipe(duplex=False)
    go, done = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _send_when_told, w, go, done)
    w.close()
    poller = Call(r.poll, None)
    poller.start()
    wait_until_blocked(poller)
    assert poller.is_alive(), "poll(None) returned with nothing sent"
    go.set()
    assert poller.outcome() == (True, None)
    assert r.recv() == "hello"
    done.set()
    procs.join(child)


# == end of file ===================================================================

@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_recv_drains_then_raises_eof(impl, duplex):
    a, b = make_pipe(impl, duplex)
    sender, receiver = ends(a, b, duplex)
    for i in range(3):
        sender.send(i)
    sender.send_bytes(b"raw")
    sender.close()
    assert [receiver.recv() for _ in range(3)] == [0, 1, 2]
    assert receiver.recv_bytes() == b"raw"
    for call in (receiver.recv, receiver.recv_bytes, lambda: receiver.recv_bytes_into(bytearray(9)),
                 receiver.recv):
        with pytest.raises(EOFError):
            call()
    assert receiver.poll()


def test_a_streamed_message_sent_before_close_arrives_before_eof(impl):
    a, b = make_pipe(impl, small=True)
    big = bytes(range(256)) * (2 << 12)           # 2 MiB
    sender = Call(lambda: [a.send(big), a.send("last"), a.close()])
    sender.start()
    assert b.recv() == big
    assert b.recv() == "last"
    with pytest.raises(EOFError):
        b.recv()
    assert sender.outcome()[1] is None


@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_blocked_recv_wakes_with_eof_when_another_thread_closes_the_peer(impl, duplex):
    a, b = make_pipe(impl, duplex)
    sender, receiver = ends(a, b, duplex)
    blocked = Call(receiver.recv)
    blocked.start()
    wait_until_blocked(blocked)
    sender.close()
    result, error = blocked.outcome()
    assert isinstance(error, EOFError), (result, error)


def test_blocked_recv_wakes_with_eof_when_another_process_closes_the_peer(impl, start_method,
                                                                            procs):
    r, w = make_pipe(impl, duplex=False)
    go, stay = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _close_and_stay, w, go, stay)
    w.close()
    blocked = Call(r.recv)
    blocked.start()
    wait_until_blocked(blocked)
    go.set()                                 # the child closes its end, and lives on
    result, error = blocked.outcome()
    assert isinstance(error, EOFError), (result, error)
    stay.set()
    procs.join(child)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_eof_when_the_child_dies_without_closing(start_method, procs, how):
    r, w = fastmp.Pipe(duplex=False)
    release = start_method.Event()
    child = procs.start(start_method, _send_then_wait, w, 3, release)
    w.close()                                 # the standard idiom
    assert [r.recv() for _ in range(3)] == [("msg", i) for i in range(3)]
    blocked = Call(r.recv)
    blocked.start()
    wait_until_blocked(blocked)
    if how == "exit":
        release.set()                         # the child returns, w never closed
    else:
        os.kill(child.pid, signal.SIGKILL)
    result, error = blocked.outcome()
    assert isinstance(error, EOFError), (result, error)
    child.join(TIMEOUT)
    assert r.poll()
    with pytest.raises(EOFError):
        r.recv()
    procs.join(child, exitcode=0 if how == "exit" else -signal.SIGKILL)


def test_the_parents_copy_of_the_child_end_keeps_the_pipe_open(impl, procs):
    """As with the standard library: no EOF while the parent itself still
    holds the end it gave the child."""
    r, w = make_pipe(impl, duplex=False)
    release = FORK.Event()
    release.set()
    child = procs.start(FORK, _send_then_wait, w, 1, release)
    procs.join(child)
    assert r.recv() == ("msg", 0)
    assert r.poll(0.2) is False               # w is still open here
    w.close()
    assert r.poll(TIMEOUT) is True
    with pytest.raises(EOFError):
        r.recv()


# == BrokenPipeError ================================================================

def _send_calls(conn, impl):
    calls = {"send": lambda: conn.send(1), "send_bytes": lambda: conn.send_bytes(b"x")}
    if impl == "fastmp":
        calls["send_many"] = lambda: conn.send_many([1, 2])
    return calls


@pytest.mark.parametrize("call", ["send", "send_bytes"])
@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_send_after_the_reader_is_closed_raises_broken_pipe(impl, duplex, call):
    a, b = make_pipe(impl, duplex)
    sender, receiver = ends(a, b, duplex)
    sender.send("while open")
    receiver.close()
    with pytest.raises(BrokenPipeError):
        _send_calls(sender, impl)[call]()
    assert issubclass(BrokenPipeError, OSError)


@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_send_many_after_the_reader_is_closed_raises_broken_pipe(duplex):
    """fastmp only."""
    a, b = fastmp.Pipe(duplex)
    sender, receiver = ends(a, b, duplex)
    sender.send("while open")
    receiver.close()
    with pytest.raises(BrokenPipeError):
        sender.send_many([1, 2])


@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_every_send_after_the_reader_is_closed_raises_broken_pipe(impl, duplex):
    a, b = make_pipe(impl, duplex)
    sender, receiver = ends(a, b, duplex)
    receiver.close()
    for name, call in list(_send_calls(sender, impl).items()) * 2:
        with pytest.raises(BrokenPipeError):
            call()
            pytest.fail(f"{name} did not raise")


def test_streamed_send_to_a_closed_reader_raises_broken_pipe(impl):
    a, b = make_pipe(impl, small=True)
    b.close()
    with pytest.raises(BrokenPipeError):
        a.send_bytes(b"s" * (2 << 20))


def _broken_pipe_expected(impl, duplex, error):
    """fastmp: BrokenPipeError.  The standard library's duplex pipe is a
    socketpair: a writer blocked while the peer closes with unread data gets
    ECONNRESET (ConnectionResetError) from Linux; its simplex pipe EPIPE."""
    if impl == "stdlib" and duplex:
        return isinstance(error, (BrokenPipeError, ConnectionResetError))
    return isinstance(error, BrokenPipeError)


@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_blocked_streamed_send_raises_broken_pipe_when_the_reader_closes(impl, duplex):
    """A message larger than the pipe holds, nobody reading, then the reader
    closes: BrokenPipeError, not a hang."""
    a, b = make_pipe(impl, duplex, small=True)
    sender, receiver = ends(a, b, duplex)
    blocked = Call(sender.send_bytes, b"s" * (2 << 20))
    blocked.start()
    wait_until_blocked(blocked)
    receiver.close()
    result, error = blocked.outcome()
    assert _broken_pipe_expected(impl, duplex, error), (result, error)


@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_blocked_send_on_a_full_pipe_raises_broken_pipe_when_the_reader_closes(impl, duplex):
    a, b = make_pipe(impl, duplex, small=True)
    sender, receiver = ends(a, b, duplex)
    blocked = Call(send_until_error, sender, b"f" * 1000)
    blocked.start()
    wait_until_blocked(blocked)
    receiver.close()
    result, error = blocked.outcome()
    assert _broken_pipe_expected(impl, duplex, error), (result, error)


@pytest.mark.parametrize("payload", ["full-ring", "stream"])
@pytest.mark.parametrize("how", ["close", "exit", "sigkill"])
def test_blocked_sender_raises_broken_pipe_when_the_reader_process_goes(how, payload, procs):
    """fastmp, 4 KiB ring: a sender blocked on a full pipe, or inside a
    message larger than the ring, fails with BrokenPipeError when the process
    holding the only reader closes it, exits or is killed."""
    r, w = fastmp.Pipe(duplex=False, capacity=SMALL)
    go, closed, stay = FORK.Event(), FORK.Event(), FORK.Event()
    child = procs.start(FORK, _leave, r, how, go, closed, stay)
    r.close()
    if payload == "full-ring":
        sender = Call(send_until_error, w, b"f" * 1000)
    else:
        sender = Call(w.send_bytes, b"s" * (100 * SMALL))
    sender.start()
    wait_until_blocked(sender)
    if how == "sigkill":
        os.kill(child.pid, signal.SIGKILL)
    else:
        go.set()
    result, error = sender.outcome()
    assert isinstance(error, BrokenPipeError), (result, error)
    if how != "sigkill":
        stay.set()
    procs.join(child, exitcode=-signal.SIGKILL if how == "sigkill" else 0)


@pytest.mark.parametrize("how", ["close", "exit"])
def test_send_after_the_reader_process_is_gone_raises_broken_pipe(impl, start_method, procs, how):
    r, w = make_pipe(impl, duplex=False, small=True)
    go, closed, stay = start_method.Event(), start_method.Event(), start_method.Event()
    child = procs.start(start_method, _leave, r, how, go, closed, stay)
    r.close()
    w.send("while the reader lives")
    go.set()
    if how == "exit":
        child.join(TIMEOUT)               # returned without closing r
    else:
        assert closed.wait(TIMEOUT)       # close() has returned in the child, which lives on
    # Both implementations agree that the reader is gone: a write-only end's
    # descriptor is readable then.
    assert wait([w], TIMEOUT) == [w], "the reader end never went away"
    if impl == "fastmp" and how == "exit":
        # Documented difference (README, "A pipe whose reader died without
        # closing"): nothing tells the writer until it has to wait for room,
        # so sends succeed until the ring is full, then BrokenPipeError.  The
        # standard library raises on the next write.
        limit = SMALL // 100 + 2          # more than a 4 KiB ring can hold
        with pytest.raises(BrokenPipeError):
            for _ in range(limit):
                w.send_bytes(b"d" * 100)
            pytest.fail(f"{limit} sends to a dead reader, no BrokenPipeError")
        with pytest.raises(BrokenPipeError):
            w.send("and again")
    else:
        with pytest.raises(BrokenPipeError):
            w.send("after")
        with pytest.raises(BrokenPipeError):
            w.send("and again")
    stay.set()
    procs.join(child)


# == fileno / wait / select ===========================================================

@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "simplex"])
def test_wait_returns_exactly_the_ready_connections(impl, duplex):
    pipes = [ends(*make_pipe(impl, duplex), duplex) for _ in range(4)]
    readers = [receiver for _, receiver in pipes]
    assert wait(readers, 0) == []
    pipes[0][0].send("zero")
    pipes[2][0].send("two")
    pipes[3][0].send_bytes(b"three")
    assert set(wait(readers, 0)) == {readers[0], readers[2], readers[3]}
    assert set(wait(readers, TIMEOUT)) == {readers[0], readers[2], readers[3]}
    assert readers[2].recv() == "two"
    assert set(wait(readers, 0)) == {readers[0], readers[3]}
    assert readers[0].recv() == "zero"
    assert readers[3].recv_bytes() == b"three"
    assert wait(readers, 0) == []
    start = time.monotonic()
    assert wait(readers, 0.1) == []
    assert time.monotonic() - start >= 0.1


def test_readiness_counts_messages_not_wakeups(impl):
    """Two messages: still ready after the first is taken, not after both."""
    a, b = make_pipe(impl)
    b.fileno()
    a.send(1)
    a.send(2)
    assert wait([b], 0) == [b]
    assert b.recv() == 1
    assert wait([b], 0) == [b]
    assert b.recv() == 2
    assert wait([b], 0) == []
    if impl == "fastmp":
        a.send_many([3, 4])
        assert wait([b], 0) == [b]
        assert b.recv_many() == [3, 4]
        assert wait([b], 0) == []


def test_readiness_when_fileno_is_first_asked_with_messages_waiting(impl):
    a, b = make_pipe(impl)
    a.send("early")
    assert wait([b], 0) == [b]
    assert b.recv() == "early"
    assert wait([b], 0) == []


def test_fileno_is_stable(impl):
    a, b = make_pipe(impl)
    assert isinstance(b.fileno(), int)
    assert b.fileno() == b.fileno()


def test_select_select(impl):
    a, b = make_pipe(impl)
    assert select.select([b], [], [], 0) == ([], [], [])
    a.send("x")
    assert select.select([b, a], [], [], TIMEOUT)[0] == [b]
    assert b.recv() == "x"
    assert select.select([b], [], [], 0)[0] == []
    a.close()
    assert select.select([b], [], [], TIMEOUT)[0] == [b]


def test_readiness_for_eof(impl):
    a, b = make_pipe(impl)
    b.fileno()
    assert wait([b], 0) == []
    a.close()
    assert wait([b], TIMEOUT) == [b]
    with pytest.raises(EOFError):
        b.recv()
    assert wait([b], 0) == [b]          # EOF stays readable


def test_write_only_end_is_readable_once_the_reader_is_gone(impl):
    r, w = make_pipe(impl, duplex=False)
    assert wait([w], 0) == []
    r.close()
    assert wait([w], TIMEOUT) == [w]


def test_readiness_wakes_a_thread_blocked_in_wait(impl):
    a, b = make_pipe(impl)
    waiter = Call(wait, [b])
    waiter.start()
    wait_until_blocked(waiter)
    a.send("wake")
    assert waiter.outcome() == ([b], None)


def test_wait_mixes_connections_and_a_process_sentinel(start_method, procs):
    r, w = fastmp.Pipe(duplex=False)
    other_r, other_w = fastmp.Pipe(duplex=False)
    go, done = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _send_when_told, w, go, done)
    w.close()
    objs = [r, child.sentinel, other_r]
    assert wait(objs, 0) == []
    go.set()
    assert wait(objs, TIMEOUT) == [r]
    assert r.recv() == "hello"
    assert wait(objs, 0) == []
    other_w.send("other")
    assert wait(objs, 0) == [other_r]
    assert other_r.recv() == "other"
    done.set()
    # The child exits: its sentinel turns ready, and so does r (end of file).
    # (Each is awaited on its own: the two need not turn ready at the same
    # instant.  And before join(): under forkserver, join() reads the exit
    # status out of the sentinel.)
    assert wait([child.sentinel], TIMEOUT) == [child.sentinel]
    assert wait([r], TIMEOUT) == [r]
    assert set(wait(objs, 0)) == {r, child.sentinel}
    with pytest.raises(EOFError):
        r.recv()
    procs.join(child)


@pytest.mark.parametrize("fileno_first", [True, False],
                         ids=["fileno-before-start", "fileno-after-start"])
def test_wait_over_a_connection_written_by_another_process(start_method, procs, fileno_first):
    """The writing process sets the readiness descriptor whether the reader
    asked for fileno() before the writer had its end or after."""
    a, b = fastmp.Pipe()
    if fileno_first:
        a.fileno()
    child = procs.start(start_method, _answer_each_request, b)
    b.close()
    for i in range(20):
        assert wait([a], 0) == []
        a.send("next")
        assert wait([a], TIMEOUT) == [a]
        assert a.recv() == i
    assert wait([a], 0) == []
    a.send("stop")
    assert wait([a], TIMEOUT) == [a]            # the child closed its end
    with pytest.raises(EOFError):
        a.recv()
    procs.join(child)


# == across processes ==================================================================

def test_ping_pong_through_a_child(start_method, procs):
    a, b = fastmp.Pipe(capacity=64 * 1024)
    child = procs.start(start_method, _echo, b)
    b.close()
    items = [0, "text", b"bytes", (1, [2, {3: 4}]),
             bytes(range(256)) * 1024,              # 256 KiB: streams both ways
             {"k": b"v" * 70_000}]
    for item in items:
        a.send(item)
        assert a.recv() == item
    a.send_bytes(pickle.dumps("as bytes"))
    assert a.recv() == "as bytes"
    a.send(None)
    with pytest.raises(EOFError):                  # the child closed its end
        a.recv()
    procs.join(child)


@pytest.mark.timeout(90)
def test_many_messages_both_ways_at_once(start_method, procs):
    n = 10_000
    a, b = fastmp.Pipe()
    child = procs.start(start_method, _chatter, b, n)
    b.close()
    sender = Call(_send_sequence, a, "p2c", n)
    sender.start()
    errors = []
    _check_sequence(a, "c2p", n, errors)
    assert errors == []
    assert sender.outcome() == (None, None)
    assert a.recv() == ("report", [])
    with pytest.raises(EOFError):
        a.recv()
    procs.join(child)


def test_pickling_a_connection_outside_process_start_raises_runtime_error():
    """fastmp only (like Queue): the standard library's pickle.dumps of a
    Connection "works" and yields a bare handle number."""
    a, b = fastmp.Pipe()
    r, w = fastmp.Pipe(duplex=False)
    for conn in (a, b, r, w):
        with pytest.raises(RuntimeError, match="inheritance"):
            pickle.dumps(conn)
    # Still usable afterwards.
    a.send(1)
    assert b.recv() == 1


# == resource hygiene ===================================================================

def test_two_hundred_pipes_leak_no_descriptors(fd_count, segment_fds):
    a, b = fastmp.Pipe()                  # anything opened once per process
    a.fileno(), b.fileno()
    a.close(), b.close()
    gc.collect()
    fds_before, segments_before, shm_before = fd_count(), segment_fds(), shm_entries()
    for i in range(200):
        duplex = i % 2 == 0
        x, y = fastmp.Pipe(duplex, capacity=SMALL if i % 3 else fastmp.connection.DEFAULT_CAPACITY)
        sender, receiver = ends(x, y, duplex)
        if i % 4 == 0:
            receiver.fileno()
        if i % 5 == 0:
            sender.fileno()
        sender.send(("msg", i))
        assert receiver.recv() == ("msg", i)
        if i % 7 == 0:
            del x, y, sender, receiver       # dropped, not closed
        else:
            x.close()
            y.close()
    gc.collect()
    assert fd_count() == fds_before
    assert segment_fds() == segments_before
    assert not fastmp_shm_entries(shm_before)


def test_passing_ends_to_children_leaks_nothing(start_method, leak_guard, procs):
    for _ in range(3):
        a, b = fastmp.Pipe()
        a.fileno()
        child = procs.start(start_method, _echo, b)
        b.close()
        a.send("ping")
        assert a.recv() == "ping"
        a.send(None)
        procs.join(child)
        a.close()
    del a, b
    leak_guard.check()


# == Ctrl-C ====================================================================================

#: (setup, blocking call, checks once interrupted), run in a fresh interpreter.
_BLOCKED = {
    "recv": ("a, b = fastmp.Pipe()", "b.recv()", "a.send('after'); assert b.recv() == 'after'"),
    "recv_bytes": ("a, b = fastmp.Pipe()", "b.recv_bytes()",
                   "a.send_bytes(b'after'); assert b.recv_bytes() == b'after'"),
    "recv_bytes_into": ("a, b = fastmp.Pipe()", "b.recv_bytes_into(bytearray(9))",
                        "a.send_bytes(b'after'); assert b.recv_bytes() == b'after'"),
    "recv_many": ("a, b = fastmp.Pipe()", "b.recv_many()",
                  "a.send('after'); assert b.recv_many() == ['after']"),
    "poll_forever": ("a, b = fastmp.Pipe()", "b.poll(None)",
                     "a.send('after'); assert b.poll(None) and b.recv() == 'after'"),
    # 3 x 1000 bytes in a 4 KiB ring: no room for 2000 more.
    "send_full": ("a, b = fastmp.Pipe(capacity=4096)\n"
                  "for _ in range(3): a.send_bytes(b'f' * 1000)",
                  "a.send_bytes(b'x' * 2000)",
                  "assert [b.recv_bytes() for _ in range(3)] == [b'f' * 1000] * 3\n"
                  "assert not b.poll()  # the interrupted message was not sent\n"
                  "a.send('after'); assert b.recv() == 'after'"),
    "send_stream": ("a, b = fastmp.Pipe(capacity=4096)", "a.send_bytes(b's' * 100000)",
                    "assert not b.poll()  # the half-sent message was taken back\n"
                    "a.send('after'); assert b.recv() == 'after'"),
}


@pytest.mark.parametrize("call", sorted(_BLOCKED))
def test_ctrl_c_interrupts_a_blocked_call_and_the_pipe_stays_usable(call, tmp_path):
    setup, blocking, after = _BLOCKED[call]
    code = "\n".join([
        "import fastmp",
        setup,
        "print('ready', flush=True)",
        "try:",
        f"    {blocking}",
        "except KeyboardInterrupt:",
        "    print('interrupted', flush=True)",
        "else:",
        "    print('returned', flush=True)",
        after,
        "a.close()",
        "try:",
        "    b.recv()",
        "except EOFError:",
        "    print('usable', flush=True)",
    ])
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err_file:
        child = start_fresh_python(code, tmp_path, stderr=err_file)
    try:
        sent = interrupt_when_blocked(child)
        line = child.stdout.readline().strip()
        elapsed = time.monotonic() - sent
        child.wait(timeout=10)
        rest = child.stdout.read()      # small: it fitted the pipe while the child ran
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    err = err_path.read_text()
    assert line == "interrupted", err
    assert elapsed < 2.0
    assert rest.split() == ["usable"], err
    assert child.returncode == 0, err


class _Interrupted(Exception):
    """Raised by the test's SIGINT handler."""


@pytest.mark.parametrize("call", ["recv", "recv_bytes", "poll_forever"])
def test_ctrl_c_in_this_process_interrupts_a_recv_blocked_in_the_main_thread(call):
    """The same in-process: a helper thread waits until the main thread sits
    in the blocking wait, then sends it SIGINT; the handler's exception comes
    out of the call, and the pipe is still usable afterwards.  (Unlike the
    subprocess test above, this one could pass vacuously if the signal landed
    before the call blocked; wait_until_blocked makes that unlikely.)"""
    main = threading.main_thread()
    assert threading.current_thread() is main
    a, b = fastmp.Pipe()
    blocking = {"recv": b.recv, "recv_bytes": b.recv_bytes,
                "poll_forever": lambda: b.poll(None)}[call]

    def handler(signum, frame):
        raise _Interrupted

    def interrupt():
        try:
            wait_until_blocked(main)
        finally:
            signal.pthread_kill(main.ident, signal.SIGINT)   # even if it never blocked

    previous = signal.signal(signal.SIGINT, handler)
    try:
        helper = threading.Thread(target=interrupt, daemon=True)
        helper.start()
        start = time.monotonic()
        with pytest.raises(_Interrupted):
            blocking()
        elapsed = time.monotonic() - start
        helper.join(TIMEOUT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert elapsed < 10.0
    a.send_bytes(pickle.dumps("after"))
    assert b.recv() == "after"
    assert not b.poll()
