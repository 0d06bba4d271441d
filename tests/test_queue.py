"""Single-process behavioural tests for fastmp.Queue.

Each test states the standard-library (multiprocessing.Queue) behaviour it
checks, or the documented fastmp extra (put_many/get_many, capacity).  Section
headers name the compatibility checklist line they cover ([compat N], from
/work/shared/compat.md, "Queue").  Everything runs in one process: a second handle on the same
shared queue is obtained through the very pickling path a spawned child uses
(see `another_handle`).
"""

import copy
import gc
import inspect
import itertools
import math
import multiprocessing
import multiprocessing.queues
import os
import pickle
import queue
import random
import signal
import threading
import time
import types
from collections import deque
from multiprocessing import context as mp_context
from multiprocessing.reduction import ForkingPickler

import pytest

import fastmp
from fastmp import Queue

pytestmark = pytest.mark.timeout(30)

CAP = 1024           # a small ring, so that wrap-around/streaming/buffering happen
WAIT = 10.0          # generous bound for "this must arrive", never reached when correct
FEEDER = "fastmp-QueueFeederThread"


# --------------------------------------------------------------------------- helpers


class _FakePopen:
    """What multiprocessing's spawn Popen offers while it pickles a child's
    arguments: duplicate_for_child() and DupFd().  Lets a test take a second
    handle on a queue in this process through the real start-time pickling."""

    def duplicate_for_child(self, fd):
        return os.dup(fd)

    def DupFd(self, fd):
        return _PassedFd(fd)


class _PassedFd:
    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


def another_handle(q):
    """A second Queue object on the same shared queue, as a spawned child gets."""
    mp_context.set_spawning_popen(_FakePopen())
    try:
        data = ForkingPickler.dumps(q)
    finally:
        mp_context.set_spawning_popen(None)
    return pickle.loads(data)


def blob(i, size):
    """Deterministic, distinct content for message i."""
    return random.Random(i).randbytes(size)


def record_bytes(n):
    """Bytes a KIND_BYTES message of n bytes takes in the ring (16-byte header,
    body padded to 8)."""
    return 16 + (n + 7) // 8 * 8


def get_all(q, n, timeout=WAIT):
    return [q.get(timeout=timeout) for _ in range(n)]


class Reader(threading.Thread):
    """Gets n messages in a thread (needed for messages larger than the ring)."""

    def __init__(self, q, n):
        super().__init__(daemon=True)
        self.q, self.n, self.got, self.error = q, n, [], None

    def run(self):
        try:
            for _ in range(self.n):
                self.got.append(self.q.get(timeout=WAIT))
        except BaseException as e:  # reported by result()
            self.error = e

    def result(self):
        self.join(WAIT * 2)
        assert not self.is_alive(), "reader thread hung"
        if self.error is not None:
            raise self.error
        return self.got


def fill_past_ring(q, n=40, size=100):
    """Put n messages on an unbounded queue of CAP bytes without a reader, so
    that most of them are buffered in this process (put_nowait: no room wait).
    Returns the messages, in order."""
    msgs = [blob(i, size) for i in range(n)]
    assert n * record_bytes(size) > q._ring.capacity
    for m in msgs:
        q.put_nowait(m)
    return msgs


def elapsed(fn, *args, **kwargs):
    start = time.monotonic()
    try:
        fn(*args, **kwargs)
    finally:
        took = time.monotonic() - start
    return took


def _feeders():
    return [t for t in threading.enumerate() if t.name == FEEDER]


def _unstick(feeder, seconds=5.0):
    """Failure path only: discard what a leftover feeder is trying to flush
    and stop it, so that one failed test does not hang the later ones (or
    this process's exit, which joins feeders as the standard library does)."""
    _, ring, buffer, notempty = feeder._args
    with notempty:
        buffer.append(fastmp.queues._SENTINEL)
        notempty.notify()
    deadline = time.monotonic() + seconds
    while feeder.is_alive() and time.monotonic() < deadline:
        ring.get_many(1 << 20, True, 0.05)
        feeder.join(0.01)


@pytest.fixture(autouse=True)
def no_stray_feeder_threads():
    """Every test must leave its queues flushed: a feeder thread still holding
    messages would make this process wait for it at exit (as the standard
    library's does).  Feeders stop once their queue is closed or collected."""
    before = set(_feeders())
    yield
    gc.collect()
    new = [t for t in _feeders() if t not in before]
    deadline = time.monotonic() + 5
    for t in new:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in new if t.is_alive()]
    for t in stuck:
        _unstick(t)
    assert not stuck, f"{len(stuck)} feeder thread(s) still running after the test"


class Interrupt(Exception):
    pass


@pytest.fixture
def interrupt_after():
    """interrupt_after(seconds): raise Interrupt in the main thread then (as
    Ctrl-C would).  Uses SIGUSR1: pytest-timeout owns SIGALRM."""
    def handler(signum, frame):
        raise Interrupt

    old = signal.signal(signal.SIGUSR1, handler)
    timers = []

    def arm(seconds):
        t = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGUSR1))
        timers.append(t)
        t.start()

    try:
        yield arm
    finally:
        for t in timers:
            t.cancel()
            t.join()
        signal.signal(signal.SIGUSR1, old)


# --------------------------------------------------------------------------- [compat 1] put/get, Full/Empty, timeouts


def test_put_get_is_fifo_for_all_kinds_of_objects():
    q = Queue()
    objs = [b"raw", "text", 42, 2**100, None, 3.5, (1, "a"), [1, [2]], {"k": {1, 2}},
            bytearray(b"ba"), b"", ValueError("carried")]
    for o in objs:
        q.put(o)
    got = get_all(q, len(objs))
    assert got[:-1] == objs[:-1]
    assert type(got[-1]) is ValueError and got[-1].args == ("carried",)
    assert [type(g) for g in got] == [type(o) for o in objs]


def test_exceptions_are_the_queue_modules():
    assert fastmp.queues.Full is queue.Full
    assert fastmp.queues.Empty is queue.Empty
    with pytest.raises(queue.Empty) as e:
        Queue().get_nowait()
    assert type(e.value) is queue.Empty
    q = Queue(1)
    q.put(1)
    with pytest.raises(queue.Full) as e:
        q.put_nowait(2)
    assert type(e.value) is queue.Full


def test_get_block_false_raises_empty_at_once_even_with_timeout():
    q = Queue()
    with pytest.raises(queue.Empty):
        q.get(False)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=5)
    assert time.monotonic() - start < 1.0


def test_put_block_false_raises_full_at_once_even_with_timeout():
    q = Queue(2)
    q.put(1)
    q.put(2)
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, block=False, timeout=5)
    with pytest.raises(queue.Full):
        q.put(3, False)
    assert time.monotonic() - start < 1.0
    assert get_all(q, 2) == [1, 2]


@pytest.mark.parametrize("call", ["get", "get_many"])
def test_get_timeout_is_honoured(call):
    q = Queue()
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        getattr(q, call)(timeout=0.2)
    took = time.monotonic() - start
    assert 0.2 <= took < 2.0


@pytest.mark.parametrize("call", ["put", "put_many"])
def test_put_timeout_on_full_queue_is_honoured(call):
    q = Queue(2)
    q.put("a")
    q.put("b")
    start = time.monotonic()
    with pytest.raises(queue.Full):
        if call == "put":
            q.put("c", timeout=0.2)
        else:
            q.put_many(["c"], timeout=0.2)
    took = time.monotonic() - start
    assert 0.2 <= took < 2.0
    assert q.qsize() == 2
    assert get_all(q, 2) == ["a", "b"]
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_put_timeout_is_honoured_while_earlier_messages_are_buffered():
    # maxsize 20, ring of 1 KiB: most of the 20 messages wait in this
    # process's buffer; the 21st put must still time out after its timeout.
    q = Queue(20, capacity=CAP)
    msgs = [blob(i, 100) for i in range(20)]
    for m in msgs:
        q.put_nowait(m)
    assert q.full()
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(b"x", timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 2.0
    assert get_all(q, 20) == msgs


@pytest.mark.parametrize("timeout", [0, -1, -1e9])
def test_zero_or_negative_timeout_does_not_wait(timeout):
    q = Queue(1)
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=timeout)
    with pytest.raises(queue.Empty):
        q.get_many(timeout=timeout)
    q.put("x", timeout=timeout)  # room: goes in
    with pytest.raises(queue.Full):
        q.put("y", timeout=timeout)
    with pytest.raises(queue.Full):
        q.put_many(["y"], timeout=timeout)
    assert time.monotonic() - start < 1.0
    assert q.get(timeout=timeout) == "x"  # present: returned, not Empty


def test_infinite_timeout_is_accepted():
    q = Queue()
    q.put(1)
    assert q.get(timeout=math.inf) == 1
    q.put_many([2, 3], timeout=math.inf)
    assert q.get_many(timeout=math.inf) == [2, 3]


def test_get_with_timeout_none_blocks_until_an_item_arrives():
    q = Queue()
    got = []
    done = threading.Event()

    def getter():
        got.append(q.get())
        done.set()

    t = threading.Thread(target=getter, daemon=True)
    t.start()
    assert not done.wait(0.3), "get() with timeout=None returned without an item"
    q.put("late")
    assert done.wait(WAIT)
    t.join()
    assert got == ["late"]


def test_put_with_timeout_none_blocks_until_room():
    q = Queue(1)
    q.put("first")
    done = threading.Event()

    def putter():
        q.put("second")
        done.set()

    t = threading.Thread(target=putter, daemon=True)
    t.start()
    assert not done.wait(0.3), "put() on a full queue returned without room"
    assert q.get(timeout=WAIT) == "first"
    assert done.wait(WAIT)
    t.join()
    assert q.get(timeout=WAIT) == "second"


def test_blocked_put_gets_in_when_a_consumer_makes_room():
    q = Queue(1)
    q.put(0)
    go = threading.Event()

    def consumer():
        go.wait()
        q.get(timeout=WAIT)

    t = threading.Thread(target=consumer, daemon=True)
    t.start()
    go.set()
    q.put(1, timeout=WAIT)  # whether it waits or not, it must succeed
    t.join()
    assert q.get(timeout=WAIT) == 1


@pytest.mark.parametrize("bad", ["1", b"1", [1], object()])
def test_timeout_of_wrong_type_raises_type_error(bad):
    q = Queue(1)
    with pytest.raises(TypeError):
        q.get(timeout=bad)
    with pytest.raises(TypeError):
        q.get_many(timeout=bad)
    with pytest.raises(TypeError):
        q.put("x", timeout=bad)
    with pytest.raises(TypeError):
        q.put_many(["x"], timeout=bad)
    assert q.qsize() == 0 and q.empty()  # nothing went in
    q.put("ok")
    assert q.get() == "ok"


def test_nan_timeout_raises_value_error():
    q = Queue(1)
    nan = float("nan")
    with pytest.raises(ValueError):
        q.get(timeout=nan)
    with pytest.raises(ValueError):
        q.get_many(timeout=nan)
    with pytest.raises(ValueError):
        q.put("x", timeout=nan)
    with pytest.raises(ValueError):
        q.put_many(["x"], timeout=nan)
    assert q.qsize() == 0
    q.put("ok")
    assert q.get() == "ok"


def test_blocked_get_is_interrupted_by_a_signal(interrupt_after):
    q = Queue()
    interrupt_after(0.2)
    start = time.monotonic()
    with pytest.raises(Interrupt):
        q.get()
    assert time.monotonic() - start < 5
    q.put("after")
    assert q.get(timeout=WAIT) == "after"


def test_blocked_put_is_interrupted_by_a_signal(interrupt_after):
    q = Queue(1)
    q.put("kept")
    interrupt_after(0.2)
    with pytest.raises(Interrupt):
        q.put("dropped")
    assert q.qsize() == 1
    assert q.get(timeout=WAIT) == "kept"
    q.put("next")
    assert q.get(timeout=WAIT) == "next"
    with pytest.raises(queue.Empty):
        q.get_nowait()


# --------------------------------------------------------------------------- [compat 2] nowait, qsize, empty, full


def test_put_nowait_get_nowait():
    q = Queue(2)
    q.put_nowait("a")
    q.put_nowait("b")
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    assert q.get_nowait() == "a"
    assert q.get_nowait() == "b"
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_qsize_empty_full_follow_the_messages():
    q = Queue(3)
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)
    q.put(1)
    assert (q.qsize(), q.empty(), q.full()) == (1, False, False)
    q.put_many([2, 3])
    assert (q.qsize(), q.empty(), q.full()) == (3, False, True)
    q.get()
    assert (q.qsize(), q.empty(), q.full()) == (2, False, False)
    q.get_many()
    assert (q.qsize(), q.empty(), q.full()) == (0, True, False)


def test_qsize_counts_messages_buffered_in_this_process():
    q = Queue(capacity=CAP)
    msgs = fill_past_ring(q, n=50)
    assert q.qsize() == 50
    assert not q.empty()
    assert not q.full()
    assert get_all(q, 10) == msgs[:10]
    assert q.qsize() == 40
    assert get_all(q, 40) == msgs[10:]
    assert q.qsize() == 0
    assert q.empty()


def test_full_counts_messages_buffered_in_this_process():
    q = Queue(30, capacity=CAP)
    msgs = [blob(i, 100) for i in range(30)]
    for m in msgs:
        q.put_nowait(m)  # most of them cannot be in a 1 KiB ring
    assert q.full()
    assert q.qsize() == 30
    with pytest.raises(queue.Full):
        q.put_nowait(b"extra")
    assert q.get(timeout=WAIT) == msgs[0]
    assert not q.full()
    q.put_nowait(b"extra")
    assert get_all(q, 30) == msgs[1:] + [b"extra"]


def test_signatures_match_multiprocessing_queue():
    for name in ["put", "get", "put_nowait", "get_nowait", "qsize", "empty", "full", "close",
                 "join_thread", "cancel_join_thread"]:
        std = inspect.signature(getattr(multiprocessing.queues.Queue, name))
        ours = inspect.signature(getattr(Queue, name))
        assert ours == std, name
    init = inspect.signature(Queue.__init__).parameters
    assert init["maxsize"].default == 0
    assert init["ctx"].kind is inspect.Parameter.KEYWORD_ONLY


def test_ctx_keyword_is_accepted():
    q = Queue(2, ctx=multiprocessing.get_context())
    q.put(1)
    assert q.get() == 1
    assert fastmp.Queue is Queue


# --------------------------------------------------------------------------- [compat 3] maxsize


@pytest.mark.parametrize("maxsize", [0, -1, -100])
def test_maxsize_le_zero_is_unbounded_far_beyond_the_ring(maxsize):
    # 2000 messages of 1000 bytes (~2 MB) into a 4 KiB ring, nobody reading:
    # put never raises Full and never blocks for long; all come back in order.
    q = Queue(maxsize, capacity=4096)
    msgs = [blob(i, 1000) for i in range(2000)]
    start = time.monotonic()
    for m in msgs:
        q.put(m)
        assert not q.full()
    assert time.monotonic() - start < 5
    assert q.qsize() == 2000
    assert get_all(q, 2000) == msgs
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_unbounded_put_never_blocks_even_for_messages_larger_than_the_ring():
    q = Queue(capacity=CAP)
    msgs = [blob(i, s) for i, s in enumerate([10 * CAP, 100, 3 * CAP + 5, 0, CAP])]
    for m in msgs:
        assert elapsed(q.put, m) < 2.0
    assert q.qsize() == len(msgs)
    assert get_all(q, len(msgs)) == msgs


def test_maxsize_counts_messages_not_bytes():
    q = Queue(2, capacity=CAP)
    big = [blob(1, 3 * CAP), blob(2, 5 * CAP)]  # both larger than the ring
    for m in big:
        q.put(m, timeout=WAIT)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait(b"")
    assert get_all(q, 2) == big

    q = Queue(3)  # 1 MiB ring: plenty of bytes, still three messages
    for i in range(3):
        q.put_nowait(i)
    with pytest.raises(queue.Full):
        q.put_nowait(b"")
    assert q.get_many() == [0, 1, 2]


def test_maxsize_one():
    q = Queue(1)
    for i in range(100):
        q.put_nowait(i)
        assert q.full()
        with pytest.raises(queue.Full):
            q.put_nowait("no")
        assert q.get_nowait() == i
        assert not q.full()


# --------------------------------------------------------------------------- [compat 4] close, join_thread, cancel_join_thread


@pytest.mark.parametrize("call", [
    lambda q: q.put(1), lambda q: q.get(), lambda q: q.put_nowait(1), lambda q: q.get_nowait(),
    lambda q: q.put(1, timeout=1), lambda q: q.get(timeout=1), lambda q: q.put_many([1]),
    lambda q: q.get_many(), lambda q: q.put_many_nowait([1]), lambda q: q.get_many_nowait(),
    lambda q: q.put_many([]),
], ids=["put", "get", "put_nowait", "get_nowait", "put_timeout", "get_timeout", "put_many",
        "get_many", "put_many_nowait", "get_many_nowait", "put_many_empty"])
def test_put_and_get_after_close_raise_value_error(call):
    q = Queue()
    q.put("left")
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        call(q)


def test_close_twice_is_harmless():
    q = Queue()
    q.close()
    q.close()
    q.join_thread()


def test_close_keeps_items_already_put_for_other_handles():
    # close() ends *this handle's* use of the queue; the messages it put stay
    # in the shared queue for any other handle (a child, or here one made by
    # the start-time pickling path), which can still put and get.
    q = Queue(capacity=CAP)
    other = another_handle(q)
    q.put_many(["a", "b"])
    q.put("c")
    q.close()
    q.join_thread()
    assert other.qsize() == 3
    assert get_all(other, 3) == ["a", "b", "c"]
    other.put("d")
    assert other.get() == "d"


def test_close_still_flushes_buffered_items_and_join_thread_waits_for_it():
    q = Queue(capacity=CAP)
    other = another_handle(q)
    msgs = fill_past_ring(q, n=60)
    q.close()
    reader = Reader(other, len(msgs))
    reader.start()
    q.join_thread()  # returns once the feeder has put everything in the ring
    assert reader.result() == msgs
    with pytest.raises(queue.Empty):
        other.get_nowait()


def test_join_thread_blocks_until_the_buffer_is_flushed():
    q = Queue(capacity=CAP)
    other = another_handle(q)
    msgs = fill_past_ring(q, n=40)
    q.close()
    joined = threading.Event()
    t = threading.Thread(target=lambda: (q.join_thread(), joined.set()), daemon=True)
    t.start()
    assert not joined.wait(0.3), "join_thread() returned while messages were unflushed"
    assert get_all(other, len(msgs)) == msgs
    assert joined.wait(WAIT)
    t.join()


def test_dropping_a_producer_handle_does_not_lose_buffered_items():
    q = Queue(capacity=CAP)
    other = another_handle(q)
    msgs = fill_past_ring(q, n=40)
    del q
    gc.collect()
    assert get_all(other, len(msgs)) == msgs


def test_join_thread_before_close_raises_assertion_error():
    q = Queue()
    with pytest.raises(AssertionError):
        q.join_thread()
    q.put(1)
    with pytest.raises(AssertionError):
        q.join_thread()
    assert q.get() == 1


def test_join_thread_after_close_without_feeder_returns():
    q = Queue()
    q.put(1)  # into the ring directly: no feeder thread
    q.close()
    assert elapsed(q.join_thread) < 1.0


def test_cancel_join_thread_makes_join_thread_return_at_once():
    q = Queue(capacity=CAP)
    other = another_handle(q)
    msgs = fill_past_ring(q, n=40)
    q.cancel_join_thread()
    q.close()
    assert elapsed(q.join_thread) < 1.0
    # The feeder keeps flushing as long as this process lives.
    assert get_all(other, len(msgs)) == msgs


def test_cancel_join_thread_before_any_put():
    q = Queue(capacity=CAP)
    q.cancel_join_thread()
    msgs = fill_past_ring(q, n=40)
    assert get_all(q, len(msgs)) == msgs
    q.close()
    assert elapsed(q.join_thread) < 1.0


# --------------------------------------------------------------------------- [compat 5] pickling


@pytest.mark.parametrize("dump", [
    *[(lambda p: lambda q: pickle.dumps(q, protocol=p))(p) for p in range(pickle.HIGHEST_PROTOCOL + 1)],
    ForkingPickler.dumps, copy.copy, copy.deepcopy,
], ids=[*[f"pickle-protocol-{p}" for p in range(pickle.HIGHEST_PROTOCOL + 1)],
        "ForkingPickler", "copy", "deepcopy"])
def test_pickling_outside_process_start_raises_runtime_error(dump):
    q = Queue()
    with pytest.raises(RuntimeError, match="should only be shared between processes through inheritance"):
        dump(q)
    q.put(1)  # the queue is unharmed
    assert q.get() == 1


def test_pickling_during_process_start_gives_a_working_handle():
    q = Queue(2, capacity=CAP)
    other = another_handle(q)
    assert type(other) is Queue
    q.put("from q")
    other.put("from other")
    assert other.full() and q.full() and other.qsize() == 2
    with pytest.raises(queue.Full):
        other.put_nowait("over maxsize")  # maxsize travelled with it
    assert other.get() == "from q"
    assert q.get() == "from other"


# --------------------------------------------------------------------------- [compat 6] Queue[int]


def test_class_getitem():
    alias = Queue[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is Queue
    assert alias.__args__ == (int,)
    q = Queue[int](2)
    assert type(q) is Queue
    q.put(5)
    assert q.get() == 5


# --------------------------------------------------------------------------- [compat 7] put_many / get_many


def test_put_many_get_many_roundtrip_in_order():
    q = Queue()
    q.put_many(range(100))
    q.put_many_nowait(["x", b"y"])
    assert q.qsize() == 102
    assert q.get_many() == list(range(100)) + ["x", b"y"]
    q.put_many((i for i in range(5)))  # any iterable
    assert q.get_many_nowait() == [0, 1, 2, 3, 4]


def test_get_many_respects_max_messages_to_get():
    q = Queue()
    q.put_many(range(10))
    assert q.get_many(max_messages_to_get=3) == [0, 1, 2]
    assert q.get_many(timeout=1, max_messages_to_get=1) == [3]
    assert q.get_many_nowait(max_messages_to_get=4) == [4, 5, 6, 7]
    assert q.get_many(max_messages_to_get=100) == [8, 9]
    assert q.qsize() == 0


def test_get_many_returns_what_is_there_without_waiting_for_more():
    q = Queue()
    q.put(1)
    start = time.monotonic()
    assert q.get_many(timeout=5, max_messages_to_get=10) == [1]
    assert time.monotonic() - start < 1.0


def test_get_many_on_empty_queue_raises_empty():
    q = Queue()
    with pytest.raises(queue.Empty):
        q.get_many_nowait()
    with pytest.raises(queue.Empty):
        q.get_many(block=False)


def test_put_many_empty_batch_is_a_no_op():
    q = Queue(1)
    q.put(0)
    q.put_many([], block=False)  # full queue, but nothing to put
    assert q.qsize() == 1


def test_put_many_is_all_or_nothing_against_maxsize():
    q = Queue(4)
    q.put_many(["a", "b"])
    with pytest.raises(queue.Full):
        q.put_many_nowait([1, 2, 3])
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put_many([1, 2, 3], timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 2.0
    assert q.qsize() == 2  # none of the three went in
    q.put_many([1, 2])  # exactly fills it
    assert q.full()
    assert q.get_many() == ["a", "b", 1, 2]


def test_put_many_larger_than_maxsize_raises_value_error_at_once():
    q = Queue(3)
    q.put("kept")
    start = time.monotonic()
    with pytest.raises(ValueError):
        q.put_many([1, 2, 3, 4])  # block=True, no timeout: must not hang
    assert time.monotonic() - start < 1.0
    assert q.qsize() == 1
    assert q.get_many() == ["kept"]


def test_put_many_larger_than_the_ring_raises_value_error_at_once():
    q = Queue(capacity=CAP)
    q.put(b"kept")
    batch = [bytes(600), bytes(600)]  # each fits, together they never can
    start = time.monotonic()
    with pytest.raises(ValueError):
        q.put_many(batch)
    assert time.monotonic() - start < 1.0
    assert q.qsize() == 1
    assert q.get_many() == [b"kept"]
    # A single message larger than the ring is not a batch problem: it streams.
    reader = Reader(q, 1)
    reader.start()
    q.put_many([bytes(3 * CAP)])
    assert reader.result() == [bytes(3 * CAP)]


def test_put_many_larger_than_the_ring_raises_value_error_even_while_buffering():
    q = Queue(capacity=CAP)
    msgs = fill_past_ring(q, n=20)
    try:
        with pytest.raises(ValueError):
            q.put_many([bytes(600), bytes(600)])
        assert q.qsize() == 20
    finally:
        leftovers = get_all(q, q.qsize())
    assert leftovers == msgs


def test_put_many_that_fits_maxsize_but_not_the_free_ring_is_buffered_whole():
    q = Queue(50, capacity=CAP)
    first = [blob(i, 300) for i in range(3)]  # fills most of the ring
    q.put_many_nowait(first)
    batch = [blob(100 + i, 300) for i in range(3)]
    q.put_many_nowait(batch)  # no room now: must not raise Full (maxsize allows it)
    assert q.qsize() == 6
    got = []
    while len(got) < 6:
        got += q.get_many(timeout=WAIT)
    assert got == first + batch


def test_get_many_stops_before_a_streamed_message_and_order_is_kept():
    q = Queue(capacity=CAP)
    big = blob(7, 4 * CAP)
    q.put("a")
    q.put("b")
    q.put(big)  # no reader: buffered, then streamed by the feeder
    q.put("c")
    got = []
    while len(got) < 4:
        got += q.get_many(timeout=WAIT)
    assert got == ["a", "b", big, "c"]


# --------------------------------------------------------------------------- constructor errors


@pytest.mark.parametrize("maxsize", ["3", 3.0, None, b"3"])
def test_maxsize_of_wrong_type_raises_type_error(maxsize):
    with pytest.raises(TypeError):
        Queue(maxsize)


@pytest.mark.parametrize("capacity", ["1024", 1024.0, None])
def test_capacity_of_wrong_type_raises_type_error(capacity):
    with pytest.raises(TypeError):
        Queue(capacity=capacity)


@pytest.mark.parametrize("capacity", [-1, 0, 1, 63])
def test_capacity_too_small_raises_value_error(capacity):
    with pytest.raises(ValueError, match="capacity"):
        Queue(capacity=capacity)


def test_smallest_ring_still_carries_every_size():
    q = Queue(capacity=64)
    msgs = [blob(i, s) for i, s in enumerate([0, 1, 40, 48, 49, 64, 200, 5000])]
    reader = Reader(q, len(msgs))
    reader.start()
    for m in msgs:
        q.put(m)
    assert reader.result() == msgs


def test_capacity_is_not_positional():
    with pytest.raises(TypeError):
        Queue(0, 4096)


# --------------------------------------------------------------------------- payloads


class _BadOnLoad:
    """Pickles fine; unpickling raises."""

    def __reduce__(self):
        return (_raise_on_load, ("corrupt",))


def _raise_on_load(msg):
    raise RuntimeError(msg)


@pytest.mark.parametrize("bad", [
    lambda: (lambda: None),
    lambda: threading.Lock(),
    lambda: (i for i in range(3)),
    lambda: [1, 2, threading.Lock()],
    lambda: (pytest.importorskip("numpy").arange(10.0), threading.Lock()),
], ids=["lambda", "lock", "generator", "lock-in-list", "array-then-lock"])
@pytest.mark.parametrize("buffering", [False, True], ids=["ring", "buffering"])
def test_unpicklable_object_raises_in_put_and_leaves_queue_unchanged(bad, buffering):
    q = Queue(capacity=CAP)
    before = fill_past_ring(q, n=20) if buffering else [b"before"]
    if not buffering:
        q.put(before[0])
    obj = bad()
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        q.put(obj)
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        q.put_many(["in batch", obj, "after"])
    assert q.qsize() == len(before)
    q.put("next")
    q.put_many(["n1", "n2"])
    assert get_all(q, len(before) + 3) == before + ["next", "n1", "n2"]
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_failed_pickle_does_not_corrupt_later_messages():
    np = pytest.importorskip("numpy")
    q = Queue()
    arr = np.arange(100.0)
    with pytest.raises(TypeError):
        q.put([arr, threading.Lock()])  # fails after an out-of-band buffer was taken
    q.put(arr)
    q.put({"plain": 1})
    back = q.get()
    assert np.array_equal(back, arr)
    assert q.get() == {"plain": 1}


def test_unpickling_failure_is_raised_by_get_and_only_that_message_is_lost():
    q = Queue()
    q.put("before")
    q.put(_BadOnLoad())
    q.put("after")
    assert q.get() == "before"
    with pytest.raises(RuntimeError, match="corrupt"):
        q.get()
    assert q.qsize() == 1
    assert q.get() == "after"
    q.put("still works")
    assert q.get_nowait() == "still works"


def test_unpickling_failure_in_get_many_is_raised_and_the_queue_stays_usable():
    # (Which other messages of that batch are lost is not specified: see the
    # report; only that the error reaches the caller and nothing hangs.)
    q = Queue()
    q.put_many(["a", _BadOnLoad(), "c"])
    with pytest.raises(RuntimeError, match="corrupt"):
        q.get_many()
    q.put("d")
    rest = q.get_many(timeout=WAIT)
    assert rest[-1] == "d"


class BytesSub(bytes):
    pass


def test_bytes_come_back_as_exact_type():
    q = Queue()
    q.put(b"abc")
    q.put(BytesSub(b"sub"))
    q.put(bytearray(b"mutable"))
    a, s, ba = get_all(q, 3)
    assert type(a) is bytes and a == b"abc"
    assert type(s) is BytesSub and s == b"sub"
    assert type(ba) is bytearray and ba == b"mutable"
    ba[0] = 0  # a fresh, writable copy


def test_memoryview_is_rejected_as_by_pickle():
    q = Queue()
    with pytest.raises(TypeError):
        q.put(memoryview(b"abc"))
    assert q.empty()


SIZES = [0, 1, 7, 8, 9, 100, CAP // 2, CAP - 24, CAP - 17, CAP - 16, CAP - 15, CAP - 8, CAP,
         CAP + 1, 3 * CAP + 5, 10 * CAP]


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "pickled"])
def test_messages_of_many_sizes_with_a_reader_thread(kind):
    q = Queue(capacity=CAP)
    make = {"bytes": lambda i, s: blob(i, s),
            "bytearray": lambda i, s: bytearray(blob(i, s)),
            "pickled": lambda i, s: (i, blob(i, s))}[kind]
    msgs = [make(i, s) for i, s in enumerate(SIZES)]
    reader = Reader(q, len(msgs))
    reader.start()
    for m in msgs:
        q.put(m, timeout=WAIT)
    got = reader.result()
    assert got == msgs
    assert [type(g) for g in got] == [type(m) for m in msgs]


def test_messages_of_many_sizes_without_a_reader():
    # Unbounded: the feeder thread streams what does not fit, once get() runs.
    q = Queue(capacity=CAP)
    msgs = [blob(i, s) for i, s in enumerate(SIZES)]
    for m in msgs:
        q.put_nowait(m)
    assert get_all(q, len(msgs)) == msgs


def test_message_exactly_filling_the_ring():
    q = Queue(capacity=CAP)
    exact = blob(1, CAP - 16)  # header + body == capacity
    q.put_nowait(exact)
    assert q.get_nowait() == exact  # went straight into the ring
    for _ in range(3):  # again, from other ring offsets
        q.put(b"x" * 5)
        q.put_nowait(exact)
        assert q.get_nowait() == b"x" * 5
        assert q.get(timeout=WAIT) == exact


def test_messages_several_times_the_ring_with_a_reader_thread():
    q = Queue(capacity=4096)
    msgs = [blob(i, s) for i, s in enumerate([3 * 4096 + 5, 1, 10 * 4096, 0, 64 * 4096 + 3, 4096])]
    reader = Reader(q, len(msgs))
    reader.start()
    for m in msgs:
        q.put(m)
    assert reader.result() == msgs


def test_bounded_queue_streams_big_messages_with_a_reader_thread():
    q = Queue(2, capacity=CAP)
    msgs = [(i, blob(i, (i % 5) * CAP + i)) for i in range(30)]
    reader = Reader(q, len(msgs))
    reader.start()
    for m in msgs:
        q.put(m, timeout=WAIT)
    assert reader.result() == msgs


def test_wrap_around_many_messages_through_a_small_ring():
    q = Queue(capacity=256)
    rnd = random.Random(0)
    expected = deque()
    counter = 0
    for step in range(6000):
        if len(expected) < 3 and rnd.random() < 0.6 or not expected:
            size = rnd.choice([0, 1, 3, 8, 13, 40, 77, 100])
            m = counter.to_bytes(4, "little") + blob(counter, size)
            counter += 1
            q.put_nowait(m)
            expected.append(m)
        else:
            assert q.get(timeout=WAIT) == expected.popleft()
    while expected:
        assert q.get(timeout=WAIT) == expected.popleft()
    assert counter > 2000
    assert q._ring.used_bytes == 0 and q.empty()


def test_wrap_around_batches_through_a_small_ring():
    q = Queue(capacity=512)
    sent = []
    got = []
    for i in range(2000):
        batch = [(i, j, blob(i * 10 + j, j * 9)) for j in range(i % 4 + 1)]
        q.put_many(batch)
        sent += batch
        if i % 3 == 2:
            while len(got) < len(sent):
                got += q.get_many(timeout=WAIT, max_messages_to_get=5)
    while len(got) < len(sent):
        got += q.get_many(timeout=WAIT)
    assert got == sent


# --------------------------------------------------------------------------- NumPy


def _arrays(np):
    return [
        np.arange(12.0).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        np.arange(20)[::3],                       # not contiguous
        np.array(5.5),                            # 0-d
        np.zeros((0, 3)),                         # empty
        np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "i4"), ("b", "f8")]),
        np.array([1, "a", None], dtype=object),
        np.arange(7, dtype=np.uint8),             # odd byte count: padding
        np.arange(3, dtype=np.complex128) * 1j,
        np.ones(3 * CAP // 8),                    # larger than the ring
    ]


def _same_array(a, b):
    import numpy as np
    assert type(b) is type(a)
    assert b.dtype == a.dtype and b.shape == a.shape
    if a.dtype == object:
        assert a.tolist() == b.tolist()
    else:
        assert np.array_equal(a, b)


def test_numpy_arrays_come_back_equal_and_writable():
    np = pytest.importorskip("numpy")
    q = Queue(capacity=CAP)
    arrays = _arrays(np)
    reader = Reader(q, len(arrays) + 1)
    reader.start()
    for a in arrays:
        q.put(a)
    q.put(arrays)  # several arrays in one message
    got = reader.result()
    for a, b in zip(arrays + [None], got):
        if a is None:
            for x, y in zip(arrays, b):
                _same_array(x, y)
            continue
        _same_array(a, b)
        assert b.flags.writeable
        b[...] = b  # writable in practice too
        assert not np.shares_memory(a, b)
    # Arrays that arrived in one message do not overlap each other.
    many = got[-1]
    many[0][...] = -1
    assert np.array_equal(many[1], arrays[1])


def test_read_only_numpy_array_comes_back_writable():
    np = pytest.importorskip("numpy")
    q = Queue()
    a = np.arange(5.0)
    a.flags.writeable = False
    q.put(a)
    b = q.get()
    assert np.array_equal(a, b)
    assert b.flags.writeable


def test_numpy_array_from_bytes_comes_back_equal():
    np = pytest.importorskip("numpy")
    q = Queue()
    a = np.frombuffer(b"\x01\x02\x03\x04" * 4, dtype=np.int32)
    q.put(a)
    assert np.array_equal(q.get(), a)


@pytest.mark.parametrize("path", ["ring", "buffered", "streamed"])
def test_message_is_a_snapshot_taken_by_put(path):
    np = pytest.importorskip("numpy")
    q = Queue(capacity=CAP)
    if path == "buffered":
        q.put_nowait(bytes(CAP - 16))  # the ring is full: the next put is buffered
    n = 3 * CAP // 8 if path == "streamed" else 50
    a = np.arange(n, dtype=np.float64)
    original = a.copy()
    q.put_nowait(a)
    a[:] = -1  # after put returned
    if path == "buffered":
        assert q.get(timeout=WAIT) == bytes(CAP - 16)
    assert np.array_equal(q.get(timeout=WAIT), original)


# --------------------------------------------------------------------------- threads


def _run_threads(q, n_producers, n_consumers, per_producer, make, use_many=False):
    received = [[] for _ in range(n_consumers)]
    errors = []
    start = threading.Barrier(n_producers + n_consumers)

    def produce(p):
        try:
            start.wait()
            msgs = [make(p, i) for i in range(per_producer)]
            if use_many:
                for k in range(0, per_producer, 7):
                    q.put_many(msgs[k:k + 7], timeout=WAIT)
            else:
                for m in msgs:
                    q.put(m, timeout=WAIT)
        except BaseException as e:
            errors.append(e)

    def consume(c):
        try:
            start.wait()
            while True:
                batch = q.get_many(timeout=WAIT, max_messages_to_get=5) if use_many \
                    else [q.get(timeout=WAIT)]
                for k, m in enumerate(batch):
                    if m is None:
                        # Stop markers come after all data; hand the other
                        # markers this batch took to the other consumers.
                        assert all(x is None for x in batch[k:])
                        for _ in batch[k + 1:]:
                            q.put(None)
                        return
                    received[c].append(m)
        except BaseException as e:
            errors.append(e)

    producers = [threading.Thread(target=produce, args=(p,), daemon=True) for p in range(n_producers)]
    consumers = [threading.Thread(target=consume, args=(c,), daemon=True) for c in range(n_consumers)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join(WAIT * 3)
    for _ in range(n_consumers):
        q.put(None)  # one stop marker each
    for t in consumers:
        t.join(WAIT * 3)
    assert not errors, errors
    assert not any(t.is_alive() for t in producers + consumers)
    return received


def _check_exactly_once(received, n_producers, per_producer, make):
    seen = sorted((m[0], m[1]) for r in received for m in r)
    assert seen == [(p, i) for p in range(n_producers) for i in range(per_producer)]
    for r in received:
        for m in r:
            assert m == make(m[0], m[1])  # content intact
        for p in range(n_producers):  # each producer's messages in order
            order = [m[1] for m in r if m[0] == p]
            assert order == sorted(order)


@pytest.mark.parametrize("maxsize,capacity,sizes", [
    (0, 1 << 16, [0, 10, 200]),
    (8, 4096, [0, 10, 1000]),
    (0, CAP, [0, 50, CAP - 16, 3 * CAP]),
    (5, CAP, [0, 50, 2 * CAP]),
], ids=["unbounded", "bounded", "unbounded-streams", "bounded-streams"])
def test_threads_put_and_get_concurrently_exactly_once(maxsize, capacity, sizes):
    def make(p, i):
        return (p, i, blob(p * 100_000 + i, sizes[(p + i) % len(sizes)]))

    q = Queue(maxsize, capacity=capacity)
    received = _run_threads(q, 3, 3, 400, make)
    _check_exactly_once(received, 3, 400, make)


def test_threads_put_many_get_many_concurrently_exactly_once():
    def make(p, i):
        return (p, i, blob(p * 100_000 + i, (i * 37) % 300))

    q = Queue(16, capacity=4096)
    received = _run_threads(q, 3, 3, 700, make, use_many=True)
    _check_exactly_once(received, 3, 700, make)


# --------------------------------------------------------------------------- model-based (hypothesis)

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # only the model test needs it
    st = None

if st is not None:
    _sizes = st.sampled_from([0, 1, 8, 30, 100, 200, 240, 300, 700])
    _ops = st.one_of(
        st.tuples(st.just("put"), _sizes),
        st.tuples(st.just("put_many"), st.lists(_sizes, min_size=0, max_size=4)),
        st.tuples(st.just("get"), st.just(None)),
        st.tuples(st.just("get_many"), st.integers(1, 4)),
    )

    def _model_examples(fn):
        fn = given(maxsize=st.sampled_from([0, 1, 3, 6]), ops=st.lists(_ops, max_size=30))(fn)
        fn = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])(fn)
        return pytest.mark.timeout(60)(fn)
else:
    _model_examples = pytest.mark.skip(reason="hypothesis is not installed")


@_model_examples
def test_behaves_like_a_bounded_fifo(maxsize, ops):
    """Against a deque: nowait puts raise Full exactly when maxsize is reached,
    ValueError when a batch can never fit, and everything comes out in order
    (messages larger than the 256-byte ring included)."""
    capacity = 256
    q = Queue(maxsize, capacity=capacity)
    model = deque()
    ids = itertools.count()

    def message(size):
        i = next(ids)
        return i.to_bytes(4, "little") + blob(i, size)

    try:
        for op, arg in ops:
            if op == "put":
                m = message(arg)
                if maxsize and len(model) >= maxsize:
                    with pytest.raises(queue.Full):
                        q.put_nowait(m)
                else:
                    q.put_nowait(m)
                    model.append(m)
            elif op == "put_many":
                batch = [message(s) for s in arg]
                too_many = maxsize and len(batch) > maxsize
                too_big = len(batch) > 1 and sum(record_bytes(len(m)) for m in batch) > capacity
                if not batch:
                    q.put_many_nowait(batch)
                elif too_many or too_big:
                    with pytest.raises(ValueError):
                        q.put_many_nowait(batch)
                elif maxsize and len(model) + len(batch) > maxsize:
                    with pytest.raises(queue.Full):
                        q.put_many_nowait(batch)
                else:
                    q.put_many_nowait(batch)
                    model.extend(batch)
            elif op == "get":
                if model:
                    assert q.get(timeout=WAIT) == model.popleft()
                else:
                    with pytest.raises(queue.Empty):
                        q.get_nowait()
            else:
                if model:
                    got = q.get_many(timeout=WAIT, max_messages_to_get=arg)
                    assert 1 <= len(got) <= arg
                    assert got == [model.popleft() for _ in got]
                else:
                    with pytest.raises(queue.Empty):
                        q.get_many_nowait(max_messages_to_get=arg)
    finally:
        rest = [q.get(timeout=WAIT) for _ in range(len(model))]
    assert rest == list(model)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert q.qsize() == 0
