"""fastmp.Queue when processes die at the worst moment.

* a child SIGKILLed while it holds the ring's lock (robust mutex: EOWNERDEAD,
  recount, carry on);
* a writer SIGKILLed in the middle of a message larger than the ring (its
  partial message is discarded: that put never returned);
* a reader SIGKILLed in the middle of such a message (the rest is discarded);
* a process SIGKILLed while asleep waiting for data or room;
* producers and consumers SIGKILLed in the middle of heavy traffic.

Afterwards the queue works for everyone, no message is lost or duplicated
(beyond what the dead process itself held), nothing hangs, no /dev/shm entry
appears and the parent's descriptors return to their starting count once the
queues are dropped.

Where victims die.  Tests of the ring's own recovery make the victim die at a
known kind of point: it installs a SIGUSR1 handler that stops the process
(SIGSTOP); fastmp checks for signals between wait slices (holding the lock)
and while contending for the lock, so that is where it stops before the
SIGKILL.  test_killed_while_waiting_on_condition kills victims asleep in a
wait (this wedged the queue while waits were glibc process-shared condvars:
a regression test since 5e19ab2), and the traffic tests also kill wherever
the victim happens to be.

Processes are synchronised with Events, pipes, observable ring state and the
victims' /proc state (a stopped process cannot move anything), never with
sleeps; every process is joined with a timeout and stopped if it overstays
(conftest.Procs).
"""

import multiprocessing
import os
import queue
import random
import signal
import threading
import time
import zlib

import pytest

import fastmp
import fastmp.queues

SMALL_RING = 64 * 1024
BIG = 64 * 1024 * 1024       # a message 1024 times larger than the ring
TIMEOUT = 30.0

#: Offsets in a ring's shared header (fastmp/_ring_layout.h): the mutex on the
#: second 64-byte line, the wake-up words (futexes; formerly pthread condition
#: variables) not_empty and not_full on the third and fourth.
NOT_EMPTY_LINE = range(128, 192)
NOT_FULL_LINE = range(192, 256)

FORK = multiprocessing.get_context("fork")


# -- messages -------------------------------------------------------------------

#: Sources whose messages stay small: so that they fit the ring before anyone
#: reads (rather than wait in a feeder thread of a process about to die), or
#: so that a killed consumer never dies mid-stream (see
#: test_dead_stream_reader_is_not_blamed_for_the_next_stream).
SMALL_SOURCES = ("pre", "holder", "thread", "post", "after", "small0", "small1")


def body(src, seq):
    """Deterministic payload of message (src, seq); a producer's is larger
    than the ring when seq % 97 == 5."""
    big = seq % 97 == 5 and src not in SMALL_SOURCES
    size = 3 * SMALL_RING // 2 if big else (seq * 37) % 600
    return random.Random(zlib.crc32(f"{src}/{seq}".encode())).randbytes(size)


def message(src, seq):
    return (src, seq, body(src, seq))


def check_message(msg):
    src, seq, payload = msg
    assert payload == body(src, seq), f"corrupted message {src}/{seq}"
    return src, seq


def big_payload(size=BIG):
    # A pattern that tells any slice apart from a shifted one.
    return bytes(range(251)) * (size // 251) + bytes(size % 251)


def summary(obj):
    """Something small to send back instead of a 64 MB message."""
    if isinstance(obj, bytes):
        return ("bytes", len(obj), zlib.crc32(obj))
    return obj


# -- observing and stopping processes -------------------------------------------

def wait_until(predicate, what, timeout=TIMEOUT, interval=0.0005):
    """Wait for a condition that another process will make true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        if interval:
            time.sleep(interval)


def process_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def wait_stopped(pid):
    wait_until(lambda: process_state(pid) in ("T", "t"), f"process {pid} to stop")


def pause_on_sigusr1():
    """In a victim: SIGUSR1 stops this process where fastmp checks for
    signals (never inside a condition wait)."""
    signal.signal(signal.SIGUSR1, lambda signum, frame: os.kill(os.getpid(), signal.SIGSTOP))


def pause_victim(proc):
    """Stop a victim (see pause_on_sigusr1) and wait until it is stopped."""
    os.kill(proc.pid, signal.SIGUSR1)
    wait_stopped(proc.pid)


def kill(proc, procs):
    os.kill(proc.pid, signal.SIGKILL)
    procs.join(proc, exitcode=-signal.SIGKILL)


def lock_is_free(q, timeout):
    """Take and release the ring's lock from a helper thread (the probe
    changes nothing): (True, None) if that worked within `timeout`, else
    (False, the thread still waiting for the lock)."""
    probe = threading.Thread(target=q._ring.release_admitted, args=(0,), daemon=True)
    probe.start()
    probe.join(timeout)
    if probe.is_alive():
        return False, probe
    return True, None


def stop_outside_lock(q, pid, attempts=20):
    """SIGSTOP a process that will be continued later, at a moment it does
    not hold the ring's lock, so that the others can go on meanwhile."""
    for _ in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        wait_stopped(pid)
        free, probe = lock_is_free(q, 1.0)
        if free:
            return
        # Stopped while holding the lock: let it go on, try again.
        os.kill(pid, signal.SIGCONT)
        probe.join(TIMEOUT)
        assert not probe.is_alive()
    pytest.fail(f"process {pid} always held the lock when stopped")


def futex_offset_in_segment(pid):
    """If `pid` is (stopped) inside a futex syscall on a fastmp segment, the
    offset of that futex word in the segment, else None."""
    with open(f"/proc/{pid}/syscall") as f:
        fields = f.read().split()
    if not fields or fields[0] != "202":           # SYS_futex on x86-64
        return None
    addr = int(fields[1], 16)
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if "memfd:fastmp" in line:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if start <= addr < end:
                    return addr - start
    return None


def stop_inside_condition_wait(pid, line, attempts=200):
    """SIGSTOP `pid` while it sleeps in the futex of the wait condition on
    header `line` (read from /proc/<pid>/syscall: the futex word's address)."""
    for _ in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        wait_stopped(pid)
        if futex_offset_in_segment(pid) in line:
            return
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.001)  # let it get back into its wait (each slice re-enters it)
    pytest.fail(f"process {pid} never slept in the wait condition")


# -- child targets (module level: picklable for spawn/forkserver) -------------

def lock_holder(q, n, locked, never, *more_queues):
    for i in range(n):
        q.put(message("holder", i))
    # They are in the ring, not in a feeder thread that dies with us.
    assert q._unflushed == 0
    for locked_queue in (q,) + more_queues:
        locked_queue._ring._acquire_and_keep_lock()
    locked.set()
    never.wait(120)   # SIGKILLed long before


def producer(q, src, n, ready, victim=False):
    if victim:
        pause_on_sigusr1()
        # Wait in put() for room rather than hand messages to a feeder thread.
        fastmp.queues.ROOM_WAIT = TIMEOUT
    ready.set()
    seq = 0
    while seq < n:
        if seq % 5 == 2 and seq + 3 <= n and all(
                len(body(src, s)) < SMALL_RING // 4 for s in range(seq, seq + 3)):
            q.put_many([message(src, s) for s in range(seq, seq + 3)])
            seq += 3
        else:
            q.put(message(src, seq))
            seq += 1


def consumer(q, ready, conn, report_each=False, victim=False):
    """Take messages until None; send back the (src, seq) of each.  With
    report_each, report every message as soon as it is taken (so that a
    test that kills this consumer knows what it took)."""
    if victim:
        pause_on_sigusr1()
    ready.set()
    taken = []
    while True:
        msg = q.get(timeout=TIMEOUT)
        if msg is None:
            break
        ident = check_message(msg)
        if report_each:
            conn.send(ident)
        else:
            taken.append(ident)
    conn.send(("done", taken))
    conn.close()


def stream_writer(q, size, putting, put_returned, n_after, big_after=True):
    """Put one message of `size` bytes (put() itself streams it: it waits for
    a reader instead of handing it to the feeder thread), then n_after small
    ones and (big_after) one larger than the ring."""
    pause_on_sigusr1()
    fastmp.queues.ROOM_WAIT = TIMEOUT
    payload = big_payload(size)
    putting.set()
    q.put(payload)
    put_returned.set()
    for i in range(n_after):
        q.put(("after", i))
    if big_after:
        q.put(big_payload(3 * SMALL_RING // 2))


def stream_reader(q, ready, go, conn):
    pause_on_sigusr1()
    ready.set()
    go.wait(TIMEOUT)
    got = []
    while True:
        obj = q.get(timeout=TIMEOUT)
        if obj is None:
            break
        got.append(summary(obj))
    conn.send(got)
    conn.close()


def reporting_getter(q, conn, cmd=None):
    """Get messages forever, reporting each; with `cmd`, one per command."""
    while True:
        if cmd is not None:
            cmd.recv()
        conn.send(summary(q.get()))


def putter(q, objs, cmd=None):
    """Put `objs`; with `cmd`, one per command."""
    for obj in objs:
        if cmd is not None:
            cmd.recv()
        q.put(obj)


# -- a process dies holding the lock ------------------------------------------

@pytest.mark.timeout(60)
def test_lock_holder_killed(start_method, procs, leak_guard):
    ctx = start_method
    # Room for the pre and holder messages before anyone reads.
    q = fastmp.Queue(5000, capacity=4 * SMALL_RING)
    n_pre, n_holder, n_prod, n_thread, n_post = 50, 20, 300, 10, 30
    for i in range(n_pre):
        q.put(message("pre", i))

    locked, never = ctx.Event(), ctx.Event()
    holder = procs.start(ctx, lock_holder, q, n_holder, locked, never)
    assert locked.wait(TIMEOUT)
    assert holder.is_alive()

    # Others queue up behind the lock: two producers, a consumer and a
    # thread of the parent.
    readies = [ctx.Event() for _ in range(3)]
    prods = [procs.start(ctx, producer, q, f"p{i}", n_prod, readies[i]) for i in range(2)]
    r, w = ctx.Pipe(duplex=False)
    cons = procs.start(ctx, consumer, q, readies[2], w)
    w.close()
    thread = threading.Thread(
        target=lambda: [q.put(message("thread", i)) for i in range(n_thread)], daemon=True)
    thread.start()
    for ready in readies:
        assert ready.wait(TIMEOUT)

    kill(holder, procs)

    thread.join(TIMEOUT)
    assert not thread.is_alive()
    procs.join(*prods)
    # Everything so far goes to the consumer child, what follows the
    # sentinel to this process.
    q.put(None)
    for i in range(n_post):
        q.put(message("post", i))
    assert r.poll(TIMEOUT)
    tag, taken_by_child = r.recv()
    assert tag == "done"
    r.close()
    procs.join(cons)
    taken_by_parent = [check_message(q.get(timeout=TIMEOUT)) for _ in range(n_post)]
    assert taken_by_parent == [("post", i) for i in range(n_post)]

    taken = [tuple(t) for t in taken_by_child]
    assert len(taken) == len(set(taken)), "duplicated messages"
    expected = ([("pre", i) for i in range(n_pre)] + [("holder", i) for i in range(n_holder)]
                + [(f"p{p}", i) for p in range(2) for i in range(n_prod)]
                + [("thread", i) for i in range(n_thread)])
    assert sorted(taken) == sorted(expected), f"lost: {sorted(set(expected) - set(taken))}"
    # The count survived the recovery: the queue is empty and says so.
    assert q.qsize() == 0 and q.empty() and not q.full()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put("again")
    assert q.get(timeout=TIMEOUT) == "again"

    q.close()
    q.join_thread()
    del q
    leak_guard.check()


@pytest.mark.timeout(60)
def test_lock_holder_killed_while_others_wait_on_condition(start_method, procs, leak_guard):
    """A reader blocked on an empty queue and a writer blocked on a full one
    carry on after a process holding both queues' locks dies."""
    ctx = start_method
    q_empty = fastmp.Queue(capacity=SMALL_RING)
    q_full = fastmp.Queue(4, capacity=SMALL_RING)
    for i in range(4):
        q_full.put(message("pre", i))
    r, w = ctx.Pipe(duplex=False)
    readies = [ctx.Event(), ctx.Event()]
    cons = procs.start(ctx, consumer, q_empty, readies[0], w, True)
    w.close()
    prod = procs.start(ctx, producer, q_full, "p", 20, readies[1])
    for ready in readies:
        assert ready.wait(TIMEOUT)

    locked, never = ctx.Event(), ctx.Event()
    holder = procs.start(ctx, lock_holder, q_empty, 0, locked, never, q_full)
    assert locked.wait(TIMEOUT)
    kill(holder, procs)

    got_full = [check_message(q_full.get(timeout=TIMEOUT)) for _ in range(24)]
    assert got_full == [("pre", i) for i in range(4)] + [("p", i) for i in range(20)]
    procs.join(prod)
    for i in range(50):
        q_empty.put(message("after", i))
    q_empty.put(None)
    got = []
    while True:
        assert r.poll(TIMEOUT)
        item = r.recv()
        if item[0] == "done":
            break
        got.append(tuple(item))
    r.close()
    procs.join(cons)
    assert got == [("after", i) for i in range(50)]
    for q in (q_empty, q_full):
        assert q.qsize() == 0 and q.empty()
        q.close()
        q.join_thread()
    del q, q_empty, q_full
    leak_guard.check()


# -- a streaming writer dies mid-message --------------------------------------

def start_stream(ctx, procs, q, n_after=0, size=BIG, big_after=True):
    """A reader (gated by `go`) and a writer that streams a message of `size`
    bytes (BIG); returns once the writer has filled the ring, before anyone
    reads."""
    ring = q._ring
    ready, go, putting, put_returned = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    r, w = ctx.Pipe(duplex=False)
    reader = procs.start(ctx, stream_reader, q, ready, go, w, name="reader")
    w.close()
    assert ready.wait(TIMEOUT)
    writer = procs.start(ctx, stream_writer, q, size, putting, put_returned, n_after,
                         big_after, name="writer")
    assert putting.wait(TIMEOUT)
    # The stream's header is in the ring (count 1) and the ring is full.
    wait_until(lambda: ring.count == 1 and ring.used_bytes == ring.capacity,
               "the writer to fill the ring")
    return reader, writer, go, put_returned, r


def let_reader_take_stream(q, go):
    go.set()
    # The reader takes the header (count drops to 0): it is receiving.
    wait_until(lambda: q._ring.count == 0, "the reader to take the stream", interval=0)


@pytest.mark.timeout(60)
def test_stream_writer_killed_while_reader_receives(start_method, procs, leak_guard):
    ctx = start_method
    q = fastmp.Queue(capacity=SMALL_RING)
    ring = q._ring
    reader, writer, go, put_returned, r = start_stream(ctx, procs, q)
    let_reader_take_stream(q, go)
    # A slow reader: stopped (not holding the lock) while the writer fills
    # the ring again and waits, mid-message.
    stop_outside_lock(q, reader.pid)
    wait_until(lambda: ring.used_bytes == ring.capacity, "the writer to fill the ring")
    assert ring.count == 0  # a stream is being received, nothing else is there
    pause_victim(writer)
    assert not put_returned.is_set()
    kill(writer, procs)
    os.kill(reader.pid, signal.SIGCONT)

    # The reader does not hang on the dead stream, and later messages flow.
    after = [("after", 0), big_payload(3 * SMALL_RING // 2), ("after", 1)]
    for obj in after:
        q.put(obj)
    q.put(None)
    assert r.poll(TIMEOUT), "the reader hung"
    got = r.recv()
    r.close()
    procs.join(reader)
    assert got == [summary(obj) for obj in after]
    assert (ring.count, ring.pending, ring.used_bytes) == (0, 0, 0)
    assert q.qsize() == 0 and q.empty()
    q.put("again")
    assert q.get(timeout=TIMEOUT) == "again"

    q.close()
    q.join_thread()
    del q, ring
    leak_guard.check()


@pytest.mark.parametrize("cleaner", ["next_reader", "next_writer"])
@pytest.mark.timeout(60)
def test_stream_writer_killed_before_anyone_reads(cleaner, procs, leak_guard_for):
    guard = leak_guard_for(FORK)
    q = fastmp.Queue(capacity=SMALL_RING)
    ring = q._ring
    reader, writer, go, put_returned, r = start_stream(FORK, procs, q)
    pause_victim(writer)
    kill(writer, procs)
    assert not put_returned.is_set()

    if cleaner == "next_reader":
        # The partial message is discarded, not delivered, and get does not hang.
        with pytest.raises(queue.Empty):
            q.get(timeout=0.2)
        assert q.qsize() == 0 and q.empty()
    q.put(("after", 0))
    q.put_many([("after", 1), ("after", 2)])
    go.set()  # the reader child takes it from here
    q.put(big_payload(3 * SMALL_RING // 2))
    q.put(None)
    assert r.poll(TIMEOUT), "the reader hung"
    got = r.recv()
    r.close()
    procs.join(reader)
    assert got == [("after", 0), ("after", 1), ("after", 2),
                   summary(big_payload(3 * SMALL_RING // 2))]
    assert q.qsize() == 0 and q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.close()
    q.join_thread()
    del q, ring
    guard.check()


# -- a streaming reader dies mid-message --------------------------------------

@pytest.mark.timeout(60)
def test_stream_reader_killed_mid_message(start_method, procs, leak_guard):
    ctx = start_method
    q = fastmp.Queue(capacity=SMALL_RING)
    ring = q._ring
    reader, writer, go, put_returned, r = start_stream(ctx, procs, q, n_after=3)
    r.close()
    let_reader_take_stream(q, go)
    pause_victim(reader)
    assert not put_returned.is_set()
    kill(reader, procs)

    # The writer does not hang: the rest of its message is dropped, and what
    # it sends next arrives, alone.
    assert put_returned.wait(TIMEOUT), "the writer hung on a dead reader"
    got = [q.get(timeout=TIMEOUT) for _ in range(4)]
    assert got[:3] == [("after", i) for i in range(3)]
    assert summary(got[3]) == summary(big_payload(3 * SMALL_RING // 2))
    procs.join(writer)
    assert (ring.count, ring.pending, ring.used_bytes) == (0, 0, 0)
    assert q.qsize() == 0 and q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()

    q.close()
    q.join_thread()
    del q, ring
    leak_guard.check()


@pytest.mark.timeout(60)
def test_dead_stream_reader_is_not_blamed_for_the_next_stream(procs):
    """A reader dies in the middle of a message slightly larger than the
    ring, after its writer has written all of it.  Complete messages put
    afterwards, and a later message larger than the ring, must still be
    delivered (only the dead reader's message may be dropped)."""
    q = fastmp.Queue(capacity=SMALL_RING)
    ring = q._ring
    size = SMALL_RING + SMALL_RING // 4  # what is left after one ring-full fits the ring
    reader, writer, go, put_returned, r = start_stream(FORK, procs, q, size=size,
                                                       big_after=False)
    r.close()
    # The writer has filled the ring: hold it there, let the reader take the
    # stream and drain the ring, then hold the reader.
    stop_outside_lock(q, writer.pid)
    go.set()
    wait_until(lambda: ring.count == 0 and ring.used_bytes == 0, "the reader to drain the ring")
    stop_outside_lock(q, reader.pid)
    # The writer writes the rest (it fits) and its put returns; the reader
    # dies with that rest unread.
    os.kill(writer.pid, signal.SIGCONT)
    assert put_returned.wait(TIMEOUT)
    procs.join(writer)
    assert 0 < ring.used_bytes < ring.capacity
    kill(reader, procs)

    later = [("after", i) for i in range(5)] + [big_payload(3 * SMALL_RING // 2)]
    for obj in later:
        q.put(obj)
    got = []
    for _ in later:
        try:
            got.append(summary(q.get(timeout=2.0)))
        except queue.Empty:
            break
    assert got == [summary(obj) for obj in later], f"lost {len(later) - len(got)} messages"


# -- processes killed in the middle of heavy traffic --------------------------

@pytest.mark.parametrize("how", ["at_signal_check", "anywhere"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.timeout(60)
def test_producer_killed_in_traffic(seed, how, procs, leak_guard_for):
    """Kill a producer once the consumer has seen some of its messages (at
    a signal check, or wherever it happens to be: copying, holding the lock,
    asleep, streaming): the dead producer's delivered messages are a
    gap-free prefix of what it put, everyone else's arrive exactly once, in
    order, intact."""
    guard = leak_guard_for(FORK)
    q = fastmp.Queue(capacity=SMALL_RING)
    n = 1500
    readies = [FORK.Event() for _ in range(2)]
    victim = procs.start(FORK, producer, q, "victim", 10 * n, readies[0], True)
    survivor = procs.start(FORK, producer, q, "survivor", n, readies[1])
    assert readies[0].wait(TIMEOUT)
    kill_after = random.Random(seed).randrange(50, 400)
    got = {"victim": [], "survivor": []}
    while len(got["victim"]) < kill_after:
        src, seq = check_message(q.get(timeout=TIMEOUT))
        got[src].append(seq)
    if how == "at_signal_check":
        pause_victim(victim)
    kill(victim, procs)
    while len(got["survivor"]) < n:
        src, seq = check_message(q.get(timeout=TIMEOUT))
        got[src].append(seq)
    procs.join(survivor)
    q.put(None)
    while (msg := q.get(timeout=TIMEOUT)) is not None:
        src, seq = check_message(msg)
        got[src].append(seq)
    assert got["survivor"] == list(range(n))
    assert got["victim"] == list(range(len(got["victim"])))
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.close()
    q.join_thread()
    del q
    guard.check()


@pytest.mark.parametrize("how", ["at_signal_check", "anywhere"])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.timeout(60)
def test_consumer_killed_in_traffic(seed, how, procs, leak_guard_for):
    """Kill one of two consumers mid-traffic: at most the one message it was
    taking is lost, none is duplicated, the other consumer gets the rest."""
    guard = leak_guard_for(FORK)
    q = fastmp.Queue(capacity=SMALL_RING)
    n = 1500
    readies = [FORK.Event() for _ in range(4)]
    pipes = [FORK.Pipe(duplex=False) for _ in range(2)]
    victim = procs.start(FORK, consumer, q, readies[0], pipes[0][1], True, True)
    survivor = procs.start(FORK, consumer, q, readies[1], pipes[1][1], False)
    for _, w in pipes:
        w.close()
    assert readies[0].wait(TIMEOUT)
    # Small messages only: see test_dead_stream_reader_is_not_blamed_for_the_next_stream.
    prods = [procs.start(FORK, producer, q, f"small{i}", n, readies[2 + i]) for i in range(2)]
    kill_after = random.Random(seed).randrange(50, 400)
    victim_took = []
    r_victim = pipes[0][0]
    while len(victim_took) < kill_after:
        assert r_victim.poll(TIMEOUT)
        victim_took.append(tuple(r_victim.recv()))
    if how == "at_signal_check":
        pause_victim(victim)
    kill(victim, procs)
    while r_victim.poll(0):   # what it reported before dying
        try:
            victim_took.append(tuple(r_victim.recv()))
        except EOFError:
            break
    r_victim.close()
    procs.join(*prods)
    q.put(None)
    assert pipes[1][0].poll(TIMEOUT)
    tag, survivor_took = pipes[1][0].recv()
    pipes[1][0].close()
    procs.join(survivor)

    taken = victim_took + [tuple(t) for t in survivor_took]
    assert len(taken) == len(set(taken)), "duplicated messages"
    expected = {(f"small{p}", i) for p in range(2) for i in range(n)}
    missing = expected - set(taken)
    assert len(missing) <= 1, f"lost more than the message being taken: {sorted(missing)[:10]}"
    assert q.empty()
    q.close()
    q.join_thread()
    del q
    guard.check()


# -- a process killed while it sleeps in a condition wait ---------------------

@pytest.mark.parametrize("victim_kind", ["consumer_blocked_in_get", "writer_blocked_on_full_ring"])
@pytest.mark.timeout(60)
def test_killed_while_waiting_on_condition(victim_kind, procs):
    """The commonest way a worker dies (terminate() or kill of a consumer
    idle in get(); a producer killed while it waits for room) must not stop
    the queue for everyone else.

    After the victim dies inside its condition wait, a live process waits on
    the same condition and another one wakes it, message after
    message, each time once the waiter is seen asleep in it.  Every
    queue operation after the kill runs in a child: if one wedges, only
    children hang (and are killed).  (While waits were glibc process-shared
    condition variables, the dead waiter's group reference made the third
    wake-up block forever, holding the ring's mutex.)"""
    q = fastmp.Queue(capacity=SMALL_RING)
    ring = q._ring
    reports, report_w = FORK.Pipe(duplex=False)
    cmd_r, cmd = FORK.Pipe(duplex=False)
    if victim_kind == "consumer_blocked_in_get":
        victim = procs.start(FORK, reporting_getter, q, report_w)
        stop_inside_condition_wait(victim.pid, NOT_EMPTY_LINE)
        kill(victim, procs)
        # A free-running consumer (the waiter), a producer putting one
        # message per command (the waker).
        objs = [("after", i) for i in range(10)]
        waiter = procs.start(FORK, reporting_getter, q, report_w)
        procs.start(FORK, putter, q, objs, cmd_r)
        waiter_line = NOT_EMPTY_LINE
    else:
        putting, put_returned = FORK.Event(), FORK.Event()
        victim = procs.start(FORK, stream_writer, q, BIG, putting, put_returned, 0)
        assert putting.wait(TIMEOUT)
        wait_until(lambda: ring.count == 1 and ring.used_bytes == ring.capacity,
                   "the writer to fill the ring")
        stop_inside_condition_wait(victim.pid, NOT_FULL_LINE)
        kill(victim, procs)
        # A producer of messages larger than the ring (it waits for room
        # again and again: the waiter), a consumer taking one message per
        # command (the waker).
        objs = [big_payload(3 * SMALL_RING // 2 + 8 * i) for i in range(10)]
        waiter = procs.start(FORK, putter, q, objs)
        procs.start(FORK, reporting_getter, q, report_w, cmd_r)
        waiter_line = NOT_FULL_LINE
    report_w.close()
    cmd_r.close()

    got = []
    for _ in objs:
        wait_until(lambda: futex_offset_in_segment(waiter.pid) in waiter_line,
                   "the waiter to sleep in the wait condition", timeout=5.0)
        cmd.send("go")
        if not reports.poll(3.0):
            break
        got.append(reports.recv())
    reports.close()
    cmd.close()
    assert got == [summary(obj) for obj in objs], (
        f"the queue wedged after {len(got)} of {len(objs)} messages")


# -- a live process holds the lock: timeouts still hold -------------------

def _timed_call(op, q):
    if op == "get_nowait":
        q.get_nowait()
    elif op == "get_timeout":
        q.get(timeout=0.2)
    elif op == "put_nowait_unbounded":
        q.put_nowait("x")
    elif op == "put_timeout_full":
        q.put("y", timeout=0.2)


@pytest.mark.parametrize("op", ["get_nowait", "get_timeout", "put_nowait_unbounded",
                                "put_timeout_full"])
@pytest.mark.timeout(30)
def test_timeouts_hold_while_a_live_process_holds_the_lock(op, procs):
    """As with multiprocessing.Queue (whose get takes its lock with the
    caller's timeout and whose put never waits for a lock): non-blocking and
    timed calls return (or raise Empty/Full) on time."""
    q = fastmp.Queue(1 if op == "put_timeout_full" else 0, capacity=SMALL_RING)
    if op == "put_timeout_full":
        q.put("full")
    locked, never = FORK.Event(), FORK.Event()
    holder = procs.start(FORK, lock_holder, q, 0, locked, never)
    assert locked.wait(TIMEOUT)

    outcome = {}

    def call():
        started = time.monotonic()
        try:
            _timed_call(op, q)
            outcome["result"] = "returned"
        except (queue.Empty, queue.Full) as exc:
            outcome["result"] = type(exc).__name__
        outcome["seconds"] = time.monotonic() - started

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(1.0)
    on_time = not caller.is_alive()
    kill(holder, procs)   # lets a stuck call finish
    caller.join(TIMEOUT)
    assert not caller.is_alive()
    assert on_time, (f"{op} still blocked after 1 s (it returned {outcome['seconds']:.2f} s "
                     f"in, once the holder died)")
    expected = {"get_nowait": "Empty", "get_timeout": "Empty", "put_nowait_unbounded": "returned",
                "put_timeout_full": "Full"}[op]
    assert outcome["result"] == expected
    if op == "put_nowait_unbounded":
        assert q.get(timeout=TIMEOUT) == "x"
