"""fastmp._float_channel.FloatChannel: API, errors, claims, dead peers, Ctrl-C,
pickling, streams between processes under every start method, latest mode.

Deterministic: children hand over with Events and channels; timeouts only
guard against hangs.  Child targets live at module level (spawn pickles them).
"""
import array
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time

import pytest
from conftest import assert_ctrl_c_interrupts_promptly, assert_spins_freely

from fastmp._float_channel import FloatChannel

pytestmark = pytest.mark.timeout(60)

FORK = multiprocessing.get_context("fork")
#: Safety net for every wait that should end at once.
PATIENCE = 30


def _wait(event):
    assert event.wait(PATIENCE), "the other process never got there"


def _catch(func, *args, **kwargs):
    """func's exception (or None), from another thread."""
    box = []

    def run():
        try:
            func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box.append(exc)
        else:
            box.append(None)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(PATIENCE)
    assert not thread.is_alive()
    return box[0]


# -- construction ------------------------------------------------------------------

def test_defaults_and_properties():
    ch = FloatChannel()
    assert ch.capacity == 4096 and not ch.latest and not ch.closed
    assert ch.qsize() == 0 and ch.empty() and not ch.full()
    assert repr(ch) == "<fastmp.FloatChannel capacity=4096>"
    latest = FloatChannel(latest=True)
    assert latest.capacity == 1 and latest.latest
    assert "latest=True" in repr(latest)


@pytest.mark.parametrize("capacity", [1, 3, 4096, 5000])
def test_any_capacity_holds_exactly_that_many(capacity):
    ch = FloatChannel(capacity)
    assert ch.capacity == capacity
    assert ch.send_many(array.array("d", range(capacity))) == capacity
    assert ch.full() and ch.qsize() == capacity
    with pytest.raises(queue.Full):
        ch.send(0.5, block=False)
    assert ch.recv_many(capacity + 10) == array.array("d", range(capacity))


@pytest.mark.parametrize("capacity", [0, -1, -4096])
def test_capacity_below_one_is_refused(capacity):
    with pytest.raises(ValueError, match="capacity must be at least 1 float"):
        FloatChannel(capacity)


def test_capacity_too_large_is_refused():
    with pytest.raises(ValueError, match="capacity must be at most"):
        FloatChannel((1 << 30) + 1)


@pytest.mark.parametrize("capacity", [4.0, "8", None, True, [8]])
def test_capacity_of_wrong_type_is_refused(capacity):
    with pytest.raises(TypeError, match="capacity must be an int"):
        FloatChannel(capacity)


# -- one float at a time ------------------------------------------------------------

class _Celsius:
    def __float__(self):
        return 21.5


def test_send_recv_keeps_order_and_converts_numbers():
    ch = FloatChannel(8)
    for x in (1.5, -0.0, 7, True, _Celsius(), float("inf"), 2 ** 70):
        ch.send(x)
    got = [ch.recv() for _ in range(7)]
    assert got == [1.5, -0.0, 7.0, 1.0, 21.5, float("inf"), float(2 ** 70)]
    assert all(type(x) is float for x in got)
    ch.send(float("nan"))
    value = ch.recv()
    assert value != value             # NaN travels as NaN


@pytest.mark.parametrize("bad", ["1.0", None, 1 + 2j, b"1", [1.0]])
def test_send_of_a_non_number_raises_type_error(bad):
    ch = FloatChannel(4)
    with pytest.raises(TypeError, match="needs a real number, not"):
        ch.send(bad)
    assert ch.qsize() == 0


def test_full_and_empty_without_blocking_and_with_timeouts():
    ch = FloatChannel(2)
    with pytest.raises(queue.Empty):
        ch.recv(block=False)
    with pytest.raises(queue.Empty):
        ch.recv(timeout=0)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        ch.recv(timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 1.0
    ch.send(1.0)
    ch.send(2.0)
    assert ch.full() and ch.qsize() == 2
    with pytest.raises(queue.Full):
        ch.send(3.0, block=False)
    with pytest.raises(queue.Full):
        ch.send(3.0, True, -1)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        ch.send(3.0, timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 1.0
    assert ch.recv() == 1.0 and ch.recv() == 2.0 and ch.empty()


def test_bad_timeouts_are_refused():
    ch = FloatChannel(2)
    ch.send(1.0)
    with pytest.raises(TypeError, match="timeout must be a number"):
        ch.recv(timeout="soon")
    with pytest.raises(ValueError, match="NaN"):
        ch.send(2.0, timeout=float("nan"))
    assert ch.recv() == 1.0


def test_wrap_around_keeps_every_value_in_order():
    ch = FloatChannel(5)          # 8 slots, 5 usable: positions wrap at odd places
    expected = 0
    sent = 0
    sizes = [1, 2, 3, 5, 4, 1, 5, 2]
    for round_ in range(400):
        k = sizes[round_ % len(sizes)]
        if round_ % 3 == 0:
            for i in range(k):
                ch.send(sent + i)
        else:
            assert ch.send_many(array.array("d", range(sent, sent + k))) == k
        sent += k
        while expected < sent:
            if round_ % 2:
                got = ch.recv_many(3)
                assert list(got) == list(range(expected, expected + len(got)))
                expected += len(got)
            else:
                assert ch.recv() == expected
                expected += 1
    assert ch.empty()


# -- many floats -------------------------------------------------------------------

def _generated(n):
    for i in range(n):
        yield i * 0.5


@pytest.mark.parametrize("make", [
    lambda: array.array("d", [0.0, 0.5, 1.0, 1.5]),
    lambda: memoryview(array.array("d", [0.0, 0.5, 1.0, 1.5])),
    lambda: memoryview(bytearray(array.array("d", [0.0, 0.5, 1.0, 1.5]).tobytes())).cast("d"),
    lambda: [0, 0.5, 1, 1.5],
    lambda: (0.0, 0.5, 1.0, 1.5),
    lambda: _generated(4),
    # strided: not a contiguous buffer, so iterated
    lambda: memoryview(array.array("d", [0.0, 9, 0.5, 9, 1.0, 9, 1.5, 9]))[::2],
], ids=["array", "memoryview", "cast", "list", "tuple", "generator", "strided"])
def test_send_many_accepts_buffers_and_iterables(make):
    ch = FloatChannel(16)
    assert ch.send_many(make()) == 4
    assert ch.recv_many(16) == array.array("d", [0.0, 0.5, 1.0, 1.5])


def test_send_many_of_nothing_sends_nothing():
    ch = FloatChannel(4)
    assert ch.send_many([]) == 0
    assert ch.send_many(array.array("d")) == 0
    assert ch.empty()


@pytest.mark.parametrize("values", [array.array("f", [1.0]), array.array("q", [1]), b"12345678",
                                    bytearray(8)], ids=["float32", "int64", "bytes", "bytearray"])
def test_send_many_refuses_buffers_that_are_not_float64(values):
    ch = FloatChannel(4)
    with pytest.raises(TypeError, match="needs float64 data"):
        ch.send_many(values)
    assert ch.empty()


def test_send_many_with_a_bad_element_sends_nothing():
    ch = FloatChannel(8)
    with pytest.raises(TypeError, match="iterable of real numbers"):
        ch.send_many([1.0, 2.0, "three"])
    with pytest.raises(TypeError, match="iterable of real numbers"):
        ch.send_many(42)
    assert ch.empty()


def test_recv_many_with_a_count_returns_what_is_there_up_to_n():
    ch = FloatChannel(16)
    ch.send_many(range(10))
    first = ch.recv_many(4)
    assert isinstance(first, array.array) and first.typecode == "d"
    assert list(first) == [0, 1, 2, 3]
    assert list(ch.recv_many(100)) == [4, 5, 6, 7, 8, 9]
    with pytest.raises(queue.Empty):
        ch.recv_many(5, block=False)
    with pytest.raises(queue.Empty):
        ch.recv_many(5, timeout=0.01)


@pytest.mark.parametrize("make", [
    lambda n: array.array("d", bytes(8 * n)),
    lambda n: memoryview(array.array("d", bytes(8 * n))),
    lambda n: memoryview(bytearray(8 * n)).cast("d"),
], ids=["array", "memoryview", "cast"])
def test_recv_many_fills_a_buffer_and_returns_the_count(make):
    ch = FloatChannel(16)
    ch.send_many([1.5, 2.5, 3.5])
    out = make(5)
    assert ch.recv_many(out) == 3
    assert list(out) == [1.5, 2.5, 3.5, 0.0, 0.0]
    ch.send_many(range(8))
    out = make(5)
    assert ch.recv_many(out) == 5
    assert list(out) == [0, 1, 2, 3, 4]
    assert ch.qsize() == 3


@pytest.mark.parametrize("bad, error, match", [
    (0, ValueError, "n >= 1"),
    (-3, ValueError, "n >= 1"),
    (2.0, TypeError, "number of floats or a writable float64 buffer"),
    ("4", TypeError, "number of floats or a writable float64 buffer"),
    (None, TypeError, "number of floats or a writable float64 buffer"),
    (b"\0" * 16, TypeError, "writable, C-contiguous float64 buffer"),
    (array.array("f", [0.0] * 4), TypeError, "float64 buffer"),
    (array.array("d"), ValueError, "room for at least one float"),
    (memoryview(array.array("d", [0.0] * 8))[::2], TypeError, "C-contiguous"),
])
def test_recv_many_refuses_bad_arguments_and_takes_nothing(bad, error, match):
    ch = FloatChannel(4)
    ch.send(1.0)
    with pytest.raises(error, match=match):
        ch.recv_many(bad)
    assert ch.recv() == 1.0


def test_numpy_arrays_go_in_and_come_out():
    np = pytest.importorskip("numpy")
    ch = FloatChannel(64)
    ch.send_many(np.arange(10, dtype=np.float64))
    ch.send_many(np.arange(6, dtype=np.float64).reshape(2, 3) + 100)   # C-contiguous 2-D
    ch.send_many(np.arange(8, dtype=np.float64)[::2] + 200)            # strided: iterated
    with pytest.raises(TypeError, match="iterable of real numbers"):
        ch.send_many(np.asfortranarray(np.ones((2, 2))))   # iterates rows: not numbers
    out = np.zeros(30)
    assert ch.recv_many(out) == 20
    assert out[:20].tolist() == (list(range(10)) + [100, 101, 102, 103, 104, 105]
                                 + [200, 202, 204, 206])
    with pytest.raises(TypeError, match="needs float64 data"):
        ch.send_many(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float64 buffer"):
        ch.recv_many(np.zeros(3, dtype=np.float32))
    ch.send(5.0)
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        ch.recv_many(readonly)
    assert ch.recv_many(np.int64(3)) == array.array("d", [5.0])   # a NumPy int is a count


def test_send_many_gives_up_part_way_saying_how_many_went():
    ch = FloatChannel(4)
    with pytest.raises(queue.Full, match="sent 4 of 10 floats") as info:
        ch.send_many(range(10), block=False)
    assert info.value.sent == 4
    assert list(ch.recv_many(10)) == [0, 1, 2, 3]
    ch.send(-1.0)
    started = time.monotonic()
    with pytest.raises(queue.Full) as info:
        ch.send_many(array.array("d", range(10)), timeout=0.05)
    assert time.monotonic() - started >= 0.05
    assert info.value.sent == 3
    assert list(ch.recv_many(10)) == [-1, 0, 1, 2]


def test_send_many_blocks_until_a_reader_has_taken_everything():
    ch = FloatChannel(16)
    n = 100_000
    failure = []

    def write():
        try:
            assert ch.send_many(array.array("d", range(n))) == n
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    received = array.array("d")
    out = array.array("d", bytes(8 * 7))
    while len(received) < n:
        if len(received) % 2:
            received.append(ch.recv(timeout=PATIENCE))
        else:
            k = ch.recv_many(out, timeout=PATIENCE)
            received.extend(out[:k])
    writer.join(PATIENCE)
    assert not failure
    assert received == array.array("d", range(n))
    assert ch.empty()


def test_recv_many_blocks_for_the_first_float_then_takes_the_batch():
    ch = FloatChannel(16)
    result = []
    reader = threading.Thread(target=lambda: result.append(ch.recv_many(100, timeout=PATIENCE)))
    reader.start()
    ch.send_many([1, 2, 3, 4, 5])       # one publication: all five at once
    reader.join(PATIENCE)
    assert result == [array.array("d", [1, 2, 3, 4, 5])]


def test_waiting_releases_the_gil():
    ch = FloatChannel(4)
    waiter = threading.Thread(target=ch.recv, kwargs={"timeout": PATIENCE})
    waiter.start()
    assert_spins_freely()
    threading.Thread(target=ch.send, args=(1.0,)).run()
    waiter.join(PATIENCE)
    assert not waiter.is_alive()


# -- one writer, one reader ------------------------------------------------------------

def test_a_second_writer_thread_is_refused_naming_the_holder():
    ch = FloatChannel(8)
    ch.send(1.0)
    error = _catch(ch.send, 2.0)
    assert isinstance(error, RuntimeError)
    text = str(error)
    assert f"writer is process {os.getpid()}, thread {threading.get_native_id()}" in text
    assert "one writer and one reader" in text
    assert isinstance(_catch(ch.send_many, [2.0]), RuntimeError)
    assert ch.qsize() == 1


def test_a_second_reader_thread_is_refused_naming_the_holder():
    ch = FloatChannel(8)
    ch.send_many([1.0, 2.0])
    assert ch.recv() == 1.0
    error = _catch(ch.recv)
    assert isinstance(error, RuntimeError)
    assert f"reader is process {os.getpid()}, thread {threading.get_native_id()}" in str(error)
    assert isinstance(_catch(ch.recv_many, 4), RuntimeError)
    assert ch.recv() == 2.0


def _catch_and_wait_for_thread_exit(func, *args):
    """Like _catch, and return only once the kernel thread is gone too (join()
    returns a little before it exits)."""
    tids = []

    def run():
        tids.append(threading.get_native_id())
        func(*args)

    assert _catch(run) is None
    deadline = time.monotonic() + PATIENCE
    while os.path.exists(f"/proc/self/task/{tids[0]}"):
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_claim_whose_thread_has_ended_is_taken_over():
    ch = FloatChannel(8)
    _catch_and_wait_for_thread_exit(ch.send, 1.0)   # that thread is the writer, then ends
    _catch_and_wait_for_thread_exit(ch.recv)        # and another one the reader
    ch.send(2.0)                                    # this thread takes both over
    assert ch.recv() == 2.0
    assert ch.empty()


def _try_to_send(ch, results):
    try:
        ch.send(1.0)
    except RuntimeError as exc:
        results.put(("refused", str(exc)))
    else:
        results.put(("sent", None))


def test_a_second_writer_process_is_refused(procs):
    ch = FloatChannel(8)
    ch.send(0.0)                                # the parent is the writer
    results = FORK.SimpleQueue()
    child = procs.start(FORK, _try_to_send, ch, results)
    outcome, text = results.get()
    procs.join(child)
    assert outcome == "refused"
    assert f"writer is process {os.getpid()}" in text
    assert ch.qsize() == 1


# -- close ------------------------------------------------------------------------------

def test_closed_handle_refuses_everything():
    ch = FloatChannel(8)
    ch.send(1.0)
    ch.close()
    ch.close()                                  # twice is fine
    assert ch.closed and "closed" in repr(ch)
    for call in (lambda: ch.send(1.0), ch.recv, lambda: ch.send_many([1.0]),
                 lambda: ch.recv_many(1), ch.qsize, ch.empty, ch.full,
                 lambda: pickle.dumps(ch)):
        with pytest.raises(ValueError, match="is closed"):
            call()
    assert ch.capacity == 8


def _send_close_and_wait(ch, values, closed, finish):
    ch.send_many(values)
    ch.close()
    closed.set()
    _wait(finish)


def test_writer_close_is_eof_after_the_values_already_sent(procs):
    ch = FloatChannel(8)
    closed, finish = FORK.Event(), FORK.Event()
    child = procs.start(FORK, _send_close_and_wait, ch, [1.0, 2.0, 3.0], closed, finish)
    _wait(closed)                               # the writer is alive, but closed
    assert list(ch.recv_many(2)) == [1.0, 2.0]
    assert ch.recv() == 3.0
    started = time.monotonic()
    with pytest.raises(EOFError):
        ch.recv(timeout=PATIENCE)
    with pytest.raises(EOFError):
        ch.recv_many(4, block=False)
    assert time.monotonic() - started < 1.0
    finish.set()
    procs.join(child)


def _recv_close_and_wait(ch, closed, finish):
    ch.recv()
    ch.close()
    closed.set()
    _wait(finish)


def test_reader_close_is_a_broken_pipe_for_the_writer(procs):
    ch = FloatChannel(8)
    closed, finish = FORK.Event(), FORK.Event()
    ch.send(1.0)
    child = procs.start(FORK, _recv_close_and_wait, ch, closed, finish)
    _wait(closed)
    with pytest.raises(BrokenPipeError):
        ch.send(2.0)                            # room, but nobody will read it
    with pytest.raises(BrokenPipeError) as info:
        ch.send_many([2.0, 3.0])
    assert info.value.sent == 0
    finish.set()
    procs.join(child)


def _send_then_drop(box, values, dropped, finish):
    ch = box.pop()          # the only reference left in this process
    ch.send_many(values)
    del ch
    gc.collect()
    dropped.set()
    _wait(finish)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])   # a fork child keeps the
def test_dropping_the_writers_last_handle_is_eof(method, procs):    # parent's references
    start_method = multiprocessing.get_context(method)
    ch = FloatChannel(8)
    dropped, finish = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _send_then_drop, [ch], [1.0, 2.0], dropped, finish)
    _wait(dropped)                              # alive, but its handle is gone
    assert list(ch.recv_many(8)) == [1.0, 2.0]
    with pytest.raises(EOFError):
        ch.recv(timeout=PATIENCE)
    finish.set()
    procs.join(child)


def _drop_inherited(box):
    box.pop()
    gc.collect()


def test_a_child_dropping_an_inherited_handle_leaves_the_parents_claim(procs):
    ch = FloatChannel(8)
    ch.send(1.0)                                # the parent is the writer
    procs.join(procs.start(FORK, _drop_inherited, [ch]))
    assert ch.recv() == 1.0
    with pytest.raises(queue.Empty):            # not EOF: the writer is still here
        ch.recv(timeout=0.01)
    assert isinstance(_catch(ch.send, 2.0), RuntimeError)


def test_no_descriptor_or_segment_outlives_the_channels(start_method, procs, leak_guard):
    ch = FloatChannel(64)
    results = start_method.SimpleQueue()
    child = procs.start(start_method, _stream_in, ch, 1000, results)
    ch.send_many(range(1000))
    assert results.get() == "ok"
    procs.join(child)
    results.close()
    del ch, child
    leak_guard.check()


# -- dead peers ---------------------------------------------------------------------------

def _send_then_hang(ch, values, ready, never):
    ch.send_many(values)
    ready.set()
    never.wait(PATIENCE)


def _recv_then_hang(ch, count, ready, never):
    for _ in range(count):
        ch.recv()
    ready.set()
    never.wait(PATIENCE)


def _sigkill(proc):
    """Kill without reaping: a fork or spawn child stays a zombie, as it
    would for a parent that has not joined it yet (a forkserver child is the
    forkserver's to reap)."""
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.001)
    raise AssertionError("the child did not die")


def test_dead_writer_is_eof_once_its_values_are_read(start_method, procs):
    ch = FloatChannel(8)
    ready, never = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _send_then_hang, ch, [1.0, 2.0], ready, never)
    _wait(ready)
    assert ch.recv() == 1.0
    _sigkill(child)
    # The values sent before the death are still delivered, then EOF.
    assert ch.recv() == 2.0
    started = time.monotonic()
    with pytest.raises(EOFError):
        ch.recv(timeout=PATIENCE)
    with pytest.raises(EOFError):
        ch.recv_many(4, timeout=PATIENCE)
    assert time.monotonic() - started < 2.0
    ch.send(3.0)                 # the dead writer's claim is taken over
    assert ch.recv() == 3.0


def test_reader_blocked_before_the_writer_dies_gets_eof(procs):
    ch = FloatChannel(8)
    ready, never = FORK.Event(), FORK.Event()
    child = procs.start(FORK, _send_then_hang, ch, [1.0], ready, never)
    _wait(ready)
    first_read = threading.Event()
    outcome = []

    def read():
        outcome.append(ch.recv())
        first_read.set()
        try:
            ch.recv(timeout=PATIENCE)      # blocks: the writer lives, sends nothing
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    assert first_read.wait(PATIENCE)
    _sigkill(child)
    reader.join(PATIENCE)
    assert outcome[0] == 1.0
    assert len(outcome) == 2 and isinstance(outcome[1], EOFError)


def test_dead_reader_is_a_broken_pipe_for_a_blocked_writer(start_method, procs):
    ch = FloatChannel(4)
    ready, never = start_method.Event(), start_method.Event()
    ch.send(0.0)
    child = procs.start(start_method, _recv_then_hang, ch, 1, ready, never)
    _wait(ready)
    _sigkill(child)
    assert ch.send_many([1.0, 2.0, 3.0, 4.0]) == 4       # room: no wait, no check
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        ch.send(5.0, timeout=PATIENCE)
    with pytest.raises(BrokenPipeError) as info:
        ch.send_many([5.0, 6.0])
    assert info.value.sent == 0
    assert time.monotonic() - started < 2.0


def test_a_dead_readers_claim_is_taken_over_without_loss(procs):
    ch = FloatChannel(16)
    ready, never = FORK.Event(), FORK.Event()
    ch.send_many(range(10))
    child = procs.start(FORK, _recv_then_hang, ch, 3, ready, never)
    _wait(ready)
    error = _catch(ch.recv)                    # the child is alive: refused
    assert isinstance(error, RuntimeError) and f"process {child.pid}" in str(error)
    _sigkill(child)
    assert list(ch.recv_many(100)) == [3, 4, 5, 6, 7, 8, 9]


# -- wake-ups -------------------------------------------------------------------------------

def _slow_echo(requests, replies, rounds):
    for _ in range(rounds):
        value = requests.recv()
        time.sleep(0.0002)          # longer than the spin: the parent goes to sleep
        replies.send(value + 1)


def test_sleeping_waiters_are_always_woken(procs):
    # Each round trip makes the parent sleep in the futex (the echo answers
    # after its spin gave up): a lost wake-up would cost a whole 50 ms slice.
    requests, replies = FloatChannel(4), FloatChannel(4)
    rounds = 300
    child = procs.start(FORK, _slow_echo, requests, replies, rounds)
    started = time.monotonic()
    for i in range(rounds):
        requests.send(i)
        assert replies.recv(timeout=PATIENCE) == i + 1
    elapsed = time.monotonic() - started
    procs.join(child)
    assert elapsed < rounds * 0.05 / 4, f"{rounds} round trips took {elapsed:.2f} s"


def _slow_reader(ch, n, results):
    total = 0
    for i in range(n):
        if i % 100 == 0:
            time.sleep(0.0005)      # lets the writer fill up and go to sleep
        total += ch.recv()
    results.put(total)


def test_writer_sleeping_on_a_full_channel_is_woken(procs):
    ch = FloatChannel(8)
    n = 20_000
    results = FORK.SimpleQueue()
    child = procs.start(FORK, _slow_reader, ch, n, results)
    started = time.monotonic()
    for i in range(n):
        ch.send(i, timeout=PATIENCE)
    assert results.get() == sum(range(n))
    assert time.monotonic() - started < 10
    procs.join(child)


# -- between processes ----------------------------------------------------------------------

STREAM = 1_000_000
CHUNKS = [1, 7, 1000, 4096, 5000, 3]


def _stream_out(ch, n):
    """Half one at a time, half with send_many of assorted sizes."""
    half = n // 2
    send = ch.send
    for i in range(half):
        send(i)
    values = array.array("d", range(half, n))
    start, k = 0, 0
    while start < len(values):
        size = CHUNKS[k % len(CHUNKS)]
        piece = memoryview(values)[start:start + size]
        assert ch.send_many(piece) == len(piece)
        start += size
        k += 1


def test_a_million_floats_from_a_child_in_order_exactly_once(start_method, procs):
    ch = FloatChannel()
    child = procs.start(start_method, _stream_out, ch, STREAM)
    received = array.array("d")
    recv = ch.recv
    for _ in range(STREAM // 3):
        received.append(recv(timeout=PATIENCE))
    out = array.array("d", bytes(8 * 3000))
    while len(received) < STREAM:
        k = ch.recv_many(out, timeout=PATIENCE)
        received.extend(out[:k])
    assert received == array.array("d", range(STREAM))
    # Nothing more: once the child is gone, EOF (not a duplicate, not a hang).
    with pytest.raises(EOFError):
        ch.recv(timeout=PATIENCE)
    procs.join(child)


def _stream_in(ch, n, results):
    expected = 0
    bad = None
    recv = ch.recv
    while expected < n:
        if expected % 3:
            got = ch.recv_many(997)
            if list(got) != list(range(expected, expected + len(got))):
                bad = f"batch at {expected}: {list(got)[:5]}..."
                break
            expected += len(got)
        else:
            value = recv()
            if value != expected:
                bad = f"expected {expected}, got {value}"
                break
            expected += 1
    results.put(bad or "ok")


def test_a_million_floats_to_a_child_in_order_exactly_once(start_method, procs):
    ch = FloatChannel(1000)          # small: both sides block often
    results = start_method.SimpleQueue()
    child = procs.start(start_method, _stream_in, ch, STREAM, results)
    half = STREAM // 2
    for i in range(half):
        ch.send(i, timeout=PATIENCE)
    assert ch.send_many(array.array("d", range(half, STREAM)), timeout=PATIENCE) == STREAM - half
    assert results.get() == "ok"
    assert ch.empty()
    procs.join(child)


def test_pickling_outside_process_start_is_refused():
    ch = FloatChannel(4)
    with pytest.raises(RuntimeError, match="FloatChannel objects should only be shared "
                                           "between processes through inheritance"):
        pickle.dumps(ch)


# -- latest mode ------------------------------------------------------------------------------

def test_latest_mode_returns_only_newer_values_and_the_newest():
    ch = FloatChannel(latest=True)
    with pytest.raises(queue.Empty):
        ch.recv(block=False)
    with pytest.raises(queue.Empty):
        ch.recv(timeout=0.02)
    assert ch.empty() and not ch.full()
    for x in range(10_000):           # never blocks
        ch.send(x)
    assert ch.qsize() == 1 and not ch.full()
    assert ch.recv() == 9999.0
    assert ch.empty()
    with pytest.raises(queue.Empty):
        ch.recv(block=False)          # nothing newer than 9999
    ch.send(9999)                     # the same value, but a new publication
    assert ch.recv(block=False) == 9999.0
    assert ch.send_many([1.0, 2.0, 3.0]) == 3
    assert ch.recv() == 3.0
    ch.send(4.5)
    assert ch.recv_many(10) == array.array("d", [4.5])
    ch.send(5.5)
    out = array.array("d", [0.0, 0.0])
    assert ch.recv_many(out) == 1 and list(out) == [5.5, 0.0]
    assert ch.send_many([]) == 0
    with pytest.raises(queue.Empty):
        ch.recv_many(1, block=False)


def _publish_rounds(latest, ticks, rounds):
    for r in range(rounds):
        for k in range(10):
            latest.send(r * 10 + k)
        ticks.send(r)                  # ring mode: ordered after the publications


def test_latest_mode_always_gives_the_newest_across_processes(procs):
    latest, ticks = FloatChannel(latest=True), FloatChannel(1)
    rounds = 200
    child = procs.start(FORK, _publish_rounds, latest, ticks, rounds)
    last = -1.0
    for r in range(rounds):
        assert ticks.recv(timeout=PATIENCE) == r
        # Round r is complete.  ticks holds one tick: the child may have
        # finished round r + 1 and be publishing round r + 2, not later.
        if last >= r * 10 + 9:
            continue            # already received something newer: recv would wait
        value = latest.recv(timeout=PATIENCE)
        assert r * 10 + 9 <= value < (r + 3) * 10 and value > last
        last = value
    procs.join(child)


def _publish_counter(ch, n):
    for i in range(n):
        ch.send(i)


def test_latest_mode_values_are_strictly_increasing_then_eof(start_method, procs):
    ch = FloatChannel(latest=True)
    n = 300_000
    child = procs.start(start_method, _publish_counter, ch, n)
    seen = []
    value = -1.0
    while value != n - 1:
        value = ch.recv(timeout=PATIENCE)
        seen.append(value)
    assert all(a < b for a, b in zip(seen, seen[1:]))
    with pytest.raises(EOFError):
        ch.recv(timeout=PATIENCE)
    procs.join(child)


# -- Ctrl-C --------------------------------------------------------------------------------------

_BLOCKED_CALLS = {
    "recv": "ch = FloatChannel(); print('ready', flush=True); ch.recv()",
    "recv_many": "ch = FloatChannel(); print('ready', flush=True); ch.recv_many(10)",
    "recv_latest": "ch = FloatChannel(latest=True); print('ready', flush=True); ch.recv()",
    "send_full": "ch = FloatChannel(1); ch.send(1.0); print('ready', flush=True); ch.send(2.0)",
    "send_many_full": ("ch = FloatChannel(4); print('ready', flush=True)\n"
                       "try:\n    ch.send_many(range(10))\n"
                       "except KeyboardInterrupt as exc:\n"
                       "    print('sent', exc.sent, flush=True); raise"),
}


@pytest.mark.parametrize("call", sorted(_BLOCKED_CALLS))
def test_ctrl_c_interrupts_a_blocked_call_promptly(call, tmp_path):
    code = "from fastmp._float_channel import FloatChannel\n" + _BLOCKED_CALLS[call]
    out = assert_ctrl_c_interrupts_promptly(code, tmp_path)
    if call == "send_many_full":
        assert out.strip() == "sent 4"
