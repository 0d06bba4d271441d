"""fastmp.Queue across processes, under fork, spawn and forkserver.

The Queue reaches each child as a Process argument (inherited under fork,
DupFd while spawning otherwise).  Every child target is a module-level
function so spawn and forkserver can pickle it.  Processes are synchronised
with Events and pipes, never with sleeps, and always joined with a timeout.
"""

import gc
import queue
import random
import zlib

import numpy as np
import pytest

import fastmp

#: Small rings, so that "larger than the ring" and "ring full" are cheap to reach.
SMALL_RING = 64 * 1024

GET_TIMEOUT = 30.0


# -- payloads -------------------------------------------------------------------

def make_payload(producer, seq, size):
    """A deterministic payload: bytes, a NumPy array or a str, by sequence."""
    raw = raw_payload(producer, seq, size)
    flavour = seq % 5
    if flavour == 3 and size >= 8:
        return np.frombuffer(raw[: size - size % 8], dtype=np.float64).copy()
    if flavour == 4:
        return raw.hex()[:size]
    return raw


def raw_payload(producer, seq, size):
    """Deterministic bytes."""
    return random.Random(producer * 1_000_003 + seq).randbytes(size)


def payload_bytes(payload):
    if isinstance(payload, np.ndarray):
        return payload.tobytes()
    if isinstance(payload, str):
        return payload.encode()
    return bytes(payload)


def make_message(producer, seq, size):
    payload = make_payload(producer, seq, size)
    return (producer, seq, zlib.crc32(payload_bytes(payload)), payload)


def message_ok(msg):
    producer, seq, crc, payload = msg
    return zlib.crc32(payload_bytes(payload)) == crc


def mpmc_size(rnd, capacity):
    """Mostly small, some medium, a few larger than the ring."""
    r = rnd.random()
    if r < 0.70:
        return rnd.randrange(0, 200)
    if r < 0.93:
        return rnd.randrange(200, 8192)
    if r < 0.99:
        return rnd.randrange(8192, capacity // 2)
    return rnd.randrange(capacity + 1, 2 * capacity)


# -- child targets (module level: picklable for spawn/forkserver) -------------

def echo_child(q_in, q_out, capacity):
    """Echo everything from q_in to q_out until None, then send our own data,
    including messages larger than the ring."""
    while True:
        obj = q_in.get(timeout=GET_TIMEOUT)
        if obj is None:
            break
        q_out.put(("echo", obj))
    q_out.put(("child-array", np.arange(3 * capacity // 8 * 2, dtype=np.int64)))
    q_out.put(("child-bytes", bytes(range(256)) * (capacity // 128)))
    q_out.put(("child-2d", np.arange(12, dtype=np.float32).reshape(3, 4)))
    q_out.put(("child-done", None))


def mpmc_producer(q, producer, n, capacity, start):
    start.wait(GET_TIMEOUT)  # a Barrier: everyone starts together
    rnd = random.Random(producer)
    seq = 0
    while seq < n:
        if rnd.random() < 0.4:
            # put_many: a batch of small messages (must fit the ring together).
            k = min(rnd.randrange(1, 17), n - seq)
            batch = [make_message(producer, seq + i, rnd.randrange(0, 200)) for i in range(k)]
            q.put_many(batch)
            seq += k
        else:
            q.put(make_message(producer, seq, mpmc_size(rnd, capacity)))
            seq += 1


def mpmc_consumer(q, conn, consumer, start):
    """Take messages until a None sentinel; report (producer, seq, ok) per
    message, in the order this consumer took them."""
    start.wait(GET_TIMEOUT)
    rnd = random.Random(1000 + consumer)
    seen = []
    problems = []
    stop = False
    while not stop:
        if rnd.random() < 0.5:
            batch = [q.get(timeout=GET_TIMEOUT)]
        else:
            batch = q.get_many(timeout=GET_TIMEOUT, max_messages_to_get=rnd.randrange(1, 33))
        sentinels = 0
        for msg in batch:
            if msg is None:
                sentinels += 1
                stop = True
            elif stop:
                problems.append(f"message after a sentinel: {msg[:2]}")
            else:
                seen.append((msg[0], msg[1], message_ok(msg)))
        for _ in range(sentinels - 1):
            q.put(None)  # took another consumer's sentinel: give it back
    conn.send((seen, problems))
    conn.close()


def bounded_producer(q, producer, n, start):
    start.wait(GET_TIMEOUT)
    rnd = random.Random(50 + producer)
    seq = 0
    while seq < n:
        mode = seq % 4
        size = rnd.randrange(0, 1500)
        if mode == 0:
            q.put(make_message(producer, seq, size))
            seq += 1
        elif mode == 1:
            q.put(make_message(producer, seq, size), timeout=GET_TIMEOUT)
            seq += 1
        elif mode == 2 and seq + 2 <= n:
            q.put_many([make_message(producer, seq, size), make_message(producer, seq + 1, 10)])
            seq += 2
        else:
            msg = make_message(producer, seq, size)
            try:
                q.put_nowait(msg)
            except queue.Full:
                q.put(msg)
            seq += 1


def put_then_exit_child(q, n):
    for i in range(n):
        q.put(("small", i, raw_payload(7, i, 64)))
    q.put(("array", np.arange(100, dtype=np.int32)))


def put_more_than_ring_then_exit_child(q, n, capacity, done):
    """Put far more than the ring holds while nobody reads: every put must
    return (unbounded queue), and the feeder must flush it all at exit."""
    for i in range(n):
        q.put(("msg", i, raw_payload(8, i, 1024)))
        if i == n // 3:
            q.put(("big-bytes", raw_payload(9, 0, 3 * capacity)))
        if i == 2 * n // 3:
            q.put(("big-array", np.arange(capacity // 2, dtype=np.float64)))
    q.put(("last", n))
    done.set()


def put_more_than_ring_cancel_join_child(q, n, done):
    """As above, but cancel_join_thread(): exit at once, dropping whatever
    the feeder still holds (standard-library semantics)."""
    for i in range(n):
        q.put(("msg", i, raw_payload(8, i, 1024)))
    q.cancel_join_thread()
    done.set()


def relay_producer(q, n, start):
    start.wait(GET_TIMEOUT)
    for i in range(n):
        q.put(("relay", i, np.full(100, i, dtype=np.int32)))
    q.put(None)


def relay_consumer(q, conn):
    got = []
    while (msg := q.get(timeout=GET_TIMEOUT)) is not None:
        tag, i, arr = msg
        got.append((tag, i, bool(np.array_equal(arr, np.full(100, i, dtype=np.int32)))))
    conn.send(got)
    conn.close()


# -- tests --------------------------------------------------------------------

def assert_same(got, want):
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
    else:
        assert type(got) is type(want)
        assert got == want


@pytest.mark.timeout(60)
def test_queue_as_process_argument_both_ways(start_method, procs):
    cap = SMALL_RING
    q_in = fastmp.Queue(capacity=cap)
    q_out = fastmp.Queue(capacity=cap)
    items = [
        0, -1, 2**70, 3.5, "text", "", b"", b"raw bytes", bytearray(b"ba"),
        {"k": [1, 2, (3, 4)]}, (None, True),
        np.arange(1000, dtype=np.float64),
        np.arange(64 * 64, dtype=np.int16).reshape(64, 64),
        np.asfortranarray(np.arange(30, dtype=np.int32).reshape(5, 6)),
        np.zeros(0, dtype=np.uint8),
        bytes(range(256)) * (3 * cap // 256),            # larger than the ring
        np.arange(cap // 4, dtype=np.float64),           # 2x the ring
        ("nested", np.ones(5000, dtype=np.complex128)),  # larger than the ring, in a tuple
    ]
    child = procs.start(start_method, echo_child, q_in, q_out, cap)
    for item in items:
        q_in.put(item)
    q_in.put(None)

    for item in items:
        tag, got = q_out.get(timeout=GET_TIMEOUT)
        assert tag == "echo"
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], np.ndarray):
            assert got[0] == item[0]
            assert_same(got[1], item[1])
        elif isinstance(item, np.ndarray):
            assert_same(got, item)
            assert got.flags.writeable
        else:
            assert_same(got, item)

    tag, arr = q_out.get(timeout=GET_TIMEOUT)
    assert tag == "child-array"
    assert arr.nbytes > cap
    assert_same(arr, np.arange(3 * cap // 8 * 2, dtype=np.int64))
    arr[0] = 42  # received arrays are writable
    tag, raw = q_out.get(timeout=GET_TIMEOUT)
    assert tag == "child-bytes" and len(raw) > cap
    assert raw == bytes(range(256)) * (cap // 128)
    tag, arr2 = q_out.get(timeout=GET_TIMEOUT)
    assert tag == "child-2d"
    assert_same(arr2, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert q_out.get(timeout=GET_TIMEOUT) == ("child-done", None)

    procs.join(child)
    assert q_in.empty() and q_out.empty()
    assert q_in.qsize() == 0 and q_out.qsize() == 0


@pytest.mark.timeout(90)
def test_multi_producer_multi_consumer_exactly_once(start_method, procs):
    cap = SMALL_RING
    n_producers, n_consumers, per_producer = 3, 2, 1000
    q = fastmp.Queue(capacity=cap)
    start = start_method.Barrier(n_producers + n_consumers + 1)
    producers = [procs.start(start_method, mpmc_producer, q, p, per_producer, cap, start,
                             name=f"producer-{p}")
                 for p in range(n_producers)]
    pipes = [start_method.Pipe(duplex=False) for _ in range(n_consumers)]
    consumers = [procs.start(start_method, mpmc_consumer, q, w, c, start, name=f"consumer-{c}")
                 for c, (r, w) in enumerate(pipes)]
    for _, w in pipes:
        w.close()
    start.wait(GET_TIMEOUT)

    # Every producer's messages are in the queue (or consumed) once it has
    # exited: its feeder flushes before exit.  Only then the sentinels.
    procs.join(*producers, timeout=60)
    for _ in range(n_consumers):
        q.put(None)

    results = []
    for r, _ in pipes:
        assert r.poll(60), "a consumer did not report"
        results.append(r.recv())
        r.close()
    procs.join(*consumers)

    taken = []
    for seen, problems in results:
        assert not problems
        # Each consumer sees each producer's messages in the order they were put.
        last = {}
        for producer, seq, ok in seen:
            assert ok, f"corrupted message {producer}/{seq}"
            assert seq > last.get(producer, -1), f"producer {producer} out of order"
            last[producer] = seq
        taken.extend((producer, seq) for producer, seq, _ in seen)
    expected = {(p, s) for p in range(n_producers) for s in range(per_producer)}
    assert len(taken) == len(expected), "messages lost or duplicated"
    assert set(taken) == expected
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()


@pytest.mark.timeout(60)
def test_bounded_queue_under_contention(start_method, procs):
    maxsize = 8
    n_producers, per_producer = 3, 300
    # A small ring too: both the message count and the bytes limit bite.
    q = fastmp.Queue(maxsize, capacity=8 * 1024)

    for i in range(maxsize):
        q.put(("pre", i))
    assert q.full()
    assert q.qsize() == maxsize
    with pytest.raises(queue.Full):
        q.put_nowait(("pre", maxsize))
    with pytest.raises(queue.Full):
        q.put(("pre", maxsize), timeout=0.05)
    with pytest.raises(queue.Full):
        q.put_many([("pre", maxsize)], block=False)

    start = start_method.Event()
    producers = [procs.start(start_method, bounded_producer, q, p, per_producer, start,
                             name=f"producer-{p}")
                 for p in range(n_producers)]
    start.set()

    first = [q.get(timeout=GET_TIMEOUT) for _ in range(maxsize)]
    assert first == [("pre", i) for i in range(maxsize)]
    last = {}
    received = []
    for _ in range(n_producers * per_producer):
        msg = q.get(timeout=GET_TIMEOUT)
        # The count of messages in the ring never exceeds maxsize.
        assert q._ring.count <= maxsize
        producer, seq = msg[0], msg[1]
        assert message_ok(msg)
        assert seq > last.get(producer, -1)
        last[producer] = seq
        received.append((producer, seq))
    procs.join(*producers)
    assert sorted(received) == [(p, s) for p in range(n_producers) for s in range(per_producer)]
    assert q.empty() and not q.full() and q.qsize() == 0
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)


@pytest.mark.timeout(60)
def test_child_puts_then_exits_messages_not_lost(start_method, procs):
    q = fastmp.Queue(capacity=SMALL_RING)
    n = 100
    child = procs.start(start_method, put_then_exit_child, q, n)
    # Everything fits the ring: the child exits at once, before anyone reads.
    procs.join(child)
    for i in range(n):
        assert q.get(timeout=GET_TIMEOUT) == ("small", i, raw_payload(7, i, 64))
    tag, arr = q.get(timeout=GET_TIMEOUT)
    assert tag == "array"
    assert_same(arr, np.arange(100, dtype=np.int32))
    assert q.empty()


@pytest.mark.timeout(60)
def test_child_puts_more_than_ring_then_exits_feeder_flushes(start_method, procs):
    cap = SMALL_RING
    n = 300  # ~300 KiB of 1 KiB messages plus two messages larger than the ring
    q = fastmp.Queue(capacity=cap)
    done = start_method.Event()
    child = procs.start(start_method, put_more_than_ring_then_exit_child, q, n, cap, done)
    # Every put returns although nobody reads (an unbounded queue never blocks a put)...
    assert done.wait(GET_TIMEOUT), "puts blocked on an unbounded queue with nobody reading"
    # ...and the messages the ring could not hold are flushed as the child exits.
    for i in range(n):
        assert q.get(timeout=GET_TIMEOUT) == ("msg", i, raw_payload(8, i, 1024))
        if i == n // 3:
            assert q.get(timeout=GET_TIMEOUT) == ("big-bytes", raw_payload(9, 0, 3 * cap))
        if i == 2 * n // 3:
            tag, arr = q.get(timeout=GET_TIMEOUT)
            assert tag == "big-array"
            assert_same(arr, np.arange(cap // 2, dtype=np.float64))
    assert q.get(timeout=GET_TIMEOUT) == ("last", n)
    procs.join(child)
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()


@pytest.mark.timeout(60)
def test_child_cancel_join_thread_exits_without_flushing(start_method, procs):
    cap = SMALL_RING
    n = 300  # ~300 KiB: most of it waits in the child's feeder thread
    q = fastmp.Queue(capacity=cap)
    done = start_method.Event()
    child = procs.start(start_method, put_more_than_ring_cancel_join_child, q, n, done)
    assert done.wait(GET_TIMEOUT)
    # Nobody reads, yet the child exits: it does not wait for its feeder.
    procs.join(child)
    got = []
    while True:
        try:
            got.append(q.get(timeout=0.2))
        except queue.Empty:
            break
    # What reached the ring arrives, in order, intact; the rest is dropped.
    assert 0 < len(got) < n
    assert got == [("msg", i, raw_payload(8, i, 1024)) for i in range(len(got))]


@pytest.mark.timeout(60)
def test_queue_outlives_parent_reference(start_method, procs, segment_fds):
    """Children that received the Queue keep using it after the parent has
    dropped (and unmapped) its own copy."""
    segments_before = segment_fds()
    q = fastmp.Queue(capacity=SMALL_RING)
    start = start_method.Event()
    r, w = start_method.Pipe(duplex=False)
    producer = procs.start(start_method, relay_producer, q, 500, start)
    consumer = procs.start(start_method, relay_consumer, q, w)
    w.close()
    del q
    gc.collect()
    assert segment_fds() == segments_before, "the parent still holds the segment"
    start.set()
    assert r.poll(GET_TIMEOUT)
    got = r.recv()
    r.close()
    procs.join(producer, consumer)
    assert got == [("relay", i, True) for i in range(500)]
