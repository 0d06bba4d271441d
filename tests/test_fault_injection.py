"""Fault injection: producers and consumers SIGKILLed at random points.

test_crash_safety.py kills processes at chosen kinds of points (holding the
lock, mid-stream, asleep in a wait) a few times each.  Here children loop in
put/get/put_many/get_many (fastmp.Queue), send/recv/send_many/recv_many
(fastmp.Pipe) and FloatChannel send/recv/send_many/recv_many, and the parent
SIGKILLs them after a random delay, hundreds of times per run, within a time
budget per test (a minimum number of kills is asserted).

What must hold:

* every message whose put/send *returned* is delivered exactly once (a
  producer stores, after each call returns, how many of its messages have
  returned into a shared RawArray); a message whose call had not returned
  may or may not arrive, but never twice and never corrupted (each carries a
  CRC of its payload); with the parent as the only reader, delivery is
  exactly a gap-free prefix, and a put_many/send_many the producer died in
  arrives whole or not at all;
* the survivors keep working (and end cleanly when told to);
* nothing hangs (timeouts are only safety nets);
* nothing leaks: no /dev/shm entry, and this process's descriptors are back
  to their count once the objects are dropped (conftest.LeakGuard).

Messages are bytes (no pickle): a 16-byte header (incarnation, sequence,
size, crc32) and a payload of mixed sizes, some larger than the ring (they
stream).  The RNG seed is printed and repeated in every assertion message;
set FASTMP_FAULT_SEED to replay a run.
"""

import gc
import multiprocessing
import os
import queue
import random
import signal
import struct
import time
import zlib
from array import array

import numpy as np
import pytest

import fastmp
import fastmp._arena
import fastmp.queues
from fastmp._float_channel import FloatChannel

from conftest import LeakGuard

SEED = int(os.environ.get("FASTMP_FAULT_SEED", random.SystemRandom().randrange(2**32)))
FORK = multiprocessing.get_context("fork")
RING = 64 * 1024
BIG = RING + RING // 2          # larger than the ring: streamed
HDR = struct.Struct("<IIII")    # incarnation, sequence, payload size, crc32
MAX_BATCH = 8                   # put_many / send_many batch limit
MAX_GET = 8                     # get_many / recv_many batch limit
MAX_SEQ = 4096                  # a producer exits after this many messages
MAX_INC = 600                   # producer incarnations per chaos test
SAFETY = 30.0                   # joins and waits that must never run out
STOP = b""                      # sentinel for consumers


def where(rng_name):
    return f"(FASTMP_FAULT_SEED={SEED}, {rng_name})"


def seeded_rng(name):
    print(f"\n{name}: FASTMP_FAULT_SEED={SEED}")
    return random.Random(f"{SEED}/{name}")


# -- messages ---------------------------------------------------------------------

def make(inc, seq, rng, allow_big=True):
    if allow_big and rng.random() < 0.04:
        size = BIG
    else:
        size = rng.choice((0, 1, 7, 64, 500, 2000, rng.randrange(4000)))
    payload = rng.randbytes(size)
    return HDR.pack(inc, seq, size, zlib.crc32(payload)) + payload


def parse(msg):
    """(incarnation, seq) of an intact message; raises AssertionError if not."""
    msg = bytes(msg)
    assert len(msg) >= HDR.size, f"short message of {len(msg)} bytes"
    inc, seq, size, crc = HDR.unpack_from(msg)
    payload = msg[HDR.size:]
    assert len(payload) == size and zlib.crc32(payload) == crc, \
        f"corrupted message {inc}/{seq} ({len(payload)} of {size} bytes)"
    return inc, seq


# -- child targets ----------------------------------------------------------------

def producer(kind, chan, inc, acks, seed, limit=MAX_SEQ):
    """Put messages inc/0, inc/1, ... for ever (until `limit`), singly or in
    batches.  Before each call acks[MAX_INC + inc] = how many messages it
    puts; after it returns, acks[inc] = how many have returned."""
    fastmp.queues.ROOM_WAIT = 3600   # never buffer in this (mortal) process
    rng = random.Random(seed)
    put, put_many = ((chan.put, chan.put_many) if kind == "queue"
                     else (chan[1].send, chan[1].send_many))
    seq = 0
    while seq < limit:
        if rng.random() < 0.3:
            n = min(rng.randint(2, MAX_BATCH), limit - seq)
            batch = [make(inc, seq + i, rng, allow_big=False) for i in range(n)]
            acks[MAX_INC + inc] = n
            put_many(batch)
            seq += n
        else:
            msg = make(inc, seq, rng)
            acks[MAX_INC + inc] = 1
            put(msg)
            seq += 1
        acks[inc] = seq


def consumer(kind, chan, counts, bad, seed):
    """Take messages singly or in batches, counting each intact one in
    counts[inc * MAX_SEQ + seq]; exit at a STOP sentinel (putting back any
    extra sentinels its batch took)."""
    rng = random.Random(seed)
    if kind == "queue":
        get = chan.get
        get_many = lambda n: chan.get_many(max_messages_to_get=n)   # noqa: E731
        put_back = chan.put
    else:
        get = chan[0].recv
        get_many = lambda n: chan[0].recv_many(n)                   # noqa: E731
        put_back = chan[1].send
    while True:
        batch = get_many(rng.randint(1, MAX_GET)) if rng.random() < 0.4 else [get()]
        stops = 0
        for msg in batch:
            if msg == STOP:
                stops += 1
                continue
            try:
                inc, seq = parse(msg)
            except AssertionError:
                bad[0] += 1
                continue
            counts[inc * MAX_SEQ + seq] += 1
        if stops:
            for _ in range(stops - 1):
                put_back(STOP)
            return


def float_writer(ch, acks, seed):
    rng = random.Random(seed)
    ch.send(0.0)          # claims the writer role (never blocks: capacity >= 4)
    i = acks[0] = 1
    while True:
        if rng.random() < 0.5:
            ch.send(float(i))
            i += 1
        else:
            n = rng.choice((1, 2, 5, 17, 100, 1000, 5000))
            assert ch.send_many(array("d", range(i, i + n))) == n
            i += n
        acks[0] = i


def float_reader(ch, seen, seed):
    """Check the values come as 0, 1, 2, ...; seen[0] = how many taken,
    seen[1] = 1 on a gap or a duplicate."""
    rng = random.Random(seed)
    expect = 0
    while True:
        values = ch.recv_many(rng.randint(1, 3000)) if rng.random() < 0.5 else [ch.recv()]
        for v in values:
            if v != expect:
                seen[1] = 1
            expect = int(v) + 1
        seen[0] = expect


# -- helpers --------------------------------------------------------------------------

def reap(proc, allowed=(-signal.SIGKILL,)):
    proc.join(SAFETY)
    assert not proc.is_alive(), f"{proc} survived SIGKILL"
    code = proc.exitcode
    proc.close()
    assert code in allowed, f"exit code {code}, wanted one of {allowed}"
    return code


def kill(proc, allowed=(-signal.SIGKILL, 0)):
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return reap(proc, allowed)


def check_producer_delivery(seqs_by_inc, acks, incs, tag):
    """For a sole consumer: each incarnation's delivered seqs are exactly
    0..k-1 in order, where k is what had returned (acks[inc]) or that plus
    the whole of the call it died in or just after (put_many: all or
    nothing)."""
    for inc in incs:
        got = seqs_by_inc.get(inc, [])
        k, a, n = len(got), acks[inc], acks[MAX_INC + inc]
        assert got == list(range(k)), \
            f"incarnation {inc}: out of order/duplicated/lost: {got[:20]}... {tag}"
        assert k in (a, a + n), \
            f"incarnation {inc}: {k} delivered, {a} puts returned, the last call " \
            f"put {n} {tag}"


def check_no_leaks(guard, procs):
    """guard.check(), once the closed Process objects (whose arguments hold
    the test's shared objects) are forgotten and the arena fastmp keeps for
    its next small allocation (fastmp/_arena.py) is let go."""
    for p in procs.started:
        if p._closed:
            p._target, p._args, p._kwargs = None, (), {}
    procs.started[:] = [p for p in procs.started if not p._closed]
    fastmp._arena._arena = None
    gc.collect()
    guard.check()


# -- Queue and Pipe: random kills among two producers and two consumers --------------

def _channel(kind):
    if kind == "queue":
        return fastmp.Queue(capacity=RING)
    r, w = fastmp.Pipe(duplex=False, capacity=RING)
    return (r, w)


@pytest.mark.parametrize("kind", ["queue", "pipe"])
@pytest.mark.timeout(120)
def test_random_kills_among_producers_and_consumers(kind, procs):
    """Two producers and two consumers; every few milliseconds one of the
    four, at random, is SIGKILLed wherever it is and replaced.  Afterwards:
    no duplicate, no corrupted message, no message that was never put;
    every returned put delivered, except what killed consumers had taken
    (at most MAX_GET per consumer killed); the survivors drain and stop
    cleanly; no descriptor is left over."""
    name = f"chaos-{kind}"
    rng = seeded_rng(name)
    tag = where(name)
    guard = LeakGuard(FORK)
    chan = _channel(kind)
    acks = fastmp.RawArray("q", 2 * MAX_INC)
    counts = fastmp.RawArray("b", MAX_INC * MAX_SEQ)
    bad = fastmp.RawArray("q", 1)
    next_inc = 0

    def start(role):
        nonlocal next_inc
        seed = rng.randrange(2**32)
        if role == "producer":
            next_inc += 1
            return procs.start(FORK, producer, kind, chan, next_inc - 1, acks, seed)
        return procs.start(FORK, consumer, kind, chan, counts, bad, seed)

    roles = ["producer", "producer", "consumer", "consumer"]
    live = [start(role) for role in roles]
    kills = {"producer": 0, "consumer": 0}
    budget = 6.0
    started = time.monotonic()
    while time.monotonic() - started < budget and next_inc < MAX_INC - 2:
        time.sleep(rng.uniform(0.001, 0.03))
        for i, proc in enumerate(live):          # producers that reached MAX_SEQ
            if roles[i] == "producer" and proc.exitcode is not None:
                reap(proc, (0,))
                live[i] = start("producer")
        i = rng.randrange(4)
        code = kill(live[i], (-signal.SIGKILL,) if roles[i] == "consumer"
                    else (-signal.SIGKILL, 0))
        kills[roles[i]] += code == -signal.SIGKILL
        live[i] = start(roles[i])
    # The end: kill the producers, let the consumers drain, stop them.
    for i in (0, 1):
        kills["producer"] += kill(live[i]) == -signal.SIGKILL
    put_stop = chan.put if kind == "queue" else chan[1].send
    # The parent, a survivor too, still puts and gets (one streamed) before stopping.
    extra = [make(MAX_INC - 1, s, rng) for s in range(20)] + [
        HDR.pack(MAX_INC - 1, 20, BIG, zlib.crc32(b"x" * BIG)) + b"x" * BIG]
    for msg in extra:
        put_stop(msg)
    put_stop(STOP)
    put_stop(STOP)
    for proc in live[2:]:
        proc.join(SAFETY)
        assert proc.exitcode == 0, f"consumer {proc} ended with {proc.exitcode} {tag}"
        proc.close()
    total_kills = kills["producer"] + kills["consumer"]
    print(f"{name}: {total_kills} kills ({kills}), {next_inc} producer incarnations, "
          f"{time.monotonic() - started:.1f} s")

    assert bad[0] == 0, f"{bad[0]} corrupted messages {tag}"
    c = np.frombuffer(counts, dtype=np.int8).reshape(MAX_INC, MAX_SEQ)
    assert c.min() >= 0 and c.max() <= 1, \
        f"duplicated messages: {np.argwhere(c > 1)[:10].tolist()} {tag}"
    assert c[MAX_INC - 1, :21].sum() == 21, f"the parent's messages were not all taken {tag}"
    missing, delivered = [], 0
    for inc in range(next_inc):
        a = acks[inc]
        assert c[inc, a + MAX_BATCH:].sum() == 0, \
            f"incarnation {inc}: delivered beyond what it put {tag}"
        missing += [(inc, int(s)) for s in np.flatnonzero(c[inc, :a] == 0)]
        delivered += int(c[inc].sum())
    print(f"{name}: {delivered} messages delivered, {len(missing)} lost with killed consumers")
    assert len(missing) <= kills["consumer"] * MAX_GET, \
        f"{len(missing)} returned puts lost, {kills['consumer']} consumers killed: " \
        f"{missing[:10]} {tag}"
    assert total_kills >= 40, f"only {total_kills} kills in {budget} s {tag}"

    # Nothing left, nothing leaked.
    if kind == "queue":
        assert chan.empty()
        chan.close()
        chan.join_thread()
    else:
        assert not chan[0].poll(0)
        chan[0].close()
        chan[1].close()
    chan = acks = counts = bad = c = put_stop = None   # drop them (start() still sees the names)
    check_no_leaks(guard, procs)


# -- one producer, the parent consuming: exact delivery; Pipe EOF ---------------------

def _producer_rounds(ctx, kind, procs, budget, min_rounds, name):
    """Round after round: a producer child puts into a fresh (pipe) or a
    long-lived (queue) channel, the parent reads (singly or in batches) and
    SIGKILLs it after a random delay, then reads the rest: for a pipe until
    EOFError, for a queue until it is empty.  The parent being the only
    reader, delivery must be exactly 0..k-1 with k covering every returned
    put."""
    rng = seeded_rng(name)
    tag = where(name)
    guard = LeakGuard(ctx)
    acks = fastmp.RawArray("q", 2 * MAX_INC)
    q = fastmp.Queue(capacity=RING) if kind == "queue" else None
    rounds = 0
    started = time.monotonic()
    while rounds < MAX_INC and time.monotonic() - started < budget:
        inc = rounds
        if kind == "queue":
            chan = q
            get = q.get
            get_many = lambda n, timeout=None: q.get_many(  # noqa: E731
                timeout=timeout, max_messages_to_get=n)
        else:
            r, w = fastmp.Pipe(duplex=False, capacity=RING)
            chan = (r, w)
            get = r.recv
            get_many = r.recv_many
        proc = procs.start(ctx, producer, kind, chan, inc, acks, rng.randrange(2**32), 10**9)
        if kind == "pipe":
            w.close()                               # the child holds the only writer
        seqs = []
        deadline = time.monotonic() + rng.uniform(0.0, 0.04)
        # Read while it produces (a pipe: poll first, so that the kill is ours to time).
        while time.monotonic() < deadline:
            if kind == "queue":
                try:
                    batch = (get_many(rng.randint(1, MAX_GET), timeout=0.005)
                             if rng.random() < 0.4 else [get(timeout=0.005)])
                except queue.Empty:
                    continue
            else:
                if not r.poll(0.005):
                    continue
                batch = get_many(rng.randint(1, MAX_GET)) if rng.random() < 0.4 else [get()]
            seqs += [parse(m)[1] for m in batch]
        kill(proc, (-signal.SIGKILL,))
        # The rest.
        while True:
            if kind == "queue":
                try:
                    batch = (get_many(MAX_GET, timeout=0.01) if rng.random() < 0.4
                             else [get(timeout=0.01)])
                except queue.Empty:
                    if q.empty():
                        break
                    continue
            else:
                assert r.poll(SAFETY), f"round {inc}: no EOF after the writer died {tag}"
                try:
                    batch = get_many(MAX_GET) if rng.random() < 0.4 else [get()]
                except EOFError:
                    break
            seqs += [parse(m)[1] for m in batch]
        check_producer_delivery({inc: seqs}, acks, [inc], tag)
        if kind == "pipe":
            with pytest.raises(EOFError):
                r.recv()
            r.close()
            del r, w
        del chan, get, get_many
        rounds += 1
    elapsed = time.monotonic() - started
    print(f"{name}: {rounds} rounds (kills) in {elapsed:.1f} s")
    assert rounds >= min_rounds, f"only {rounds} rounds {tag}"
    if q is not None:
        # Still works for the survivor, then nothing left.
        q.put(b"after")
        assert q.get(timeout=SAFETY) == b"after"
        assert q.empty()
        q.close()
        q.join_thread()
        del q
    del acks
    check_no_leaks(guard, procs)


@pytest.mark.parametrize("kind", ["queue", "pipe"])
@pytest.mark.timeout(120)
def test_killed_producer_delivers_every_returned_put_fork(kind, procs):
    _producer_rounds(FORK, kind, procs, budget=3.0, min_rounds=15, name=f"producer-{kind}-fork")


@pytest.mark.parametrize("kind", ["queue", "pipe"])
@pytest.mark.timeout(120)
def test_killed_producer_delivers_every_returned_put_forkserver(kind, procs):
    _producer_rounds(multiprocessing.get_context("forkserver"), kind, procs, budget=1.5,
                     min_rounds=4, name=f"producer-{kind}-forkserver")


# -- Pipe: the reader killed, the writer gets BrokenPipeError -------------------------

def pipe_reader(r, seen, seed):
    rng = random.Random(seed)
    expect = 0
    while True:
        batch = r.recv_many(rng.randint(1, MAX_GET)) if rng.random() < 0.4 else [r.recv()]
        for m in batch:
            try:
                _, seq = parse(m)
            except AssertionError:
                seen[1] = 1
                continue
            if seq != expect:
                seen[1] = 1
            expect = seq + 1
        seen[0] = expect


@pytest.mark.timeout(120)
def test_killed_pipe_reader_is_a_broken_pipe_for_the_writer(procs):
    """The parent sends (send, send_many, some messages streamed)
    to a child that reads; the child is SIGKILLed after a random delay; the
    parent's sends then raise BrokenPipeError (at the latest once the ring
    is full), and what the child got before dying was in order and intact."""
    name = "pipe-reader"
    rng = seeded_rng(name)
    tag = where(name)
    guard = LeakGuard(FORK)
    seen = fastmp.RawArray("q", 2)
    rounds = 0
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        r, w = fastmp.Pipe(duplex=False, capacity=RING)
        seen[0] = seen[1] = 0
        proc = procs.start(FORK, pipe_reader, r, seen, rng.randrange(2**32))
        r.close()
        kill_at = time.monotonic() + rng.uniform(0.0, 0.03)
        seq, killed, broke = 0, None, False
        while True:
            if killed is None and time.monotonic() >= kill_at:
                kill(proc, (-signal.SIGKILL,))
                killed = time.monotonic()
            if killed is not None:
                assert time.monotonic() - killed < SAFETY, f"no BrokenPipeError {tag}"
            try:
                if rng.random() < 0.3:
                    n = rng.randint(2, MAX_BATCH)
                    w.send_many([make(0, seq + i, rng, allow_big=False) for i in range(n)])
                    seq += n
                else:
                    w.send(make(0, seq, rng))
                    seq += 1
            except BrokenPipeError:
                broke = True
                break
        assert broke and killed is not None, f"BrokenPipeError before the reader died {tag}"
        # A dead (not closed) reader is noticed when a send would block
        # (README, Differences): smaller sends may still fit, never for long.
        for _ in range(RING // 8 + 2):
            try:
                w.send(b"more")
            except BrokenPipeError:
                break
        else:
            pytest.fail(f"sends to a dead reader keep succeeding {tag}")
        assert seen[1] == 0, f"round {rounds}: the reader saw a gap or corruption {tag}"
        assert seen[0] <= seq
        w.close()
        del r, w
        rounds += 1
    print(f"{name}: {rounds} rounds (kills) in {time.monotonic() - started:.1f} s")
    assert rounds >= 10, f"only {rounds} rounds {tag}"
    del seen
    check_no_leaks(guard, procs)


# -- FloatChannel --------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_float_channel_random_kills(procs):
    """Alternating rounds on fresh channels of random capacity: the writer
    child (send / send_many of up to 5000 values) is SIGKILLed and the
    parent reads everything it sent that returned, in order, then EOFError;
    or the reader child (recv / recv_many) is SIGKILLed and the parent,
    sending, gets BrokenPipeError."""
    name = "float-channel"
    rng = seeded_rng(name)
    tag = where(name)
    guard = LeakGuard(FORK)
    shared = fastmp.RawArray("q", 2)
    rounds = {"writer": 0, "reader": 0}
    started = time.monotonic()
    while time.monotonic() - started < 4.0:
        victim = "writer" if (rounds["writer"] + rounds["reader"]) % 2 == 0 else "reader"
        ch = FloatChannel(rng.choice((4, 16, 256, 4096)))
        shared[0] = shared[1] = 0
        if victim == "writer":
            proc = procs.start(FORK, float_writer, ch, shared, rng.randrange(2**32))
            deadline = time.monotonic() + SAFETY
            while shared[0] == 0:            # it holds the writer role
                assert time.monotonic() < deadline and proc.is_alive()
                time.sleep(0.0005)
            kill_at = time.monotonic() + rng.uniform(0.0, 0.02)
            got, killed = [], None
            while True:
                if killed is None and time.monotonic() >= kill_at:
                    kill(proc, (-signal.SIGKILL,))
                    killed = time.monotonic()
                try:
                    if rng.random() < 0.5:
                        got.extend(ch.recv_many(rng.randint(1, 3000), timeout=0.01))
                    else:
                        got.append(ch.recv(timeout=0.01))
                except queue.Empty:
                    # A dead writer is noticed within a wait slice (50 ms).
                    assert killed is None or time.monotonic() - killed < 5.0, \
                        f"no EOFError 5 s after the writer died {tag}"
                except EOFError:
                    assert killed is not None, f"EOFError while the writer lives {tag}"
                    break
            k, a = len(got), shared[0]
            assert got == list(range(k)), f"values out of order or lost {tag}"
            assert a <= k <= a + 5000, f"{k} values received, {a} sent {tag}"
        else:
            ch.send(0.0)
            proc = procs.start(FORK, float_reader, ch, shared, rng.randrange(2**32))
            deadline = time.monotonic() + SAFETY
            while shared[0] == 0:            # it holds the reader role
                assert time.monotonic() < deadline and proc.is_alive()
                time.sleep(0.0005)
            kill_at = time.monotonic() + rng.uniform(0.0, 0.02)
            i, killed = 1, None
            while True:
                if killed is None and time.monotonic() >= kill_at:
                    kill(proc, (-signal.SIGKILL,))
                    killed = time.monotonic()
                try:
                    if rng.random() < 0.5:
                        ch.send(float(i), timeout=SAFETY)
                        i += 1
                    else:
                        n = rng.choice((1, 3, 100, 2000))
                        ch.send_many(array("d", range(i, i + n)), timeout=SAFETY)
                        i += n
                except BrokenPipeError as exc:
                    assert killed is not None, f"BrokenPipeError while the reader lives {tag}"
                    assert 0 <= getattr(exc, "sent", 0)
                    break
                except queue.Full:
                    pytest.fail(f"a send blocked for {SAFETY} s {tag}")
            assert shared[1] == 0, f"the reader saw a gap or a duplicate {tag}"
            assert shared[0] <= i
        rounds[victim] += 1
        ch.close()
        del ch
    print(f"{name}: {rounds} rounds (kills) in {time.monotonic() - started:.1f} s")
    assert min(rounds.values()) >= 8, f"only {rounds} rounds {tag}"
    del shared
    check_no_leaks(guard, procs)
