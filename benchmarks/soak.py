#!/usr/bin/env python3
"""Soak test: fastmp's primitives under mixed traffic from many processes at once.

    python benchmarks/soak.py                    # 60 s of traffic, 8 worker processes
    python benchmarks/soak.py --quick            # 10 s
    python benchmarks/soak.py --seconds 300 --processes 12

For a bounded time, N worker processes (default 8, on however many cores
there are) hammer fastmp together:

* producers and consumers on two shared fastmp.Queues, one unbounded and one
  bounded (maxsize), with put, put_many, get and get_many; messages from a
  few bytes to several MiB (larger than the 1 MiB ring: they stream through
  it), sent as raw bytes or as pickled tuples;
* a fastmp.Pipe ping-pong pair (send_bytes/recv_bytes, send/recv, and
  bursts of send_many/recv_many), the messages echoed back and compared;
* a FloatChannel stream (send/send_many, recv/recv_many);
* shared counters, incremented by every worker with
  ``with v.get_lock(): v.value += 1``.

Every message carries its producer's id, its sequence number and a CRC-32 of
both plus its payload.  Consumers check the CRC and that each producer's
messages arrive in order on each queue, and record every sequence number they
took.  At the end the parent checks that every message sent was received
exactly once (no loss, no duplicate, none left in a queue), that the
FloatChannel delivered every value in order, and that the counters are
exact.  It reports, at the start and at the end, the RSS of the parent and of
the workers (VmRSS), the parent's open descriptors and the entries of
/dev/shm, and the throughput of each kind of traffic.

Exit status 0 when everything checks out; 1, with the reason on stdout, on
any loss, duplicate, corruption, worker error or death, hang (a watchdog
stops everything and prints the stacks of the workers that hung), or leak
(more descriptors open in the parent once everything is closed than before
it started, or a new /dev/shm entry that this run made: one that the parent
or a worker had open or mapped, or whose name looks like fastmp's; other
programs on the machine may come and go in /dev/shm meanwhile, and are only
counted).  No worker outlives the run.
"""

import argparse
import faulthandler
import gc
import os
import queue
import random
import re
import signal
import struct
import sys
import time
import traceback
import zlib
from array import array
from multiprocessing.connection import wait

from _common import CTX, _stop, format_value, handle_sigterm, markdown_table, progress_printer

try:
    import fastmp
except ImportError:  # not installed: this checkout, built in place
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import fastmp

#: Message header: producer id, queue id, sequence number, payload length;
#: then the CRC-32 of header and payload.
HEADER = struct.Struct("<HHQI")
CRC = struct.Struct("<I")
PREFIX = HEADER.size + CRC.size

#: Queue ids: an unbounded queue and a bounded one.
QUEUES = (("unbounded", 0), ("bounded", 16))
#: Ring capacity of every queue and of the pipe (fastmp's default, 1 MiB).
CAPACITY = 1 << 20
#: Largest payload: several times the ring, so that some messages stream.
MAX_PAYLOAD = 4 << 20
#: Random bytes each producer slices its payloads from.
POOL_BYTES = MAX_PAYLOAD + (1 << 20)
#: How long a worker may wait on a get/recv before re-checking whether the
#: traffic is over (not a failure: the parent's watchdog catches hangs).
POLL = 0.05


class SoakFailure(Exception):
    """Something the soak test must report as a failure."""


# -- messages ----------------------------------------------------------------

def payload_size(rng):
    """Mostly small messages, some medium, a few larger than the ring."""
    r = rng.random()
    if r < 0.70:
        return rng.randint(1, 256)
    if r < 0.90:
        return rng.randint(257, 64 << 10)
    if r < 0.985:
        return rng.randint((64 << 10) + 1, 900 << 10)
    return rng.randint((1 << 20) + 1, MAX_PAYLOAD)


def make_message(rng, pool, producer, qid, seq, size, as_tuple):
    start = rng.randrange(0, len(pool) - size + 1)
    payload = pool[start:start + size]
    header = HEADER.pack(producer, qid, seq, size)
    crc = zlib.crc32(payload, zlib.crc32(header))
    if as_tuple:
        return ("m", producer, qid, seq, crc, payload)
    return header + CRC.pack(crc) + payload


def check_message(msg):
    """(producer, qid, seq, payload length) of a message whose checksum and
    length check out; SoakFailure otherwise."""
    if isinstance(msg, tuple):
        if len(msg) != 6 or msg[0] != "m":
            raise SoakFailure(f"unexpected object received: {_short(msg)}")
        _, producer, qid, seq, crc, payload = msg
        header = HEADER.pack(producer, qid, seq, len(payload))
        if zlib.crc32(payload, zlib.crc32(header)) != crc:
            raise SoakFailure(f"checksum mismatch (tuple) from producer {producer}, "
                              f"queue {qid}, seq {seq}, {len(payload)} bytes")
        return producer, qid, seq, len(payload)
    if not isinstance(msg, bytes) or len(msg) < PREFIX:
        raise SoakFailure(f"unexpected message received: {_short(msg)}")
    producer, qid, seq, size = HEADER.unpack_from(msg)
    (crc,) = CRC.unpack_from(msg, HEADER.size)
    view = memoryview(msg)
    if len(msg) - PREFIX != size:
        raise SoakFailure(f"length mismatch from producer {producer}, queue {qid}, seq {seq}: "
                          f"header says {size}, got {len(msg) - PREFIX} bytes")
    if zlib.crc32(view[PREFIX:], zlib.crc32(view[:HEADER.size])) != crc:
        raise SoakFailure(f"checksum mismatch (bytes) from producer {producer}, queue {qid}, "
                          f"seq {seq}, {size} bytes")
    return producer, qid, seq, size


def _short(obj):
    text = repr(obj)
    return text if len(text) <= 120 else text[:117] + "..."


class Counters:
    """The shared counters every worker increments: a Value('q') all
    workers share and one slot per worker in an Array('q')."""

    def __init__(self, workers):
        self.total = fastmp.Value("q", 0)
        self.slots = fastmp.Array("q", workers)


def tick(counters, slot):
    with counters.total.get_lock():
        counters.total.value += 1
    with counters.slots.get_lock():
        counters.slots[slot] += 1


# -- workers -------------------------------------------------------------------

def producer(index, slot, queues, counters, deadline, seed):
    rng = random.Random(seed)
    pool = rng.randbytes(POOL_BYTES)
    sent = [0] * len(queues)
    sent_bytes = [0] * len(queues)
    streamed = 0
    ticks = 0
    while time.monotonic() < deadline:
        qid = rng.randrange(len(queues))
        q, maxsize = queues[qid]
        as_tuple = rng.random() < 0.3
        if rng.random() < 0.3:
            # A batch of small messages under one lock (all or nothing).
            n = rng.randint(2, min(64, maxsize // 2) if maxsize else 64)
            sizes = [rng.randint(1, 2048) for _ in range(n)]
            batch = [make_message(rng, pool, index, qid, sent[qid] + i, size, as_tuple)
                     for i, size in enumerate(sizes)]
            q.put_many(batch)
        else:
            sizes = [payload_size(rng)]
            q.put(make_message(rng, pool, index, qid, sent[qid], sizes[0], as_tuple))
        for size in sizes:
            sent[qid] += 1
            sent_bytes[qid] += size
            streamed += size > CAPACITY
            tick(counters, slot)
            ticks += 1
    for qid, (q, _) in enumerate(queues):
        q.put(("done", index, qid, sent[qid]))
        q.close()
        q.join_thread()  # everything this process buffered is in the ring
    return {"sent": sent, "bytes": sent_bytes, "streamed": streamed, "ticks": ticks}


def consumer(index, slot, queues, done, producers, counters, seed):
    rng = random.Random(seed)
    last = {}       # (producer, qid) -> last sequence number taken
    bitmaps = {}    # (producer, qid) -> bytearray of the sequence numbers taken
    received = {}   # (producer, qid) -> count
    got_bytes = [0] * len(queues)
    ticks = 0
    active = list(range(len(queues)))
    calls = {"get": 0, "get_many": 0}
    while active:
        # Take from the first queue, in random order, that has something;
        # wait (briefly) only when none has.
        order = rng.sample(active, len(active))
        items = []
        for attempt, qid in enumerate(order + order[:1]):
            block = attempt == len(order)
            q = queues[qid][0]
            try:
                if rng.random() < 0.5:
                    items = [q.get(block, POLL)]
                    calls["get"] += 1
                else:
                    items = q.get_many(block, POLL, max_messages_to_get=rng.choice((4, 64, 1024)))
                    calls["get_many"] += 1
                break
            except queue.Empty:
                pass
        for msg in items:
            if isinstance(msg, tuple) and msg and msg[0] == "done":
                _, who, msg_qid, _count = msg
                if msg_qid != qid:
                    raise SoakFailure(f"queue {qid} delivered queue {msg_qid}'s end marker")
                with done.get_lock():
                    done[qid] += 1
                continue
            who, msg_qid, seq, size = check_message(msg)
            if msg_qid != qid:
                raise SoakFailure(f"queue {qid} delivered a message put on queue {msg_qid} "
                                  f"(producer {who}, seq {seq})")
            key = (who, qid)
            previous = last.get(key, -1)
            if seq <= previous:
                raise SoakFailure(f"order: consumer {index} took producer {who}'s seq {seq} on "
                                  f"queue {qid} after seq {previous}")
            last[key] = seq
            bitmap = bitmaps.get(key)
            if bitmap is None:
                bitmap = bitmaps[key] = bytearray()
            byte = seq >> 3
            if byte >= len(bitmap):
                bitmap.extend(bytes(byte + 1 - len(bitmap) + 4096))
            bitmap[byte] |= 1 << (seq & 7)
            received[key] = received.get(key, 0) + 1
            got_bytes[qid] += size
            tick(counters, slot)
            ticks += 1
        # A queue whose producers' end markers have all been taken (by any
        # consumer) is finished: everything put on it before them has been
        # taken too.
        active = [i for i in active if done[i] < producers]
    for q, _ in queues:
        q.close()
    return {"bitmaps": {key: bytes(b) for key, b in bitmaps.items()}, "received": received,
            "bytes": got_bytes, "ticks": ticks, "calls": calls}


def make_pipe_message(rng, pool, seq, size):
    start = rng.randrange(0, len(pool) - size + 1)
    payload = pool[start:start + size]
    header = HEADER.pack(0, 0, seq, size)
    return header + CRC.pack(zlib.crc32(payload, zlib.crc32(header))) + payload


def pipe_ping(slot, conn, counters, deadline, seed):
    """Sends messages and checks that each comes back unchanged."""
    rng = random.Random(seed)
    pool = rng.randbytes(POOL_BYTES)
    seq = trips = nbytes = bursts = 0
    while time.monotonic() < deadline:
        mode = rng.random()
        if mode < 0.1:
            # A burst: send_many of small objects, echoed back with send_many.
            n = rng.randint(2, 256)
            objs = [(seq + i, make_pipe_message(rng, pool, seq + i, rng.randint(1, 512)))
                    for i in range(n)]
            conn.send(("burst", n))
            conn.send_many(objs)
            back = []
            while len(back) < n:
                back += conn.recv_many(n - len(back))
            if back != objs:
                raise SoakFailure(f"pipe burst at seq {seq} came back changed")
            for _, msg in back:
                check_message(msg)
            seq += n
            bursts += 1
            nbytes += sum(len(m) for _, m in objs)
        else:
            msg = make_pipe_message(rng, pool, seq, payload_size(rng) if mode < 0.99
                                    else rng.randint(CAPACITY + 1, MAX_PAYLOAD))
            if mode < 0.55:
                conn.send(("bytes", len(msg)))
                conn.send_bytes(msg)
                echo = conn.recv_bytes()
            else:
                conn.send(("obj", seq, msg))
                echo = conn.recv()
                if not (isinstance(echo, tuple) and echo[:2] == ("obj", seq)):
                    raise SoakFailure(f"pipe echo of seq {seq} is {_short(echo)}")
                echo = echo[2]
            if echo != msg:
                raise SoakFailure(f"pipe echo of seq {seq} ({len(msg)} bytes) came back changed "
                                  f"({len(echo)} bytes)")
            check_message(echo)
            seq += 1
            nbytes += len(msg)
        trips += 1
        tick(counters, slot)
    conn.send(None)
    if conn.recv() != ("bye", seq):
        raise SoakFailure("pipe: the echo side disagrees on the message count")
    conn.close()
    return {"round_trips": trips, "messages": seq, "bytes": nbytes, "bursts": bursts, "ticks": trips}


def pipe_pong(slot, conn, counters):
    """Echoes whatever the other end sends, checking each message on the way."""
    expected = ticks = 0
    while True:
        command = conn.recv()
        if command is None:
            break
        if command[0] == "burst":
            n = command[1]
            got = []
            while len(got) < n:
                got += conn.recv_many(n - len(got))
            for i, (seq, msg) in enumerate(got):
                if seq != expected + i or check_message(msg)[2] != seq:
                    raise SoakFailure(f"pipe burst: expected seq {expected + i}, got {seq}")
            conn.send_many(got)
            expected += n
        elif command[0] == "bytes":
            msg = conn.recv_bytes()
            if len(msg) != command[1] or check_message(msg)[2] != expected:
                raise SoakFailure(f"pipe: bad message where seq {expected} was due")
            conn.send_bytes(msg)
            expected += 1
        else:
            _, seq, msg = command
            if seq != expected or check_message(msg)[2] != seq:
                raise SoakFailure(f"pipe: got seq {seq} where {expected} was due")
            conn.send(command)
            expected += 1
        tick(counters, slot)
        ticks += 1
    conn.send(("bye", expected))
    conn.close()
    return {"messages": expected, "ticks": ticks}


def float_writer(slot, channel, counters, deadline, seed):
    rng = random.Random(seed)
    sent = ticks = 0
    while time.monotonic() < deadline:
        if rng.random() < 0.5:
            channel.send(float(sent))
            sent += 1
        else:
            n = rng.choice((2, 64, 4096, 20000))   # 20000 > capacity: waits for room
            channel.send_many(array("d", range(sent, sent + n)))
            sent += n
        tick(counters, slot)
        ticks += 1
    channel.close()
    return {"sent": sent, "ticks": ticks}


def float_reader(slot, channel, counters, seed):
    rng = random.Random(seed)
    expected = ticks = 0
    buffer = array("d", bytes(8 * 1024))
    try:
        while True:
            r = rng.random()
            if r < 0.3:
                values = [channel.recv()]
            elif r < 0.65:
                values = channel.recv_many(rng.choice((1, 100, 5000)))
            else:
                values = buffer[:channel.recv_many(buffer)]
            if values[0] != expected or values[-1] != expected + len(values) - 1:
                raise SoakFailure(f"FloatChannel: expected {expected:.0f}.., got {values[0]!r}..")
            if len(values) > 1 and any(v != expected + i for i, v in enumerate(values)):
                raise SoakFailure(f"FloatChannel: a gap or corruption after {expected:.0f}")
            expected += len(values)
            tick(counters, slot)
            ticks += 1
    except EOFError:
        pass
    return {"received": expected, "ticks": ticks}


def _child_main(conn, func, args):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The parent's watchdog sends SIGUSR1 to a worker that hangs: its stack
    # goes to stderr before it is stopped.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        result = func(*args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


# -- measurements ----------------------------------------------------------------

def rss_kib(pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def fd_count():
    return len(os.listdir("/proc/self/fd"))


#: Names fastmp could plausibly give a /dev/shm entry (as in tests/conftest.py;
#: fastmp's segments are memfds and it should create none at all).
FASTMP_SHM_NAME = re.compile(r"fast_?mp|^fmp[-_.]", re.IGNORECASE)


def shm_in_use(pid="self"):
    """Names of the /dev/shm entries process `pid` has open or mapped."""
    names = set()
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                at = line.find(" /dev/shm/")
                if at >= 0:
                    names.add(line[at + 10:].split()[0])
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("/dev/shm/"):
                names.add(target[9:].split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return names


def shm_entries():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def mib(kib):
    return f"{kib / 1024:,.1f} MiB"


# -- the run ---------------------------------------------------------------------

def plan(processes, deadline, queues, counters, done, pipe_ends, channel, seed):
    """The workers: (role, func, args), one per process."""
    queue_workers = processes - 4
    producers = (queue_workers + 1) // 2
    consumers = queue_workers - producers
    roles = []
    slot = 0

    def add(role, func, *args):
        nonlocal slot
        roles.append((role, func, (slot,) + args))
        slot += 1

    for i in range(producers):
        roles.append((f"producer-{i}", producer, (i, slot, queues, counters, deadline, seed + slot)))
        slot += 1
    for i in range(consumers):
        roles.append((f"consumer-{i}", consumer,
                      (i, slot, queues, done, producers, counters, seed + slot)))
        slot += 1
    add("pipe-ping", pipe_ping, pipe_ends[0], counters, deadline, seed + slot)
    add("pipe-pong", pipe_pong, pipe_ends[1], counters)
    add("float-writer", float_writer, channel, counters, deadline, seed + slot)
    add("float-reader", float_reader, channel, counters, seed + slot)
    return roles, producers, consumers


def run(args, progress):
    handle_sigterm()
    seconds = 10.0 if args.quick and args.seconds is None else (args.seconds or 60.0)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    # fastmp keeps its current arena for small shared objects (Value, Array,
    # locks) open until it is full: make it exist before the baseline, so
    # that only descriptors the run leaves behind count.
    fastmp.Value("q", 0)
    gc.collect()
    before = {"rss_parent": rss_kib(), "fds": fd_count(), "shm": shm_entries()}
    progress(f"soak: {args.processes} worker processes, {seconds:g} s of traffic, seed {seed}")

    queues = [(fastmp.Queue(maxsize, capacity=CAPACITY), maxsize) for _, maxsize in QUEUES]
    counters = Counters(args.processes)
    done = fastmp.Array("i", len(queues))
    pipe_ends = fastmp.Pipe(capacity=CAPACITY)
    channel = fastmp.FloatChannel()
    began = time.monotonic()
    deadline = began + seconds
    roles, n_producers, n_consumers = plan(args.processes, deadline, queues, counters, done,
                                           pipe_ends, channel, seed)

    # Nothing of the workers (Process objects hold their arguments, and so
    # the queues) outlives run_workers: the leak check below sees only what
    # fastmp itself keeps open.
    shm_used = shm_in_use()
    results, samples, elapsed = run_workers(roles, args.watchdog, began, deadline, pipe_ends,
                                            counters, progress, shm_used)

    problems = verify(results, queues, counters, n_producers, n_consumers, roles)

    # Close everything, then look for leaks.
    for q, _ in queues:
        q.close()
    del q, queues, counters, done, pipe_ends, channel, roles
    gc.collect()
    after = {"rss_parent": rss_kib(), "fds": fd_count(), "shm": shm_entries()}
    if after["fds"] > before["fds"]:
        problems.append(f"LEAK: the parent has {after['fds'] - before['fds']} more open "
                        f"descriptors than before the run ({before['fds']} -> {after['fds']}): "
                        + ", ".join(sorted(_fd_targets())))
    shm_used |= shm_in_use()
    new_shm = after["shm"] - before["shm"]
    ours = {name for name in new_shm if name in shm_used or FASTMP_SHM_NAME.search(name)}
    after["shm_ours"], after["shm_others"] = ours, new_shm - ours
    after["shm_used"] = shm_used
    if ours:
        problems.append(f"LEAK: new /dev/shm entries left by this run: {', '.join(sorted(ours))}")

    report(args, seconds, seed, elapsed, before, after, samples, results, n_producers, n_consumers)
    return problems


def run_workers(roles, watchdog_seconds, began, deadline, pipe_ends, counters, progress,
                shm_used):
    """Start one process per role, sample their RSS (and the /dev/shm
    entries they use, added to `shm_used`) each second while the traffic
    runs, and collect what each reports.  Raises SoakFailure if a
    worker fails, dies or hangs; whatever happens, none is left running."""
    started = []   # (role, process)
    pending = {}   # result reader -> role
    results = {}
    samples = []   # (seconds since start, summed children RSS in KiB)
    try:
        for role, func, wargs in roles:
            reader, writer = CTX.Pipe(duplex=False)
            process = CTX.Process(target=_child_main, args=(writer, func, wargs),
                                  name=f"soak-{role}", daemon=True)
            process.start()
            writer.close()
            started.append((role, process))
            pending[reader] = role
        # The parent keeps no end of the traffic: a worker that dies is
        # then seen by its peer (end of file) rather than waited for.
        for end in pipe_ends:
            end.close()

        watchdog = deadline + watchdog_seconds
        # The first sample after a second of traffic: the workers are under way.
        next_sample = min(began + 1.0, deadline - 0.5)
        next_report = began + 10.0
        while pending:
            now = time.monotonic()
            if now >= watchdog:
                hung = sorted(pending.values())
                for role, process in started:
                    if role in hung and process.exitcode is None:
                        os.kill(process.pid, signal.SIGUSR1)   # stack to stderr
                time.sleep(1.0)
                raise SoakFailure(f"HANG: watchdog fired {watchdog_seconds:g} s after the traffic "
                                  f"ended; still running: {', '.join(hung)} (stacks on stderr)")
            if now >= next_sample and now < deadline:
                live = [p.pid for _, p in started if p.exitcode is None]
                samples.append((now - began, sum(rss_kib(pid) for pid in live)))
                for pid in live + ["self"]:
                    shm_used |= shm_in_use(pid)
                next_sample = now + 1.0
            if now >= next_report and now < deadline:
                progress(f"  {now - began:4.0f} s: {counters.total.value:,} counter ticks, "
                         f"workers' RSS {mib(samples[-1][1])}")
                next_report += 10.0
            wake = min(next_sample if now < deadline else now + 1.0, watchdog)
            for reader in wait(list(pending), max(0.01, wake - now)):
                role = pending.pop(reader)
                try:
                    status, payload = reader.recv()
                except EOFError:
                    process = dict(started)[role]
                    process.join(1.0)
                    raise SoakFailure(f"{role} died without reporting "
                                      f"(exit code {process.exitcode})") from None
                finally:
                    reader.close()
                if status != "ok":
                    raise SoakFailure(f"{role} failed:\n{payload}")
                results[role] = payload
                progress(f"  {time.monotonic() - began:5.1f} s: {role} done")
        for role, process in started:
            process.join(10.0)
            if process.exitcode != 0:
                raise SoakFailure(f"{role} reported but exited with code {process.exitcode}")
        elapsed = time.monotonic() - began
        return results, samples, elapsed
    finally:
        for reader in pending:
            reader.close()
        for _, process in started:
            _stop(process)
            try:
                process.close()   # its sentinel descriptor, and its place in _children
            except ValueError:    # still running after SIGKILL: nothing more to do
                pass


def _fd_targets():
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return out


def verify(results, queues, counters, n_producers, n_consumers, roles):
    problems = []
    consumers = [results[f"consumer-{i}"] for i in range(n_consumers)]
    for p in range(n_producers):
        sent = results[f"producer-{p}"]["sent"]
        for qid, (name, _) in enumerate(QUEUES):
            key = (p, qid)
            n = sent[qid]
            got = sum(c["received"].get(key, 0) for c in consumers)
            seen = duplicates = 0
            for c in consumers:
                bits = int.from_bytes(c["bitmaps"].get(key, b""), "little")
                duplicates += (seen & bits).bit_count()
                seen |= bits
            expected = (1 << n) - 1
            missing = (expected & ~seen).bit_count()
            extra = (seen & ~expected).bit_count()
            if missing or duplicates or extra or got != n:
                problems.append(f"queue {name}, producer {p}: sent {n:,}, received {got:,} "
                                f"(missing {missing:,}, duplicated {duplicates:,}, "
                                f"never sent {extra:,})")
    for q, _ in queues:
        try:
            leftover = q.get_nowait()
        except queue.Empty:
            continue
        problems.append(f"a queue still held a message after the run: {_short(leftover)}")
    ping, pong = results["pipe-ping"], results["pipe-pong"]
    if ping["messages"] != pong["messages"]:
        problems.append(f"pipe: {ping['messages']:,} sent, {pong['messages']:,} echoed")
    fw, fr = results["float-writer"], results["float-reader"]
    if fw["sent"] != fr["received"]:
        problems.append(f"FloatChannel: {fw['sent']:,} floats sent, {fr['received']:,} received")
    ticks = [results[role]["ticks"] for role, _, _ in roles]
    if counters.total.value != sum(ticks):
        problems.append(f"COUNTER: Value = {counters.total.value:,}, but the workers "
                        f"incremented it {sum(ticks):,} times")
    slots = list(counters.slots)
    if slots != ticks:
        bad = [(role, s, t) for (role, _, _), s, t in zip(roles, slots, ticks) if s != t]
        problems.append("COUNTER: Array slots differ from the workers' counts: "
                        + "; ".join(f"{r}: {s:,} vs {t:,}" for r, s, t in bad))
    return problems


def report(args, seconds, seed, elapsed, before, after, samples, results, n_producers, n_consumers):
    print(f"# fastmp soak: {args.processes} worker processes ({n_producers} queue producers, "
          f"{n_consumers} queue consumers, pipe ping + pong, FloatChannel writer + reader) "
          f"on {os.cpu_count()} CPUs")
    print(f"\n{seconds:g} s of traffic, {elapsed:.1f} s in all (seed {seed}); "
          f"fastmp {getattr(fastmp, '__version__', '?')} from {os.path.dirname(fastmp.__file__)}\n")
    first = samples[0][1] if samples else 0
    last = samples[-1][1] if samples else 0
    peak = max((s[1] for s in samples), default=0)
    first_at = f" (at {samples[0][0]:.0f} s)" if samples else ""
    last_at = f" (at {samples[-1][0]:.0f} s)" if samples else ""
    rows = [
        ("parent RSS", mib(before["rss_parent"]), mib(after["rss_parent"])),
        ("workers' RSS, summed", mib(first) + first_at, mib(last) + last_at + f", peak {mib(peak)}"),
        ("parent open descriptors", before["fds"], after["fds"]),
        ("/dev/shm entries", len(before["shm"]),
         f"{len(after['shm'])}: {len(after['shm_ours'])} new from this run"
         + (f", {len(after['shm_others'])} new from other programs" if after["shm_others"] else "")),
    ]
    print(markdown_table(("", "start", "end"), rows))
    used = after["shm_used"]
    print(f"\n/dev/shm entries open or mapped by the parent or a worker during the run: "
          f"{', '.join(sorted(used)) if used else 'none'}.")

    t = seconds
    rows = []
    producers = [results[f"producer-{i}"] for i in range(n_producers)]
    consumers = [results[f"consumer-{i}"] for i in range(n_consumers)]
    for qid, (name, maxsize) in enumerate(QUEUES):
        n = sum(p["sent"][qid] for p in producers)
        nbytes = sum(p["bytes"][qid] for p in producers)
        label = f"Queue {name}" + (f" (maxsize {maxsize})" if maxsize else "")
        rows.append((label, f"{n:,} messages", format_value(n / t, "msg/s"),
                     format_value(nbytes / t / 1e6, "MB/s")))
    streamed = sum(p["streamed"] for p in producers)
    calls = {k: sum(c["calls"][k] for c in consumers) for k in ("get", "get_many")}
    ping = results["pipe-ping"]
    rows.append(("Pipe ping-pong", f"{ping['round_trips']:,} round trips",
                 format_value(ping["round_trips"] / t, "msg/s").replace("msg/s", "trips/s"),
                 format_value(2 * ping["bytes"] / t / 1e6, "MB/s")))
    floats = results["float-writer"]["sent"]
    rows.append(("FloatChannel", f"{floats:,} floats", format_value(floats / t, "msg/s")
                 .replace("msg/s", "floats/s"), format_value(8 * floats / t / 1e6, "MB/s")))
    ticks = sum(r["ticks"] for r in results.values())
    rows.append(("counter increments (Value + Array)", f"{ticks:,} x 2",
                 format_value(2 * ticks / t, "ops/s"), ""))
    print()
    print(markdown_table(("traffic", "total", "rate", "payload"), rows))
    print(f"\n{streamed:,} queue messages larger than the 1 MiB ring (streamed); consumers made "
          f"{calls['get']:,} get and {calls['get_many']:,} get_many calls; "
          f"{ping['messages']:,} pipe messages in {ping['round_trips']:,} round trips "
          f"({ping['bursts']:,} send_many/recv_many bursts).  Rates are over the {t:g} s of "
          "traffic; pipe payload counts both directions.  MB = 10^6 bytes.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds of traffic (default 60, or 10 with --quick)")
    parser.add_argument("--processes", type=int, default=8,
                        help="worker processes, at least 6 (default 8)")
    parser.add_argument("--quick", action="store_true", help="short run: 10 s of traffic")
    parser.add_argument("--watchdog", type=float, default=60.0,
                        help="seconds after the traffic ends before a worker that has not "
                             "finished counts as hung (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.processes < 6:
        parser.error("--processes must be at least 6 (pipe 2, FloatChannel 2, queues 2 or more)")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    progress = progress_printer(not args.quiet)
    try:
        problems = run(args, progress)
    except SoakFailure as exc:
        problems = [str(exc)]
    sys.stdout.flush()
    if problems:
        print("\nSOAK FAILED:", file=sys.stdout)
        for p in problems:
            print(f"  - {p}")
        return 1
    print("\nOK: every message received exactly once, in order per producer, checksums and "
          "counters exact, no hang, no leaked descriptor or /dev/shm entry.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
