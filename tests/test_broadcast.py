"""fastmp.Broadcast: one writer, many subscribers with their own cursors.

Construction, late joining, per-subscriber cursors, the "block" policy (a
slow subscriber holds the writer back until it reads, closes or dies), the
"skip" policy (the writer never waits; `skipped` counts exactly what a
subscriber lost; recv never returns a torn frame; recv_view reports a frame
overwritten while viewed), max_readers, pickling, EOF, Ctrl-C, streams to
subscribers in other processes under every start method, and leaks.

Deterministic: processes hand over with Events and queues; the torn-frame
stress test checks an invariant that must hold however the processes
interleave.  Child targets live at module level (spawn pickles them).
"""
import multiprocessing
import os
import pickle
import queue
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (Call, assert_ctrl_c_interrupts_promptly, assert_spins_freely,
                      wait_until_sleeping)
from frames_support import (ASLEEP_IN_A_FUTEX, PATIENCE, assert_futex_calls_do_not_grow, frame_of,
                            fresh_python, put_how_recv_ended, run_in_thread, sigkill, value_of,
                            wait_for)

import fastmp

try:
    from fastmp._broadcast import Broadcast
except ImportError:          # not built yet (the forkserver preloads this module too)
    Broadcast = None


def _frame_overwritten():
    for where in ("fastmp", "fastmp._broadcast", "fastmp._frames"):
        try:
            module = __import__(where, fromlist=["FrameOverwritten"])
        except ImportError:
            continue
        if hasattr(module, "FrameOverwritten"):
            return module.FrameOverwritten
    return None


FrameOverwritten = _frame_overwritten()

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(Broadcast is None, reason="fastmp._broadcast is not built")]

FORK = multiprocessing.get_context("fork")


def _drain(sub):
    """Every value the subscriber can receive now, without waiting."""
    got = []
    while True:
        try:
            got.append(value_of(sub.recv(block=False)))
        except queue.Empty:
            return got


# -- construction ---------------------------------------------------------------------------------

def test_properties_and_defaults():
    bc = Broadcast(4, (2, 3))
    assert bc.slots == 4 and bc.shape == (2, 3)
    assert bc.dtype == np.dtype("float32") and bc.frame_bytes == 24
    assert bc.policy == "block" and bc.max_readers == 16
    skip = Broadcast(2, 5, "int64", max_readers=3, policy="skip")
    assert skip.policy == "skip" and skip.max_readers == 3
    assert skip.shape == (5,) and skip.frame_bytes == 40


@pytest.mark.parametrize("policy", ["drop", "", "BLOCK", None, 1])
def test_unknown_policies_are_refused(policy):
    with pytest.raises(ValueError):
        Broadcast(2, 3, policy=policy)


@pytest.mark.parametrize("args, error", [
    ((0, 3), ValueError), ((2.0, 3), TypeError), ((2, 0), ValueError), ((2, (-1,)), ValueError),
    ((2, (1,) * 9), ValueError), ((2, 3, object), TypeError), ((2, 3, "not-a-dtype"), TypeError),
    ((1 << 40, 1 << 10, "uint8"), ValueError), ((1 << 65, 3), ValueError),
    ((2, (4, (1 << 62) + 1), "uint8"), ValueError),
], ids=["no-slots", "float-slots", "empty-frame", "negative-dim", "nine-dims", "object",
        "bad-dtype", "oversize", "slots-beyond-64-bits", "dims-wrapping-64-bits"])
def test_bad_rings_are_refused_as_for_ring(args, error):
    with pytest.raises(error):
        Broadcast(*args)


def _report_properties(bc, results):
    results.put((bc.slots, bc.shape, str(bc.dtype), bc.frame_bytes, bc.policy, bc.max_readers))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_child_sees_the_same_broadcast(method, procs):
    ctx = multiprocessing.get_context(method)
    bc = Broadcast(3, (2, 5), ">i2", max_readers=5, policy="skip")
    results = ctx.SimpleQueue()
    procs.join(procs.start(ctx, _report_properties, bc, results))
    assert results.get() == (3, (2, 5), str(np.dtype(">i2")), 20, "skip", 5)


def test_pickling_outside_process_start_is_refused():
    bc = Broadcast(2, 3)
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(bc)


def test_subscribers_cannot_be_pickled():
    bc = Broadcast(2, 3)
    sub = bc.subscribe()
    with pytest.raises(TypeError):
        pickle.dumps(sub)


def test_frame_overwritten_is_a_buffer_error_exported_by_fastmp():
    assert fastmp.FrameOverwritten is FrameOverwritten
    assert issubclass(fastmp.FrameOverwritten, BufferError)
    assert fastmp.Broadcast is Broadcast
    assert {"Ring", "Broadcast", "FrameOverwritten"} <= set(fastmp.__all__)


def _stub_members(stub, cls):
    """Public names the .pyi stub gives class `cls`."""
    import ast
    tree = ast.parse((Path(fastmp.__file__).parent / stub).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {item.name for item in node.body if isinstance(item, ast.FunctionDef)
                    if not item.name.startswith("_") or item.name in ("__enter__", "__exit__")}
    raise AssertionError(f"{stub} has no class {cls}")


def _public(obj):
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.parametrize("stub, cls, runtime", [
    ("_broadcast.pyi", "Broadcast", lambda: Broadcast),
    ("_broadcast.pyi", "Subscriber", lambda: type(Broadcast(1, 1).subscribe())),
    ("_typed_ring.pyi", "Ring", lambda: fastmp.Ring),
    ("_frames.pyi", "Reservation", lambda: type(fastmp.Ring(1, 1).reserve())),
    ("_frames.pyi", "Frame", lambda: type(_sent_ring().recv_view())),
])
def test_stubs_name_what_the_classes_have(stub, cls, runtime):
    runtime = runtime()
    stubbed = _stub_members(stub, cls)
    assert _public(runtime) == {n for n in stubbed if not n.startswith("_")}
    for dunder in ("__enter__", "__exit__"):
        assert (dunder in stubbed) == hasattr(runtime, dunder)


def _sent_ring():
    ring = fastmp.Ring(1, 1)
    ring.send(np.zeros(1, np.float32))
    return ring


# -- subscribers and cursors ----------------------------------------------------------------------

def test_a_late_subscriber_gets_only_what_is_published_after_it_joined():
    bc = Broadcast(4, 2, "int32")
    early = bc.subscribe()
    bc.send(frame_of(bc, 1))
    bc.send(frame_of(bc, 2))
    late = bc.subscribe()
    assert late.qsize() == 0
    with pytest.raises(queue.Empty):
        late.recv(block=False)
    bc.send(frame_of(bc, 3))
    assert _drain(late) == [3]
    assert _drain(early) == [1, 2, 3]


def test_a_subscriber_joining_a_ring_that_has_wrapped_starts_at_the_writer():
    bc = Broadcast(3, 2, "int32")
    for i in range(10):                  # no subscriber: nothing holds the writer back
        bc.send(frame_of(bc, i), block=False)
    sub = bc.subscribe()
    assert sub.qsize() == 0
    bc.send(frame_of(bc, 10))
    with sub.recv_view() as view:
        assert value_of(view) == 10
    assert sub.skipped == 0


def test_each_subscriber_has_its_own_cursor():
    bc = Broadcast(8, (2, 2), "int16")
    a, b, c = bc.subscribe(), bc.subscribe(), bc.subscribe()
    for i in range(5):
        bc.send(frame_of(bc, i))
    assert (a.qsize(), b.qsize(), c.qsize()) == (5, 5, 5)
    assert value_of(a.recv()) == 0 and value_of(a.recv()) == 1
    out = np.zeros((2, 2), np.int16)
    b.recv_into(out)
    assert value_of(out) == 0
    assert (a.qsize(), b.qsize(), c.qsize()) == (3, 4, 5)
    assert _drain(c) == [0, 1, 2, 3, 4]
    assert _drain(a) == [2, 3, 4]
    assert _drain(b) == [1, 2, 3, 4]
    assert a.skipped == b.skipped == c.skipped == 0


def test_frames_are_64_byte_aligned_and_every_subscriber_reads_them_in_place():
    bc = Broadcast(3, 5, "uint8")
    a, b = bc.subscribe(), bc.subscribe()
    addresses = []
    for i in range(3):
        with bc.reserve() as frame:
            addresses.append(frame.ctypes.data)
            frame[:] = i
    assert all(address % 64 == 0 for address in addresses) and len(set(addresses)) == 3
    for sub in (a, b):
        for i in range(3):
            with sub.recv_view() as view:
                assert view.ctypes.data == addresses[i]
                assert value_of(view) == i


def test_subscriber_recv_into_and_recv_view_check_like_ring():
    bc = Broadcast(4, (2, 3), "float32")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 1.5))
    with pytest.raises(ValueError):
        sub.recv_into(np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError):
        sub.recv_into(np.zeros((2, 3), np.float64))
    assert sub.qsize() == 1
    with sub.recv_view() as view:
        assert isinstance(view, np.ndarray) and not view.flags.writeable
        assert view.shape == (2, 3) and view.dtype == np.float32
        assert (view == 1.5).all()
        with pytest.raises(RuntimeError):
            sub.recv_view()                 # one open view per subscriber
    assert sub.qsize() == 0
    with pytest.raises(queue.Empty):
        sub.recv_view(block=False)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        sub.recv(timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 1.0


def test_a_subscribers_view_cannot_be_made_writable():
    bc = Broadcast(2, 4, "int32")
    sub, other = bc.subscribe(), bc.subscribe()
    bc.send(frame_of(bc, 1))
    try:
        with sub.recv_view() as view:
            with pytest.raises(ValueError):
                view.flags.writeable = True
            with pytest.raises(ValueError):
                np.copyto(view, 9)
    finally:
        assert _drain(other) == [1]            # nobody changed what the others read


def test_writer_send_checks_like_ring():
    bc = Broadcast(4, (2, 3), "float32")
    sub = bc.subscribe()
    with pytest.raises(ValueError):
        bc.send(np.zeros((3, 2), np.float32))
    with pytest.raises(TypeError):
        bc.send(np.zeros((2, 3), np.float64))
    with pytest.raises(ZeroDivisionError):
        with bc.reserve() as frame:
            frame[...] = 9
            1 / 0
    assert sub.qsize() == 0
    bc.send(np.ones((4, 6), np.float32)[::2, ::2])   # any strides
    with bc.reserve() as frame:
        frame[...] = 2
    assert not frame.flags.writeable
    assert [r.tolist() for r in (sub.recv(), sub.recv())] == [[[1] * 3] * 2, [[2] * 3] * 2]


def test_a_closed_subscriber_refuses_everything_and_with_closes():
    bc = Broadcast(2, 3)
    with bc.subscribe() as sub:
        bc.send(frame_of(bc, 1))
    for call in (sub.recv, sub.recv_view, sub.qsize, lambda: sub.recv_into(np.zeros(3, "f4"))):
        with pytest.raises(ValueError):
            call()
    sub.close()                              # twice is fine


def test_max_readers_limits_live_subscribers():
    bc = Broadcast(2, 3, max_readers=2)
    first, second = bc.subscribe(), bc.subscribe()
    with pytest.raises(RuntimeError):
        bc.subscribe()
    first.close()
    third = bc.subscribe()                   # the closed one's entry is free again
    with pytest.raises(RuntimeError):
        bc.subscribe()
    bc.send(frame_of(bc, 4))
    assert _drain(second) == [4] and _drain(third) == [4]


def test_an_entry_is_reused_across_many_subscriptions():
    bc = Broadcast(2, 1, "int64", max_readers=1)
    for i in range(500):
        with bc.subscribe() as sub:
            bc.send(frame_of(bc, i))
            assert value_of(sub.recv(block=False)) == i
    for i in range(500, 505):                  # and no stale cursor holds the writer back
        bc.send(frame_of(bc, i), block=False)


def test_a_subscriber_is_a_per_process_handle_any_thread_may_use():
    bc = Broadcast(4, 1, "int64")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 1))
    bc.send(frame_of(bc, 2))
    result, error = run_in_thread(sub.recv)
    assert error is None and value_of(result) == 1
    assert value_of(sub.recv()) == 2


def _subscribe_and_hang(bc, ready, never):
    sub = bc.subscribe()                      # held until the process dies
    ready.set()
    never.wait(PATIENCE)
    sub.close()


def test_a_dead_subscribers_entry_is_reclaimed(start_method, procs):
    bc = Broadcast(2, 3, max_readers=1)
    ready, never = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _subscribe_and_hang, bc, ready, never)
    wait_for(ready)
    with pytest.raises(RuntimeError):
        bc.subscribe()                        # the child's subscriber is alive
    sigkill(child)
    sub = bc.subscribe()
    bc.send(frame_of(bc, 5))
    assert _drain(sub) == [5]


def _use_inherited(box, results):
    sub = box.pop()
    try:
        sub.recv(block=False)
    except RuntimeError:
        results.put("refused")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))
    else:
        results.put("received")
    del sub                                    # dropping it must not free the parent's entry
    import gc
    gc.collect()
    results.put("dropped")


def test_a_subscriber_inherited_through_fork_is_the_parents_alone(procs):
    bc = Broadcast(2, 3, "int32", max_readers=1)
    sub = bc.subscribe()
    bc.send(frame_of(bc, 1))
    results = FORK.SimpleQueue()
    child = procs.start(FORK, _use_inherited, [sub], results)
    assert results.get() == "refused"
    assert results.get() == "dropped"
    procs.join(child)
    with pytest.raises(RuntimeError):
        bc.subscribe()                           # the entry is still the parent's
    assert _drain(sub) == [1]
    bc.send(frame_of(bc, 2))
    bc.send(frame_of(bc, 3))
    with pytest.raises(queue.Full):              # and it still holds the writer back
        bc.send(frame_of(bc, 4), block=False)


def _close_inherited(box):
    bc = box.pop()
    bc.close()


def test_a_child_closing_an_inherited_handle_leaves_the_parent_the_writer(procs):
    bc = Broadcast(4, 3, "int32")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 1))                     # the parent is the writer
    procs.join(procs.start(FORK, _close_inherited, [bc]))
    assert value_of(sub.recv()) == 1
    with pytest.raises(queue.Empty):           # not EOF: the writer is still here
        sub.recv(timeout=0.01)
    bc.send(frame_of(bc, 2))
    assert _drain(sub) == [2]


@pytest.mark.parametrize("max_readers, error", [(0, ValueError), (-1, ValueError),
                                                (2.0, TypeError), ("4", TypeError)])
def test_bad_max_readers_are_refused(max_readers, error):
    with pytest.raises(error):
        Broadcast(2, 3, max_readers=max_readers)


def _die_inside_reserve(bc, committed, subscribed, ready, never):
    wait_for(subscribed)
    for value in committed:
        with bc.reserve() as frame:
            frame[...] = value
    res = bc.reserve()
    with res as frame:
        frame[...] = -1                          # half written and never committed
        ready.set()
        never.wait(PATIENCE)


@pytest.mark.parametrize("policy", ["block", "skip"])
def test_a_writer_killed_inside_reserve_published_nothing(start_method, procs, policy):
    bc = Broadcast(4, (8, 8), "int64", policy=policy)
    sub = bc.subscribe()
    subscribed, ready, never = start_method.Event(), start_method.Event(), start_method.Event()
    child = procs.start(start_method, _die_inside_reserve, bc, [1, 2], subscribed, ready, never)
    subscribed.set()
    wait_for(ready)
    sigkill(child)
    assert value_of(sub.recv(timeout=PATIENCE)) == 1
    assert value_of(sub.recv(timeout=PATIENCE)) == 2
    with pytest.raises(EOFError):
        sub.recv(timeout=PATIENCE)
    for i in range(3, 12):                       # a new writer goes on, through every slot
        with bc.reserve(timeout=PATIENCE) as frame:
            frame[...] = i
        assert value_of(sub.recv(block=False)) == i
    assert sub.skipped == 0


def test_a_second_writer_thread_is_refused_naming_the_holder():
    bc = Broadcast(4, 2)
    bc.send(frame_of(bc, 1))
    for call in (lambda: bc.send(frame_of(bc, 2)), bc.reserve):
        _, error = run_in_thread(call)
        assert isinstance(error, RuntimeError), error
        assert str(os.getpid()) in str(error)


def test_one_open_reservation_and_explicit_commit_and_abort():
    bc = Broadcast(4, 3, "int16")
    sub = bc.subscribe()
    res = bc.reserve()
    with pytest.raises(RuntimeError):
        bc.reserve(block=False)
    with res as frame:
        frame[...] = 5
        res.commit()
    for call in (res.commit, res.abort):
        with pytest.raises(RuntimeError):
            call()
    res = bc.reserve()
    with res as frame:
        frame[...] = 6
        res.abort()
    with pytest.raises(RuntimeError):
        res.commit()
    assert not frame.flags.writeable
    assert _drain(sub) == [5]
    with bc.reserve() as frame:                # the aborted slot is used again
        frame[...] = 7
    assert _drain(sub) == [7]


def test_writer_close_in_the_same_process_is_eof_after_the_frames():
    bc = Broadcast(4, 3, "int32")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 1))
    bc.close()
    bc.close()                                 # twice is fine
    with pytest.raises(ValueError, match="closed"):
        bc.send(frame_of(bc, 2))
    with pytest.raises(ValueError, match="closed"):
        bc.subscribe()
    assert value_of(sub.recv()) == 1             # subscribers made by it stay usable
    with pytest.raises(EOFError):
        sub.recv(timeout=PATIENCE)


def test_closing_a_subscriber_wakes_its_own_blocked_recv_and_frees_its_entry():
    bc = Broadcast(2, 3, "int32", max_readers=1)
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))                     # this thread is the writer
    receiver = Call(lambda: (sub.recv(), sub.recv(timeout=PATIENCE)))
    receiver.start()
    deadline = time.monotonic() + PATIENCE
    while sub.qsize():                         # it took frame 0 and waits for the next
        assert time.monotonic() < deadline
        time.sleep(0.001)
    sub.close()
    started = time.monotonic()
    result, error = receiver.outcome(PATIENCE)
    assert isinstance(error, ValueError), (result, error)
    assert time.monotonic() - started < 1.0
    again = bc.subscribe()                     # max_readers=1: the entry is free again
    bc.send(frame_of(bc, 1))
    assert _drain(again) == [1]


def test_waiting_releases_the_gil():
    bc = Broadcast(2, 2, "int32")
    sub = bc.subscribe()
    waiter = Call(lambda: sub.recv(timeout=PATIENCE))
    waiter.start()
    assert_spins_freely()                       # the waiter sleeps without the GIL
    bc.send(frame_of(bc, 1))
    result, error = waiter.outcome(PATIENCE)
    assert error is None and value_of(result) == 1


def test_a_blocked_call_sleeps_instead_of_spinning():
    bc = Broadcast(1, 4, "int64")
    held = bc.subscribe()
    bc.send(frame_of(bc, 0))                      # `held` holds the writer back now
    quiet = Broadcast(1, 4, "int64")            # nothing published, writer not gone
    other = quiet.subscribe()
    for call in (lambda: bc.send(frame_of(bc, 1), timeout=0.3),
                 lambda: bc.reserve(timeout=0.3),
                 lambda: other.recv(timeout=0.3)):
        started, cpu = time.monotonic(), time.thread_time()
        with pytest.raises((queue.Full, queue.Empty)):
            call()
        assert time.monotonic() - started >= 0.3
        assert time.thread_time() - cpu < 0.1
    assert held.qsize() == 1


def _slow_echo(requests, replies, rounds, subscribed):
    sub = requests.subscribe()
    subscribed.set()
    for _ in range(rounds):
        with sub.recv_view() as view:
            value = int(view[0])
        time.sleep(0.0002)          # longer than the spin: the parent goes to sleep
        replies.send(np.full(replies.shape, value + 1, replies.dtype))


def test_sleeping_subscribers_are_always_woken(procs):
    # Each round trip makes the parent's subscriber sleep in the futex (the
    # echo answers after its spin gave up): a lost wake-up costs 50 ms.
    requests, replies = Broadcast(2, 4, "int64"), Broadcast(2, 4, "int64")
    answers = replies.subscribe()
    subscribed = FORK.Event()
    rounds = 200
    child = procs.start(FORK, _slow_echo, requests, replies, rounds, subscribed)
    wait_for(subscribed)
    started = time.monotonic()
    for i in range(rounds):
        requests.send(frame_of(requests, i))
        assert value_of(answers.recv(timeout=PATIENCE)) == i + 1
    elapsed = time.monotonic() - started
    procs.join(child)
    assert elapsed < rounds * 0.05 / 4, f"{rounds} round trips took {elapsed:.2f} s"


def _slow_subscriber(bc, n, subscribed, results):
    sub = bc.subscribe()
    subscribed.set()
    bad = None
    for i in range(n):
        if i % 50 == 0:
            time.sleep(0.0005)      # lets the writer fill up and go to sleep
        if value_of(sub.recv()) != i:
            bad = f"frame {i}"
            break
    results.put(bad or "ok")


def test_a_writer_held_back_in_its_sleep_is_woken(procs):
    bc = Broadcast(4, 8, "int64")
    subscribed, results = FORK.Event(), FORK.SimpleQueue()
    n = 4000
    child = procs.start(FORK, _slow_subscriber, bc, n, subscribed, results)
    wait_for(subscribed)
    started = time.monotonic()
    for i in range(n):
        bc.send(frame_of(bc, i), timeout=PATIENCE)
    assert results.get() == "ok"
    assert time.monotonic() - started < 5
    procs.join(child)


@pytest.mark.parametrize("policy", ["block", "skip"])
def test_no_python_memory_grows_per_frame(policy):
    import gc
    import tracemalloc
    bc = Broadcast(4, 8, "int64", policy=policy)
    subs = [bc.subscribe(), bc.subscribe()]
    out = np.zeros(8, np.int64)

    def rounds(n):
        for i in range(n):
            bc.send(frame_of(bc, i))
            with bc.reserve() as view:
                view[...] = i
            bc.send(frame_of(bc, i))
            for sub in subs:
                sub.recv(block=False)
                sub.recv_into(out, block=False)
                with sub.recv_view(block=False):
                    pass

    rounds(100)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rounds(3000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024, f"{grown} bytes more after 3000 rounds"


# -- policy "block" -------------------------------------------------------------------------------

def test_block_policy_holds_the_writer_back_for_the_slowest_subscriber():
    bc = Broadcast(2, 3, "int32")
    fast, slow = bc.subscribe(), bc.subscribe()
    bc.send(frame_of(bc, 0))
    bc.send(frame_of(bc, 1))
    assert _drain(fast) == [0, 1]
    for call in (lambda **kw: bc.send(frame_of(bc, 2), **kw), lambda **kw: bc.reserve(**kw)):
        with pytest.raises(queue.Full):
            call(block=False)
        started = time.monotonic()
        with pytest.raises(queue.Full):
            call(timeout=0.05)
        assert 0.05 <= time.monotonic() - started < 1.0
    assert value_of(slow.recv()) == 0
    bc.send(frame_of(bc, 2), block=False)     # one slot free again
    assert _drain(slow) == [1, 2] and _drain(fast) == [2]
    assert slow.skipped == fast.skipped == 0


def test_block_policy_with_no_subscriber_never_waits():
    bc = Broadcast(2, 3, "int32")
    for i in range(10):
        bc.send(frame_of(bc, i), block=False)


def test_a_held_view_holds_the_writer_back():
    bc = Broadcast(2, 3, "int32")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    bc.send(frame_of(bc, 1))
    view = sub.recv_view()
    with pytest.raises(queue.Full):
        bc.send(frame_of(bc, 2), block=False)   # slot of frame 0 is still being read
    view.release()
    bc.send(frame_of(bc, 2), block=False)
    assert _drain(sub) == [1, 2]


def test_closing_the_slow_subscriber_releases_a_blocked_writer():
    bc = Broadcast(2, 3, "int32")
    fast, slow = bc.subscribe(), bc.subscribe()
    bc.send(frame_of(bc, 0))
    bc.send(frame_of(bc, 1))
    _drain(fast)
    closer = Call(slow.close)          # while this thread waits in send
    closer.start()
    bc.send(frame_of(bc, 2), timeout=PATIENCE)
    assert closer.outcome(PATIENCE) == (None, None)
    assert _drain(fast) == [2]


def _subscribe_read_and_hang(bc, count, ready, never):
    sub = bc.subscribe()
    ready.set()
    for _ in range(count):
        sub.recv()
    never.wait(PATIENCE)


def test_a_dead_slow_subscriber_stops_holding_the_writer_back(start_method, procs):
    bc = Broadcast(2, (4, 4), "int64")
    fast = bc.subscribe()
    ready, never = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _subscribe_read_and_hang, bc, 0, ready, never)
    wait_for(ready)
    bc.send(frame_of(bc, 0))
    bc.send(frame_of(bc, 1))
    assert _drain(fast) == [0, 1]
    with pytest.raises(queue.Full):
        bc.send(frame_of(bc, 2), timeout=0.02)    # the child is alive and reads nothing
    killer = Call(sigkill, child)     # while this thread waits in send
    started = time.monotonic()
    killer.start()
    bc.send(frame_of(bc, 2), timeout=PATIENCE)
    assert time.monotonic() - started < 2.0     # noticed within a few wait slices
    assert killer.outcome(PATIENCE) == (None, None)
    for i in range(3, 10):                      # and it no longer counts at all
        bc.send(frame_of(bc, i), timeout=PATIENCE)
        assert _drain(fast) == ([2, i] if i == 3 else [i])


def _subscribe_read_and_exit(bc, count, subscribed):
    sub = bc.subscribe()
    subscribed.set()
    for _ in range(count):
        sub.recv()
    # returns without closing: multiprocessing ends the process with os._exit


def test_a_subscriber_whose_process_exited_stops_holding_the_writer_back(start_method, procs):
    bc = Broadcast(2, 3, "int64")
    subscribed = start_method.Event()
    child = procs.start(start_method, _subscribe_read_and_exit, bc, 1, subscribed)
    wait_for(subscribed)
    bc.send(frame_of(bc, 0))
    procs.join(child)                          # exited and reaped: not even a zombie
    started = time.monotonic()
    for i in range(1, 6):
        bc.send(frame_of(bc, i), timeout=PATIENCE)
    assert time.monotonic() - started < 2.0
    assert bc.subscribe() is not None          # its entry is free too


def _publish_n(bc, n, subscribed):
    wait_for(subscribed)
    for i in range(n):
        bc.send(np.full(bc.shape, i, bc.dtype))


def test_releasing_a_view_wakes_a_writer_held_back_in_its_sleep(procs):
    bc = Broadcast(1, 8, "int64")
    sub = bc.subscribe()
    subscribed = FORK.Event()
    rounds = 150
    child = procs.start(FORK, _publish_n, bc, rounds, subscribed)
    subscribed.set()
    started = time.monotonic()
    for i in range(rounds):
        with sub.recv_view(timeout=PATIENCE) as view:
            assert value_of(view) == i
            time.sleep(0.0002)         # the writer, held back, goes to sleep
    elapsed = time.monotonic() - started
    procs.join(child)
    assert elapsed < rounds * 0.05 / 4, f"{rounds} frames took {elapsed:.2f} s"


# -- policy "skip" --------------------------------------------------------------------------------

def test_skip_policy_never_blocks_and_counts_what_a_subscriber_lost():
    bc = Broadcast(4, 3, "int64", policy="skip")
    sub = bc.subscribe()
    for i in range(10):
        bc.send(frame_of(bc, i), block=False)      # never queue.Full
        with bc.reserve(block=False) as frame:
            frame[...] = 100 + i
    # 20 frames published into 4 slots: the last 4 are still there.
    assert sub.qsize() <= 4
    got = _drain(sub)
    assert got == [8, 108, 9, 109]
    assert sub.skipped == 16
    assert _drain(sub) == [] and sub.skipped == 16


def test_skip_policy_exactly_slots_behind_loses_nothing():
    bc = Broadcast(4, 3, "int64", policy="skip")
    sub = bc.subscribe()
    for i in range(4):
        bc.send(frame_of(bc, i))
    assert sub.qsize() == 4
    assert _drain(sub) == [0, 1, 2, 3] and sub.skipped == 0
    for i in range(4, 9):                        # one past: the oldest is lost
        bc.send(frame_of(bc, i))
    assert _drain(sub) == [5, 6, 7, 8] and sub.skipped == 1


def test_skip_policy_counts_per_subscriber():
    bc = Broadcast(3, 2, "int32", policy="skip")
    keeping_up, lagging = bc.subscribe(), bc.subscribe()
    got = []
    for i in range(12):
        bc.send(frame_of(bc, i))
        got += _drain(keeping_up)
    assert got == list(range(12)) and keeping_up.skipped == 0
    assert _drain(lagging) == [9, 10, 11] and lagging.skipped == 9


def test_skip_counts_are_zero_with_the_block_policy():
    bc = Broadcast(2, 2, "int32")
    sub = bc.subscribe()
    for i in range(6):
        bc.send(frame_of(bc, i))
        assert _drain(sub) == [i]
    assert sub.skipped == 0


def test_a_reservation_held_open_in_skip_mode_hides_only_the_frame_it_overwrites():
    bc = Broadcast(2, 3, "int64", policy="skip")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    bc.send(frame_of(bc, 1))
    res = bc.reserve()                         # frame 2, in the slot of frame 0
    with res as frame:
        frame[...] = 2
        assert value_of(sub.recv(block=False)) == 1      # frame 0 is gone, frame 1 whole
        assert sub.skipped == 1
        with pytest.raises(queue.Empty):
            sub.recv(block=False)              # frame 2 is not published yet
    assert value_of(sub.recv(block=False)) == 2
    assert sub.skipped == 1


def test_an_abandoned_reservation_is_accounted_for_in_skip_mode():
    # The abandoned reservation wrote into the slot of frame 0 (the oldest):
    # frame 0 is lost to a subscriber that had not read it, and counted.
    bc = Broadcast(2, 3, "int64", policy="skip")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    bc.send(frame_of(bc, 1))
    with pytest.raises(ZeroDivisionError):
        with bc.reserve() as frame:
            frame[...] = -1
            1 / 0
    bc.send(frame_of(bc, 2))
    got = _drain(sub)
    assert -1 not in got
    assert got == sorted(got) and got[-1] == 2
    assert len(got) + sub.skipped == 3


def test_an_abandoned_reservation_costs_nothing_in_block_mode():
    bc = Broadcast(2, 3, "int64")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    with pytest.raises(ZeroDivisionError):
        with bc.reserve() as frame:
            frame[...] = -1
            1 / 0
    bc.send(frame_of(bc, 1))
    assert _drain(sub) == [0, 1] and sub.skipped == 0


def test_a_view_overwritten_while_held_raises_frame_overwritten_on_release():
    bc = Broadcast(2, 4, "int64", policy="skip")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    frame = sub.recv_view()
    with frame as view:
        assert value_of(view) == 0
        for i in range(1, 4):                   # laps the viewed slot
            bc.send(frame_of(bc, i), block=False)
        with pytest.raises(FrameOverwritten):
            frame.release()
    # frame 0 was torn (counted as skipped), frame 1 overwritten by frame 3
    assert sub.skipped == 2
    assert _drain(sub) == [2, 3]
    assert sub.skipped == 2


def test_frame_overwritten_leaves_the_with_block():
    bc = Broadcast(1, 4, "int64", policy="skip")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    with pytest.raises(FrameOverwritten):
        with sub.recv_view() as view:
            bc.send(frame_of(bc, 1))
            assert isinstance(view, np.ndarray)
    assert sub.skipped == 1
    assert _drain(sub) == [1]


def test_a_view_not_overwritten_releases_quietly():
    bc = Broadcast(2, 4, "int64", policy="skip")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 0))
    with sub.recv_view() as view:
        bc.send(frame_of(bc, 1))                  # another slot
        assert value_of(view) == 0
    assert sub.skipped == 0
    assert _drain(sub) == [1]


STRESS_SHAPE = (64, 1024)        # 512 KiB of int64: copies take long enough to be overtaken
STRESS_FRAMES = 600


def _publish_uniform_frames(bc, n, ready):
    wait_for(ready)
    for i in range(n):
        if i % 2:
            with bc.reserve() as frame:
                frame[...] = i
        else:
            bc.send(np.full(bc.shape, i, bc.dtype))
    bc.close()


def test_skip_policy_never_returns_a_torn_frame(start_method, procs):
    bc = Broadcast(2, STRESS_SHAPE, "int64", policy="skip")
    sub = bc.subscribe()
    ready = start_method.Event()
    child = procs.start(start_method, _publish_uniform_frames, bc, STRESS_FRAMES, ready)
    out = np.empty(STRESS_SHAPE, np.int64)
    received, torn_views = [], 0
    ready.set()
    while True:
        try:
            kind = len(received) % 3
            if kind == 0:
                received.append(value_of(sub.recv(timeout=PATIENCE)))
            elif kind == 1:
                sub.recv_into(out, timeout=PATIENCE)
                received.append(value_of(out))
            else:
                with sub.recv_view(timeout=PATIENCE) as view:
                    copy = np.array(view)
                # not overwritten while viewed (else FrameOverwritten): whole
                received.append(value_of(copy))
        except EOFError:
            break
        except FrameOverwritten:
            torn_views += 1
    procs.join(child)
    assert received == sorted(set(received)), "frames out of order or repeated"
    assert received[-1] == STRESS_FRAMES - 1            # the last one is never overwritten
    assert len(received) + sub.skipped == STRESS_FRAMES, (len(received), sub.skipped, torn_views)
    assert sub.skipped >= torn_views
    print(f"received {len(received)}, skipped {sub.skipped}, torn views {torn_views}")


def _publish_counting(bc, published, stop):
    """Frame i is filled with i; `published` counts the sends that returned."""
    i = 0
    while not stop.value:
        bc.send(np.full(bc.shape, i, bc.dtype))
        i += 1
        published.value = i
    bc.close()


JOINS = 40


@pytest.mark.parametrize("policy", ["block", "skip"])
def test_subscribers_joining_a_running_stream_start_exactly_where_they_joined(
        start_method, procs, policy):
    bc = Broadcast(4, 16, "int64", policy=policy)
    published, stop = start_method.RawValue("q", 0), start_method.RawValue("b", 0)
    child = procs.start(start_method, _publish_counting, bc, published, stop)
    deadline = time.monotonic() + PATIENCE
    while published.value < 10:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    for _ in range(JOINS):
        before = published.value             # frames below this were published before
        sub = bc.subscribe()
        after = published.value              # frame after + 1 is sent after subscribe returned
        first = value_of(sub.recv(timeout=PATIENCE))
        start = first - sub.skipped           # where its cursor began
        assert before <= start <= after + 1, (before, start, after, sub.skipped)
        previous = first
        for _ in range(5):                    # then on, frame after frame
            got = value_of(sub.recv(timeout=PATIENCE))
            assert got > previous
            assert got - previous - 1 <= sub.skipped
            previous = got
        if policy == "block":
            assert sub.skipped == 0 and previous == first + 5
        sub.close()
    stop.value = 1
    procs.join(child)


def _publish_forever(bc, subscribed):
    wait_for(subscribed)
    i = 0
    while True:
        if i % 2:
            bc.send(np.full(bc.shape, i, bc.dtype))
        else:
            with bc.reserve() as frame:
                frame[...] = i
        i += 1


@pytest.mark.parametrize("policy", ["block", "skip"])
def test_a_writer_killed_mid_stream_leaves_only_whole_frames(procs, policy):
    bc = Broadcast(3, (256, 512), "int32", policy=policy)
    sub = bc.subscribe()
    subscribed = FORK.Event()
    child = procs.start(FORK, _publish_forever, bc, subscribed)
    subscribed.set()
    received = [value_of(sub.recv(timeout=PATIENCE)) for _ in range(5)]
    sigkill(child)
    while True:
        try:
            received.append(value_of(sub.recv(timeout=PATIENCE)))
        except EOFError:
            break
    assert received == sorted(set(received))
    assert len(received) + sub.skipped == received[-1] + 1     # nothing unaccounted for
    if policy == "block":
        assert received == list(range(len(received)))


# -- EOF ------------------------------------------------------------------------------------------

def _publish_and_close(bc, values, subscribed, closed, finish):
    wait_for(subscribed)
    for value in values:
        bc.send(np.full(bc.shape, value, bc.dtype))
    bc.close()
    closed.set()
    wait_for(finish)


def test_eof_after_the_writer_closes_and_everything_is_read(procs):
    bc = Broadcast(4, 3, "int32")
    subscribed, closed, finish = FORK.Event(), FORK.Event(), FORK.Event()
    child = procs.start(FORK, _publish_and_close, bc, [1, 2, 3], subscribed, closed, finish)
    sub = bc.subscribe()
    subscribed.set()
    wait_for(closed)
    out = np.zeros(3, np.int32)
    assert value_of(sub.recv()) == 1
    sub.recv_into(out)
    assert value_of(out) == 2
    with sub.recv_view() as view:
        assert value_of(view) == 3
    started = time.monotonic()
    for call in (lambda: sub.recv(timeout=PATIENCE), lambda: sub.recv_view(block=False),
                 lambda: sub.recv_into(out, timeout=PATIENCE)):
        with pytest.raises(EOFError):
            call()
    assert time.monotonic() - started < 1.0
    finish.set()
    procs.join(child)


def _publish_and_hang(bc, values, subscribed, ready, never):
    wait_for(subscribed)
    for value in values:
        bc.send(np.full(bc.shape, value, bc.dtype))
    ready.set()
    never.wait(PATIENCE)


def test_eof_after_the_writer_dies(start_method, procs):
    bc = Broadcast(4, 3, "int32")
    subscribed, ready, never = start_method.Event(), start_method.Event(), start_method.Event()
    child = procs.start(start_method, _publish_and_hang, bc, [1, 2], subscribed, ready, never)
    sub = bc.subscribe()
    subscribed.set()
    wait_for(ready)
    assert value_of(sub.recv()) == 1
    sigkill(child)
    assert value_of(sub.recv()) == 2          # published before the death: still there
    started = time.monotonic()
    with pytest.raises(EOFError):
        sub.recv(timeout=PATIENCE)
    assert time.monotonic() - started < 2.0


def test_dropping_the_writers_handle_is_eof_for_its_own_subscribers():
    import gc
    bc = Broadcast(4, 3, "int32")
    sub = bc.subscribe()
    bc.send(frame_of(bc, 1))
    del bc                                     # the subscriber does not keep it alive
    gc.collect()
    assert value_of(sub.recv()) == 1
    with pytest.raises(EOFError):
        sub.recv(timeout=PATIENCE)


def test_a_subscriber_blocked_before_the_writer_dies_gets_eof(procs):
    bc = Broadcast(4, 3, "int32")
    subscribed, ready, never = FORK.Event(), FORK.Event(), FORK.Event()
    child = procs.start(FORK, _publish_and_hang, bc, [1], subscribed, ready, never)
    sub = bc.subscribe()
    subscribed.set()
    wait_for(ready)
    assert value_of(sub.recv()) == 1
    killer = Call(sigkill, child)             # while this thread waits in recv
    killer.start()
    started = time.monotonic()
    with pytest.raises(EOFError):
        sub.recv(timeout=PATIENCE)
    assert time.monotonic() - started < 2.0
    assert killer.outcome(PATIENCE) == (None, None)


def test_a_subscriber_blocked_when_the_writer_closes_gets_eof(procs):
    bc = Broadcast(4, 3, "int32")
    bc.send(frame_of(bc, 0))                          # the parent is the writer
    ready, results = FORK.Event(), FORK.SimpleQueue()
    child = procs.start(FORK, _subscribe_then_wait_for_eof, bc, ready, results)
    wait_for(ready)
    wait_until_sleeping(child.pid)
    started = time.monotonic()
    bc.close()
    assert results.get() == "eof"
    assert time.monotonic() - started < 1.0
    procs.join(child)


def _subscribe_then_wait_for_eof(bc, ready, results):
    sub = bc.subscribe()
    ready.set()
    put_how_recv_ended(sub.recv, results)


# -- between processes ----------------------------------------------------------------------------

FANOUT_SHAPE = (5, 9)            # 360 bytes: a stride of 384
FANOUT_FRAMES = 2000


def _subscribe_and_check(bc, n, subscribed, results):
    sub = bc.subscribe()
    subscribed.release()
    out = np.zeros(bc.shape, bc.dtype)
    bad = None
    for i in range(n):
        kind = i % 3
        if kind == 0:
            frame = sub.recv()
        elif kind == 1:
            sub.recv_into(out)
            frame = out
        else:
            with sub.recv_view() as view:
                frame = np.array(view)
        if not (frame == i).all():
            bad = f"frame {i}: {frame.ravel()[:4]}"
            break
    if bad is None:
        try:
            sub.recv(timeout=PATIENCE)
            bad = "a frame after the last"
        except EOFError:
            pass
    results.put(bad or f"ok skipped={sub.skipped}")


def test_every_subscriber_process_gets_every_frame(start_method, procs):
    bc = Broadcast(4, FANOUT_SHAPE, "int64")
    subscribed = start_method.Semaphore(0)
    results = start_method.SimpleQueue()
    children = [procs.start(start_method, _subscribe_and_check, bc, FANOUT_FRAMES, subscribed,
                            results) for _ in range(2)]
    for _ in children:
        assert subscribed.acquire(timeout=PATIENCE)
    for i in range(FANOUT_FRAMES):
        if i % 2:
            with bc.reserve(timeout=PATIENCE) as frame:
                frame[...] = i
        else:
            bc.send(frame_of(bc, i), timeout=PATIENCE)
    bc.close()
    assert [results.get(), results.get()] == ["ok skipped=0"] * 2
    procs.join()


def _count_what_arrives(bc, n, subscribed, results):
    sub = bc.subscribe()
    subscribed.release()
    out = np.zeros(1, np.int64)
    for i in range(n):
        sub.recv_into(out)
        if out[0] != i:
            results.put(f"frame {i} holds {out[0]}")
            return
    results.put("ok")


def test_a_fast_stream_of_tiny_frames_reaches_every_subscriber_in_order(procs):
    bc = Broadcast(5, 1, "int64")
    n = 50_000
    subscribed, results = FORK.Semaphore(0), FORK.SimpleQueue()
    for _ in range(2):
        procs.start(FORK, _count_what_arrives, bc, n, subscribed, results)
    for _ in range(2):
        assert subscribed.acquire(timeout=PATIENCE)
    frame = np.zeros(1, np.int64)
    for i in range(n):
        frame[0] = i
        bc.send(frame, timeout=PATIENCE)
    assert [results.get(), results.get()] == ["ok", "ok"]
    procs.join()


def test_no_descriptor_or_segment_outlives_the_broadcast(start_method, procs, leak_guard):
    bc = Broadcast(4, FANOUT_SHAPE, "int64")
    subscribed = start_method.Semaphore(0)
    results = start_method.SimpleQueue()
    child = procs.start(start_method, _subscribe_and_check, bc, 100, subscribed, results)
    assert subscribed.acquire(timeout=PATIENCE)
    for i in range(100):
        bc.send(frame_of(bc, i), timeout=PATIENCE)
    bc.close()
    assert results.get() == "ok skipped=0"
    procs.join(child)
    results.close()
    del bc, child, subscribed
    leak_guard.check()


_BUSY_BUT_NEVER_WAITING = """
    import sys
    import numpy as np
    from fastmp._broadcast import Broadcast
    for policy in ("block", "skip"):
        bc = Broadcast(4, 8, "int64", policy=policy)
        subs = [bc.subscribe() for _ in range(2)]
        frame = np.zeros(8, np.int64)
        for i in range(int(sys.argv[1])):
            bc.send(frame)
            with bc.reserve() as f:
                f[0] = i
            for sub in subs:
                sub.recv()
                with sub.recv_view():
                    pass
    """


def test_no_futex_calls_while_nobody_sleeps(tmp_path):
    # Thousands of frames through the broadcast with nobody ever waiting: the
    # number of futex system calls must not grow with them (no FUTEX_WAKE
    # when nobody sleeps); a few come from the interpreter and NumPy.
    assert_futex_calls_do_not_grow(tmp_path, _BUSY_BUT_NEVER_WAITING)


_AFTER_A_SLEEPER_DIED = """
    import multiprocessing, os, signal, sys, time
    import numpy as np
    from fastmp._broadcast import Broadcast
    """ + ASLEEP_IN_A_FUTEX + """

    def subscriber(bc, w):
        sub = bc.subscribe()
        os.write(w, b"s")
        sub.recv()                       # sleeps in the futex until killed

    bc = Broadcast(4, 8, "int64", policy=sys.argv[2])
    r, w = os.pipe()
    child = multiprocessing.get_context("fork").Process(target=subscriber, args=(bc, w))
    child.start()
    os.read(r, 1)
    asleep(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    frame = np.zeros(8, np.int64)
    for i in range(int(sys.argv[1])):
        bc.send(frame)
    """


@pytest.mark.parametrize("policy", ["block", "skip"])
def test_a_subscriber_killed_asleep_does_not_cost_every_later_frame_a_wake(tmp_path, policy):
    # (block: the dead cursor holds the writer back once, for one wait slice)
    assert_futex_calls_do_not_grow(tmp_path, _AFTER_A_SLEEPER_DIED, policy)


# -- Ctrl-C ---------------------------------------------------------------------------------------

_BLOCKED_CALLS = {
    "subscriber_recv": ("bc = Broadcast(2, 3); sub = bc.subscribe()\n"
                        "print('ready', flush=True); sub.recv()"),
    "subscriber_recv_view": ("bc = Broadcast(2, 3); sub = bc.subscribe()\n"
                             "print('ready', flush=True); sub.recv_view()"),
    "reserve_held_back": ("bc = Broadcast(1, 3); sub = bc.subscribe()\n"
                          "bc.reserve().commit()\n"
                          "print('ready', flush=True); bc.reserve()"),
    "send_held_back": ("import numpy\nbc = Broadcast(1, 3); sub = bc.subscribe()\n"
                       "bc.send(numpy.zeros(3, 'f4'))\n"
                       "print('ready', flush=True); bc.send(numpy.zeros(3, 'f4'))"),
}


@pytest.mark.parametrize("call", sorted(_BLOCKED_CALLS))
def test_ctrl_c_interrupts_a_blocked_call_promptly(call, tmp_path):
    code = "from fastmp._broadcast import Broadcast\n" + _BLOCKED_CALLS[call]
    assert_ctrl_c_interrupts_promptly(code, tmp_path)


# -- without NumPy --------------------------------------------------------------------------------

_WITHOUT_NUMPY = """
    import array, sys
    sys.modules["numpy"] = None
    from fastmp._broadcast import Broadcast
    bc = Broadcast(2, (2, 2), "i", policy="skip")
    assert bc.dtype == "i"
    sub = bc.subscribe()
    with bc.reserve() as frame:
        assert isinstance(frame, memoryview) and frame.format == "i" and frame.shape == (2, 2)
        frame[1, 1] = 7
    bc.send(array.array("i", [1, 2, 3, 4]))
    got = sub.recv()
    assert isinstance(got, memoryview) and got.tolist()[1][1] == 7
    with sub.recv_view() as view:
        assert view.readonly and view.tolist() == [[1, 2], [3, 4]]
    try:
        view.tolist()
    except ValueError:
        pass
    else:
        raise AssertionError("a released view still works")
    out = array.array("i", [0] * 4)
    bc.send(array.array("i", [5, 6, 7, 8]))
    sub.recv_into(out)                           # a flat buffer of the frame's items
    assert out.tolist() == [5, 6, 7, 8]
    # a view lapped by the writer: FrameOverwritten on release
    from fastmp import FrameOverwritten
    bc.send(array.array("i", [1] * 4))
    frame = sub.recv_view()
    with frame as lapped:
        for _ in range(2):
            bc.send(array.array("i", [2] * 4))
        try:
            frame.release()
        except FrameOverwritten:
            pass
        else:
            raise AssertionError("no FrameOverwritten")
    assert sub.skipped == 1, sub.skipped
    assert Broadcast(1, 2).dtype == "f"          # the default works without NumPy
    assert "numpy" not in sys.modules or sys.modules["numpy"] is None
    print("ok")
    """


def test_without_numpy_frames_are_memoryviews(tmp_path):
    assert fresh_python(_WITHOUT_NUMPY, tmp_path).strip() == "ok"
