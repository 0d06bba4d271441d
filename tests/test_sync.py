"""Waiting: the GIL is released, Ctrl-C interrupts, deadlines are honoured."""
import multiprocessing
import threading
import time

import pytest
from conftest import interrupted_output, start_fresh_python

import fastmp

pytestmark = pytest.mark.timeout(60)

_BLOCKED_CALLS = {
    "get": "q = fastmp.Queue(); print('ready', flush=True); q.get()",
    "get_many": "q = fastmp.Queue(); print('ready', flush=True); q.get_many()",
    "put_full": "q = fastmp.Queue(1); q.put(1); print('ready', flush=True); q.put(2)",
    # A message larger than the ring, nobody reading, and no fallback to the
    # producer's buffer: the put waits inside the stream for a reader.
    "put_stream": ("import fastmp.queues; fastmp.queues.ROOM_WAIT = 1e9; "
                   "q = fastmp.Queue(capacity=4096); print('ready', flush=True); q.put(b'x' * 100000)"),
}


@pytest.mark.parametrize("call", sorted(_BLOCKED_CALLS))
def test_ctrl_c_interrupts_a_blocked_call_promptly(call, tmp_path):
    child = start_fresh_python("import fastmp\n" + _BLOCKED_CALLS[call], tmp_path)
    _, err, elapsed = interrupted_output(child)
    assert "KeyboardInterrupt" in err
    assert child.returncode != 0
    assert elapsed < 2.0


def test_waiting_releases_the_gil():
    q = fastmp.Queue()
    waiter = threading.Thread(target=q.get)
    waiter.start()
    # While the other thread waits forever in get(), this one keeps running.
    deadline = time.monotonic() + 0.3
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    assert spins > 10_000
    q.put("wake up")
    waiter.join(5)
    assert not waiter.is_alive()


@pytest.mark.parametrize("timeout", [0.05, 0.3])
def test_get_deadline_is_honoured(timeout):
    q = fastmp.Queue()
    start = time.monotonic()
    with pytest.raises(fastmp.queues.Empty):
        q.get(timeout=timeout)
    elapsed = time.monotonic() - start
    assert timeout <= elapsed < timeout + 1.0


def test_blocked_getter_wakes_when_a_message_arrives():
    q = fastmp.Queue()
    got = []
    started = threading.Event()

    def getter():
        started.set()
        got.append(q.get(timeout=30))

    thread = threading.Thread(target=getter)
    thread.start()
    started.wait()
    q.put("hello")
    thread.join(10)
    assert got == ["hello"]


def _sleep_in_get(q):
    q.get()


def _sleep_in_put(q):
    q.put("blocked")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_waiters_killed_while_asleep_do_not_wedge_wake_ups(method):
    """A process SIGKILLed while it sleeps in get() or put() must not leave
    state behind that blocks later wake-ups (glibc's process-shared condvars
    do exactly that; fastmp sleeps on futex sequences instead)."""
    ctx = multiprocessing.get_context(method)
    empty, full = fastmp.Queue(), fastmp.Queue(1)
    full.put("occupant")
    sleepers = [ctx.Process(target=_sleep_in_get, args=(empty,)) for _ in range(2)]
    sleepers += [ctx.Process(target=_sleep_in_put, args=(full,)) for _ in range(2)]
    for p in sleepers:
        p.start()
    try:
        deadline = time.monotonic() + 30
        while empty._ring.readers_waiting < 2 or full._ring.writers_waiting < 2:
            assert time.monotonic() < deadline, "the children never fell asleep"
            time.sleep(0.005)
    finally:
        for p in sleepers:
            p.kill()
            p.join(10)
    # Every wake-up path still works: nobody hangs, nothing is lost.
    for i in range(200):
        empty.put(i)
        assert empty.get(timeout=5) == i
    assert full.get(timeout=5) == "occupant"
    full.put("next", timeout=5)
    assert full.get(timeout=5) == "next"
    waiter = threading.Thread(target=lambda: empty.get(timeout=10))
    waiter.start()
    empty.put("wake the live waiter")
    waiter.join(10)
    assert not waiter.is_alive()
