"""Large arrays through Queue and Pipe: the side arena (fastmp/_side.pyx).

A message whose out-of-band buffers (NumPy arrays) add up to 512 KiB or more
is copied once, by its sender, into a region of shared memory beside the
ring; the receiver's arrays are views of that region, and the region is free
again when the last of them goes away.  These tests check that the arrays
arrive whole and writable, that regions are reused (no growth in a steady
stream), that a put that fails gives its region back, that a sender may exit
right after put(), and that a receiver or sender killed while holding a
region leaks nothing: the next sender takes the memory back.
"""

import gc
import os
import queue
import signal
import time

import pytest

import fastmp
from conftest import Call
from fastmp import _side
from fastmp._message import decode, encode
from fastmp._ring import PUT_WRITTEN_, FramedRing

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20
TIMEOUT = 30


def arena_of(q):
    return q._ring.side


def held_regions(arena):
    return arena.stats()["held"][0]


def big(i, n=MB):
    """A 4 MiB float32 array whose contents say which it is."""
    return np.full(n, i, dtype=np.float32)


# -- one process --------------------------------------------------------------

def test_large_array_arrives_whole_and_writable_as_a_view_of_the_arena():
    q = fastmp.Queue()
    sent = np.arange(MB, dtype=np.float32)
    q.put(sent)
    got = q.get(timeout=TIMEOUT)
    assert np.array_equal(got, sent)
    assert got.flags.writeable
    got[:] = -1                      # the receiver's own memory...
    assert sent[1] == 1.0            # ...not the sender's
    arena = arena_of(q)
    assert held_regions(arena) == 1  # the array lives in the arena
    del got
    gc.collect()
    assert held_regions(arena) == 0 and arena.stats()["free"][0] == 1


def test_small_arrays_still_travel_in_the_ring():
    q = fastmp.Queue()
    q.put(np.zeros(1000, dtype=np.float32))
    assert np.array_equal(q.get(timeout=TIMEOUT), np.zeros(1000, dtype=np.float32))
    assert arena_of(q).stats()["empty"][0] == 64


def test_read_only_array_arrives_writable():
    q = fastmp.Queue()
    sent = np.frombuffer(bytes(4 * MB), dtype=np.float32)
    assert not sent.flags.writeable
    q.put(sent)
    got = q.get(timeout=TIMEOUT)
    assert got.flags.writeable and np.array_equal(got, sent)


def test_several_arrays_and_other_objects_in_one_message():
    q = fastmp.Queue()
    obs = big(3)
    message = {"obs": obs, "small": np.arange(10), "reward": 1.5,
               "pair": (big(4, MB // 2), "label")}
    q.put(message)
    got = q.get(timeout=TIMEOUT)
    assert np.array_equal(got["obs"], obs) and np.array_equal(got["small"], np.arange(10))
    assert got["reward"] == 1.5 and got["pair"][1] == "label"
    assert np.array_equal(got["pair"][0], big(4, MB // 2))


def test_steady_stream_reuses_regions_instead_of_growing():
    q = fastmp.Queue()
    arena = arena_of(q)
    for i in range(50):
        q.put(big(i))
        got = q.get(timeout=TIMEOUT)
        assert got[0] == i and got[-1] == i
        del got
    stats = arena.stats()
    assert stats["free"][0] + stats["held"][0] <= 2
    assert arena.file_bytes() <= 4096 + 2 * 4 * MB


def test_a_batch_of_large_arrays_fits_a_small_ring():
    # Only the records go through the ring, so a batch of arrays far larger
    # than the ring is accepted whole (before, such a batch raised ValueError).
    q = fastmp.Queue(capacity=64 * 1024)
    q.put_many([big(i) for i in range(4)])
    got = q.get_many(timeout=TIMEOUT)
    assert [a[0] for a in got] == [0, 1, 2, 3]


def test_put_that_times_out_gives_its_region_back():
    q = fastmp.Queue(maxsize=1)
    q.put(1)
    with pytest.raises(queue.Full):
        q.put(big(1), timeout=0.01)
    with pytest.raises(queue.Full):
        q.put(big(1), block=False)
    stats = arena_of(q).stats()
    assert stats["writing"][0] == stats["queued"][0] == stats["held"][0] == 0


def wait_for(condition, what):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_capacity_bounds_the_bytes_waiting_in_the_side_arena():
    # A put waits for a reader to take what is queued in the side arena
    # beyond the ring's capacity, as it waits for ring room (a single
    # message larger than the capacity goes when nothing else waits).
    ring = FramedRing(64 * 1024)
    arena = ring.side
    ring.put(*encode(big(1)))
    assert arena.stats()["queued"][0] == 1
    sender = Call(ring.put, *encode(big(2)))
    sender.start()
    # Copied into its region, and waiting for the first message to be taken.
    wait_for(lambda: arena.stats()["writing"][0] == 1 and ring.writers_waiting == 1,
             "the second put to wait")
    assert ring.count == 1
    assert decode(*ring.get(timeout=TIMEOUT))[0] == 1
    assert sender.outcome() == (PUT_WRITTEN_, None)
    assert decode(*ring.get(timeout=TIMEOUT))[0] == 2


def test_queue_put_on_a_busy_side_arena_buffers_as_on_a_full_ring():
    q = fastmp.Queue(capacity=64 * 1024)
    q.put(big(1))
    q.put(big(2))           # no room for 0.1 s: buffered in this process
    assert arena_of(q).stats()["queued"][0] == 1
    assert q.get(timeout=TIMEOUT)[0] == 1
    assert q.get(timeout=TIMEOUT)[0] == 2


def test_many_arrays_kept_alive_fall_back_to_the_ring():
    # Every region entry held by an array the receiver keeps: later messages
    # take the ring's way (two copies), never fail.
    q = fastmp.Queue()
    kept = []
    for i in range(70):
        q.put(big(i, MB // 8))
        kept.append(q.get(timeout=TIMEOUT))
    assert [int(a[0]) for a in kept] == list(range(70))
    assert held_regions(arena_of(q)) == 64


def test_idle_regions_beyond_the_keep_limit_are_punched_out():
    old = _side._set_keep_bytes(4 * MB)
    try:
        q = fastmp.Queue()
        arena = arena_of(q)
        for i in range(3):
            q.put(big(i))
        got = [q.get(timeout=TIMEOUT) for _ in range(3)]
        del got
        gc.collect()
        stats = arena.stats()
        assert stats["free"] == (1, 4 * MB)      # one kept, two given back
        assert stats["empty"][0] == 63
    finally:
        _side._set_keep_bytes(old)


def test_pipe_recv_bytes_of_a_large_array_and_maxlength():
    import pickle
    r, w = fastmp.Pipe()
    sent = big(7)
    w.send(sent)
    with pytest.raises(OSError, match="maxlength"):
        r.recv_bytes(1000)                       # too long: stays in the pipe
    data = r.recv_bytes()
    assert len(data) > sent.nbytes
    assert np.array_equal(pickle.loads(data), sent)
    w.send(sent)
    assert np.array_equal(r.recv(), sent)


# -- across processes -----------------------------------------------------------

def put_and_exit(q, n):
    for i in range(n):
        q.put(big(i))
    # No join, no flush: put() has returned, so the messages are in the ring
    # and their regions belong to them.
    os._exit(0)


def test_sender_may_exit_right_after_put(start_method, procs, leak_guard):
    # Capacity for all three: with less, a put waits for a reader to take
    # the earlier ones (the capacity bounds bytes in flight in the side arena
    # too) and after 0.1 s buffers the message in the producer, as every
    # put on a full queue does, and a buffered message dies with os._exit.
    q = fastmp.Queue(capacity=16 * MB)
    child = procs.start(start_method, put_and_exit, q, 3)
    procs.join(child)
    got = [q.get(timeout=TIMEOUT) for _ in range(3)]
    assert [(a[0], a[-1]) for a in got] == [(0, 0), (1, 1), (2, 2)]
    del got, q
    leak_guard.check()


def receive_and_hold(q, holding):
    kept = q.get(timeout=TIMEOUT)
    assert kept[0] == 5
    holding.set()
    signal.pause()                 # holds the array until killed


def test_receiver_killed_while_holding_an_array_leaks_nothing(start_method, procs, leak_guard):
    q = fastmp.Queue()
    arena = arena_of(q)
    holding = start_method.Event()
    child = procs.start(start_method, receive_and_hold, q, holding)
    q.put(big(5))
    assert holding.wait(TIMEOUT)
    assert held_regions(arena) == 1
    os.kill(child.pid, signal.SIGKILL)
    procs.join(child, exitcode=-signal.SIGKILL)
    # The next large message takes the dead receiver's region back.
    q.put(big(6))
    assert held_regions(arena) == 0 and arena.stats()["queued"][0] == 1
    assert arena.file_bytes() == 4096 + 4 * MB
    assert q.get(timeout=TIMEOUT)[0] == 6
    del q, arena
    leak_guard.check()


def hold_region_and_die(q, size):
    lease = q._ring.side._hold_region(size)
    assert lease is not None
    os.kill(os.getpid(), signal.SIGKILL)   # killed mid-copy


def test_sender_killed_mid_copy_leaks_nothing(start_method, procs):
    q = fastmp.Queue()
    arena = arena_of(q)
    child = procs.start(start_method, hold_region_and_die, q, 4 * MB)
    procs.join(child, exitcode=-signal.SIGKILL)
    assert arena.stats()["writing"][0] == 1
    q.put(big(1))                          # reuses the dead sender's region
    assert arena.stats()["writing"][0] == 0
    assert arena.file_bytes() == 4096 + 4 * MB
    assert q.get(timeout=TIMEOUT)[0] == 1


def drop_inherited(holder, done):
    # A forked child has a copy of its parent's array (and of its lease):
    # dropping it must not give the parent's region back.
    holder.clear()
    gc.collect()
    done.set()


def test_forked_child_dropping_an_inherited_array_does_not_free_the_region(procs):
    import multiprocessing
    fork = multiprocessing.get_context("fork")
    q = fastmp.Queue()
    q.put(big(9))
    holder = [q.get(timeout=TIMEOUT)]
    done = fork.Event()
    child = procs.start(fork, drop_inherited, holder, done)
    assert done.wait(TIMEOUT)
    procs.join(child)
    assert held_regions(arena_of(q)) == 1
    q.put(big(10))                         # must not land on holder[0]'s memory
    assert q.get(timeout=TIMEOUT)[0] == 10
    assert holder[0][0] == 9 and holder[0][-1] == 9


def echo_arrays(conn, n):
    for _ in range(n):
        a = conn.recv()
        a += 1                      # writable, in shared memory
        conn.send(a)
    conn.close()


def test_pipe_round_trip_of_large_arrays(start_method, procs, leak_guard):
    ours, theirs = fastmp.Pipe()
    child = procs.start(start_method, echo_arrays, theirs, 5)
    theirs.close()
    for i in range(5):
        ours.send(big(i))
        back = ours.recv()
        assert back[0] == i + 1 and back[-1] == i + 1
    procs.join(child)
    del back
    ours.close()
    del ours
    leak_guard.check()


# -- traffic ----------------------------------------------------------------------

def produce_arrays(q, producer, count, seed):
    rng = np.random.default_rng(seed)
    for seq in range(count):
        n = int(rng.integers(SIDE_FLOATS // 2, 2 * SIDE_FLOATS))
        q.put((producer, seq, np.full(n, producer * 1000 + seq, dtype=np.float32)))


def consume_arrays(q, report, stop_after=None, holding=None):
    kept = []
    while True:
        message = q.get(timeout=TIMEOUT)
        if message is None:
            break
        producer, seq, array = message
        assert (array == producer * 1000 + seq).all(), "a torn or foreign array"
        report.send((producer, seq))
        if stop_after is not None:
            kept.append(array)               # held, as a slow learner would
            if len(kept) == stop_after:
                holding.set()
                signal.pause()               # killed here, holding its arrays
    report.close()


SIDE_FLOATS = 256 * 1024                     # 1 MiB of float32


def test_producers_and_consumers_with_one_killed_holding_arrays(start_method, procs):
    q = fastmp.Queue()
    reports_r, reports_w = start_method.Pipe(duplex=False)
    holding = start_method.Event()
    producers = [procs.start(start_method, produce_arrays, q, p, 30, p) for p in range(2)]
    # The victim is the only consumer until it holds three arrays (started
    # later, it could find the others had taken everything).
    victim = procs.start(start_method, consume_arrays, q, reports_w, 3, holding)
    assert holding.wait(TIMEOUT)
    consumers = [procs.start(start_method, consume_arrays, q, reports_w) for _ in range(2)]
    reports_w.close()
    os.kill(victim.pid, signal.SIGKILL)
    procs.join(victim, exitcode=-signal.SIGKILL)
    procs.join(*producers)
    for _ in consumers:
        q.put(None)
    seen = []
    while True:
        try:
            seen.append(reports_r.recv())
        except EOFError:
            break
    procs.join(*consumers)
    # Every message arrived exactly once (the victim's three included: it
    # reported them before it died holding them).
    assert sorted(seen) == [(p, s) for p in range(2) for s in range(30)]
    # The dead consumer's regions are taken back by the next sender.
    arena = arena_of(q)
    q.put(big(1))
    stats = arena.stats()
    assert stats["held"][0] == 0 and stats["queued"][0] == 1
    assert q.get(timeout=TIMEOUT)[0] == 1
