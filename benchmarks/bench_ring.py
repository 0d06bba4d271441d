#!/usr/bin/env python3
"""fastmp.Ring and fastmp.Broadcast side by side with memcpy, multiprocessing.Queue and faster-fifo.

    python benchmarks/bench_ring.py            # full run, ~3 min on 2 cores
    python benchmarks/bench_ring.py --quick    # smoke run, ~45 s
    python benchmarks/bench_ring.py --only frames_64mib --json results.json

The same method as bench_queue.py: everything in one invocation, runs
interleaved across subjects (so that this shared VM's noise hits them alike),
real processes started with "fork", a warm-up before the clock starts, medians
of several runs, every run checked.

Scenarios:

* frames_1mib, frames_64mib: float32 frames of 1 MiB and 64 MiB, 1 -> 1.
  - memcpy: this machine's copy bandwidth, numpy.copyto between two
    preallocated, pre-faulted arrays of the frame's size, in one process.
    The yardstick of the issue's target: a ring that "adds no copy" hands
    frames over at least as fast as one memcpy of them.
  - Ring, zero-copy: the writer does `with ring.reserve() as f:` and writes
    one element (a sequence number; the producer's own work is not what is
    measured), the reader does `with ring.recv_view() as v:` and reads that
    element (checked).  Effective GB/s = frame bytes x frames/s: the handoff
    costs the same whatever the frame size, so this figure grows with it.
  - Ring, copying: send(preallocated array) -> recv() (a new array per frame,
    as a user gets it), and send() -> recv_into(preallocated array).
  - Broadcast (policy "block") to 1 and 2 subscriber processes, each reading
    with recv_view (zero-copy, as the Ring); GB/s per subscriber (each gets
    every frame).  The clock runs from the writer's first timed frame to the
    last subscriber's last frame (CLOCK_MONOTONIC is shared by processes).
  - fastmp.Queue, multiprocessing.Queue and faster_fifo.Queue put/get of the
    same arrays (bench_queue's workload: the same array put again and again,
    a marked one last).  fastmp.Queue at its default capacity (1 MiB);
    faster-fifo's buffer holds as many frames as the Ring (it needs each
    pickled array to fit whole), 1 MiB for 64-byte frames.
* frames_64b: 64-byte frames (16 float32), frames/s: the Ring both ways,
  and the three queues moving the same 16-float arrays.
* pingpong: round trip of a 64-byte frame over a pair of Rings (send/recv,
  and reserve/recv_view), each round trip timed on its own, p50 and p99;
  against pairs of fastmp.Queue, multiprocessing.Queue and faster_fifo.Queue
  moving the same arrays.

Frame sizes are powers of two (1 MiB = 262,144 float32) so that the memcpy
yardstick is the one of shared/targets.md's floor table; GB = 10^9 bytes.
fastmp.Ring / fastmp.Broadcast missing from the fastmp being measured (or
numpy, or faster-fifo) are skipped with a note.
"""

import queue
import sys
import time
from dataclasses import dataclass

# bench_queue also puts this checkout on sys.path when fastmp is not installed.
from bench_queue import (
    FASTER_FIFO, FASTMP, STDLIB, Scenario, Subject, WATCHDOG, environment, finish_report,
    libraries_measured, print_preamble, run_arrays, run_scenarios, SMALL_BUFFER,
)
from _common import (
    CTX, BenchmarkFailure, handle_sigterm, markdown_table, percentile,
    pin_malloc_thresholds, progress_printer, run_processes, scenario_arguments,
)

import fastmp

try:
    import numpy as np
except ImportError:
    np = None

def _optional(name, module):
    """fastmp.<name>, or straight from its extension module while the export
    is not there yet; None when this fastmp has neither."""
    if hasattr(fastmp, name):
        return getattr(fastmp, name)
    try:
        return getattr(__import__(f"fastmp.{module}", fromlist=[name]), name)
    except (ImportError, AttributeError):
        return None


Ring = _optional("Ring", "_typed_ring")
Broadcast = _optional("Broadcast", "_broadcast")

MIB = 1 << 20
GB = 1e9
FLOATS_1MIB = MIB // 4
FLOATS_64MIB = 64 * MIB // 4
FLOATS_64B = 16
#: Ring / Broadcast slots per frame size: a few frames in flight.
SLOTS = {FLOATS_1MIB: 8, FLOATS_64MIB: 4, FLOATS_64B: 4096}
#: faster-fifo's max_size_bytes for large frames: as many frames as the
#: Ring holds, plus room for the pickles' headers (a message must fit whole).
FF_BUFFERS = {n: SLOTS[n] * n * 4 + MIB for n in (FLOATS_1MIB, FLOATS_64MIB)}
#: Longest timed part of a Ring or Broadcast run, in seconds (main() sets it
#: from the run length before any worker is forked).
RUN_LIMIT = 2.0
#: Sequence numbers written into frames are kept below 2**24: float32 holds
#: every integer up to there exactly.
SEQ_MASK = (1 << 24) - 1


# -- subjects ------------------------------------------------------------------------
#
# Each subject is a small object with `label`, `missing` (why it cannot run,
# or None) and the run functions of the scenarios it takes part in.

class Memcpy:
    label = "memcpy (numpy.copyto, 1 process)"
    missing = None

    def stream(self, count, n_floats):
        metrics = run_processes([("copier", copy_frames, (count, n_floats))], WATCHDOG)["copier"]
        return _stream_metrics(metrics, n_floats)


class RingStream:
    """One Ring, a writer process and a reader process.  `mode`: "view"
    (reserve / recv_view), "copy" (send / recv) or "into" (send / recv_into)."""

    labels = {"view": "Ring reserve -> recv_view (zero-copy)",
              "copy": "Ring send -> recv (copies)",
              "into": "Ring send -> recv_into (copies, no allocation)"}

    def __init__(self, mode):
        self.mode = mode
        self.label = self.labels[mode]
        self.missing = None if Ring is not None else "fastmp.Ring is not in this fastmp"

    def stream(self, count, n_floats):
        warmup = max(count // 10, 1)
        ring = Ring(SLOTS[n_floats], (n_floats,), "float32")
        try:
            warmed = CTX.Event()
            results = run_processes([
                ("writer", write_frames, (ring, self.mode, count, warmup, [warmed])),
                ("reader", read_frames, (ring, self.mode, warmup, warmed)),
            ], WATCHDOG)
        finally:
            ring.close()
        return _writer_led_metrics(results, ["reader"], n_floats)

    def pingpong(self, count):
        warmup = max(count // 10, 100)
        requests = Ring(SLOTS[FLOATS_64B], (FLOATS_64B,), "float32")
        replies = Ring(SLOTS[FLOATS_64B], (FLOATS_64B,), "float32")
        try:
            return run_processes([
                ("echo", ring_echo, (requests, replies, self.mode, warmup + count)),
                ("client", ring_ping, (requests, replies, self.mode, count, warmup)),
            ], WATCHDOG)["client"]
        finally:
            requests.close()
            replies.close()


class BroadcastStream:
    """One Broadcast (policy "block"), a writer and `subscribers` processes
    reading with recv_view."""

    def __init__(self, subscribers):
        self.subscribers = subscribers
        self.label = (f"Broadcast -> {subscribers} subscriber{'s' if subscribers > 1 else ''}, "
                      f"recv_view (per subscriber)")
        self.missing = None if Broadcast is not None else "fastmp.Broadcast is not in this fastmp"

    def stream(self, count, n_floats):
        warmup = max(count // 10, 1)
        bc = Broadcast(SLOTS[n_floats], (n_floats,), "float32", policy="block")
        readers = [f"subscriber{i}" for i in range(self.subscribers)]
        try:
            subscribed = [CTX.Event() for _ in readers]
            warmed = [CTX.Event() for _ in readers]
            workers = [("writer", write_frames, (bc, "view", count, warmup, warmed, subscribed))]
            workers += [(role, subscribe_frames, (bc, warmup, subscribed[i], warmed[i]))
                        for i, role in enumerate(readers)]
            results = run_processes(workers, WATCHDOG)
        finally:
            bc.close()
        skipped = [results[role]["skipped"] for role in readers]
        if any(skipped):
            raise BenchmarkFailure(f"policy 'block', yet subscribers skipped frames: {skipped}")
        return _writer_led_metrics(results, readers, n_floats)


def _writer_led_metrics(results, readers, n_floats):
    """Ring and Broadcast runs: the writer starts the clock and says how many
    frames it published; every reader must have taken exactly those, and the
    clock stops when the last reader has taken its last one."""
    published = results["writer"]["frames"]
    for role in readers:
        if results[role]["frames"] != published:
            raise BenchmarkFailure(f"{role} took {results[role]['frames']} timed frames, "
                                   f"the writer published {published}")
    seconds = max(results[role]["end"] for role in readers) - results["writer"]["start"]
    return _stream_metrics({"seconds": seconds, "frames": published}, n_floats)


class QueuePeer:
    """A queue from bench_queue (fastmp.Queue, multiprocessing.Queue,
    faster_fifo.Queue), driven with bench_queue's own array workload."""

    def __init__(self, flavour, buffers=None):
        self.flavour = flavour
        self.label = flavour.label + " put/get"
        self.missing = flavour.missing
        self.buffers = buffers or {}   # n_floats -> buffer bytes (default SMALL_BUFFER)

    def stream(self, count, n_floats):
        subject = Subject(self.flavour.column, self.flavour,
                          self.buffers.get(n_floats, SMALL_BUFFER))
        metrics = run_arrays(subject, count, n_floats=n_floats)
        return _stream_metrics({"seconds": metrics["seconds"], "frames": metrics["messages"],
                                "consumer_page_faults": metrics["consumer_page_faults"]},
                               n_floats)

    def pingpong(self, count):
        warmup = max(count // 10, 100)
        requests = self.flavour.create(SMALL_BUFFER)
        replies = self.flavour.create(SMALL_BUFFER)
        try:
            return run_processes([
                ("echo", queue_echo, (self.flavour.getter(requests), self.flavour.putter(replies),
                                      warmup + count)),
                ("client", queue_ping, (self.flavour.putter(requests),
                                        self.flavour.getter(replies), count, warmup)),
            ], WATCHDOG)["client"]
        finally:
            requests.close()
            replies.close()


def _stream_metrics(metrics, n_floats):
    frames_s = metrics["frames"] / metrics["seconds"]
    gb_s = frames_s * n_floats * 4 / GB
    summary = (f"{format_gb_s(gb_s)}, {format_rate(frames_s)}" if n_floats > FLOATS_64B
               else format_rate(frames_s))
    return dict(metrics, frames_s=frames_s, gb_s=gb_s, summary=summary)


def _ping_metrics(samples, warmup):
    timed = sorted(samples[warmup:])
    p50, p99 = percentile(timed, 50) / 1e3, percentile(timed, 99) / 1e3
    return {"seconds": sum(timed) / 1e9, "p50_us": p50, "p99_us": p99,
            "summary": f"p50 {format_us(p50)}, p99 {format_us(p99)}"}


# -- workloads (they run in the worker processes) --------------------------------------

def _wait(event, what="the reader never finished the warm-up"):
    if not event.wait(WATCHDOG):
        raise BenchmarkFailure(what)


def copy_frames(count, n_floats):
    """`count` numpy.copyto of one frame between two preallocated arrays,
    both written once first (so every page is faulted in)."""
    src = np.ones(n_floats, dtype=np.float32)
    dst = np.empty(n_floats, dtype=np.float32)
    dst.fill(0.0)
    for _ in range(max(count // 10, 2)):
        np.copyto(dst, src)
    src[-1] = 2.0
    copyto = np.copyto
    start = time.perf_counter()
    for _ in range(count):
        copyto(dst, src)
    seconds = time.perf_counter() - start
    if dst[-1] != 2.0 or dst[0] != 1.0:
        raise BenchmarkFailure("copyto did not copy")
    return {"seconds": seconds, "frames": count}


def write_frames(channel, mode, count, warmup, warmed, subscribed=()):
    """The writer of a Ring or Broadcast run.  Publish `warmup` frames; once
    every reader has taken them, start the clock and publish up to `count`
    more, stopping early at RUN_LIMIT seconds (zero-copy handoffs swing
    between ~0.1 and ~5 M frames/s on this VM as the two sides fall into
    futex sleeps or not: a count sized in one regime can last many seconds in
    the other); then close, so that readers get EOFError after the last one.
    Frame i carries i (masked) in its first element."""
    for event in subscribed:
        _wait(event, "a subscriber never subscribed")
    if mode == "view":
        reserve = channel.reserve

        def publish(first, stop):
            for i in range(first, stop):
                with reserve() as frame:
                    frame[0] = i & SEQ_MASK
    else:
        send = channel.send
        payload = np.ones(channel.shape, dtype=np.float32)

        def publish(first, stop):
            for i in range(first, stop):
                payload[0] = i & SEQ_MASK
                send(payload)

    publish(0, warmup)
    for event in warmed:
        _wait(event)
    # Look at the clock every `every` frames: rarely where a frame costs
    # ~0.2 us, at every frame where it costs a copy of megabytes.
    every = 256 if mode == "view" or channel.frame_bytes <= 64 * 1024 else 1
    now = time.perf_counter
    start = now()
    deadline = start + RUN_LIMIT
    i, end = warmup, warmup + count
    while i < end:
        stop = min(i + every, end)
        publish(i, stop)
        i = stop
        if now() > deadline:
            break
    channel.close()
    return {"start": start, "frames": i - warmup}


def _warm_up(take, warmup, warmed):
    for i in range(warmup):
        take(i)
    warmed.set()


def _take_until_eof(take, first):
    """Take frames first, first + 1, ... until EOFError; returns how many
    and when the last one was taken (as the EOF is seen: the writer closes
    right after its last frame)."""
    i = first
    try:
        while True:
            take(i)
            i += 1
    except EOFError:
        pass
    return {"frames": i - first, "end": time.perf_counter()}


def read_frames(ring, mode, warmup, warmed):
    """The reader of a Ring run; each frame's first element must be its
    sequence number."""
    if mode == "view":
        recv_view = ring.recv_view

        def take(i):
            with recv_view() as view:
                if view[0] != i & SEQ_MASK:
                    raise BenchmarkFailure(f"frame {i} carries {view[0]}")
    elif mode == "copy":
        recv = ring.recv

        def take(i):
            frame = recv()
            if frame[0] != i & SEQ_MASK:
                raise BenchmarkFailure(f"frame {i} carries {frame[0]}")
    else:
        recv_into = ring.recv_into
        out = np.empty(ring.shape, dtype=np.float32)

        def take(i):
            recv_into(out)
            if out[0] != i & SEQ_MASK:
                raise BenchmarkFailure(f"frame {i} carries {out[0]}")

    _warm_up(take, warmup, warmed)
    return _take_until_eof(take, warmup)


def subscribe_frames(bc, warmup, subscribed, warmed):
    with bc.subscribe() as sub:
        subscribed.set()   # frames published from now on reach this subscriber
        recv_view = sub.recv_view

        def take(i):
            with recv_view() as view:
                if view[0] != i & SEQ_MASK:
                    raise BenchmarkFailure(f"frame {i} carries {view[0]}")

        _warm_up(take, warmup, warmed)
        return dict(_take_until_eof(take, warmup), skipped=sub.skipped)


def _assert_no_more(recv_view):
    """After the last reply: nothing left (queue.Empty, or EOFError once the
    echo has exited)."""
    try:
        with recv_view(timeout=0.05) as extra:
            raise BenchmarkFailure(f"an extra frame after the run, carrying {extra[0]}")
    except (queue.Empty, EOFError):
        pass


def ring_echo(requests, replies, mode, total):
    if mode == "view":
        for _ in range(total):
            with requests.recv_view() as request:
                with replies.reserve() as reply:
                    reply[:] = request
    else:
        recv, send = requests.recv, replies.send
        for _ in range(total):
            send(recv())


def ring_ping(requests, replies, mode, count, warmup):
    """Round trips of a 64-byte frame, each timed on its own; the reply must
    carry the request's number."""
    timer = time.perf_counter_ns
    samples = []
    if mode == "view":
        reserve, recv_view = requests.reserve, replies.recv_view
        for i in range(warmup + count):
            seq = i & SEQ_MASK
            start = timer()
            with reserve() as frame:
                frame[0] = seq
            with recv_view() as reply:
                got = reply[0]
            samples.append(timer() - start)
            if got != seq:
                raise BenchmarkFailure(f"round trip {i}: got back {got}")
    else:
        send, recv = requests.send, replies.recv
        payload = np.ones(FLOATS_64B, dtype=np.float32)
        for i in range(warmup + count):
            seq = i & SEQ_MASK
            start = timer()
            payload[0] = seq
            send(payload)
            reply = recv()
            samples.append(timer() - start)
            if reply[0] != seq:
                raise BenchmarkFailure(f"round trip {i}: got back {reply[0]}")
    _assert_no_more(replies.recv_view)
    return _ping_metrics(samples, warmup)


def queue_echo(get, put, total):
    for _ in range(total):
        put(get())


def queue_ping(put, get, count, warmup):
    """As ring_ping, over two queues.  A fresh array per request: a
    multiprocessing.Queue pickles it later, in its feeder thread."""
    timer = time.perf_counter_ns
    samples = []
    ones = np.ones(FLOATS_64B, dtype=np.float32)
    for i in range(warmup + count):
        seq = i & SEQ_MASK
        start = timer()
        payload = ones.copy()
        payload[0] = seq
        put(payload)
        reply = get()
        samples.append(timer() - start)
        if reply[0] != seq:
            raise BenchmarkFailure(f"round trip {i}: got back {reply[0]}")
    return _ping_metrics(samples, warmup)


# -- scenarios ------------------------------------------------------------------------

@dataclass
class RingRow:
    """run_scenarios' row: the figures of every subject of one scenario."""
    key: str
    metrics: tuple
    unit: str
    lower_is_better: bool = False


MEMCPY = Memcpy()
RING_VIEW, RING_COPY, RING_INTO = RingStream("view"), RingStream("copy"), RingStream("into")
BCAST1, BCAST2 = BroadcastStream(1), BroadcastStream(2)
Q_FASTMP = QueuePeer(FASTMP)
Q_STDLIB = QueuePeer(STDLIB)
Q_FF = QueuePeer(FASTER_FIFO, FF_BUFFERS)

SUBJECTS = {"memcpy": MEMCPY, "ring_view": RING_VIEW, "ring_copy": RING_COPY,
            "ring_into": RING_INTO, "broadcast1": BCAST1, "broadcast2": BCAST2,
            "fastmp_queue": Q_FASTMP, "multiprocessing": Q_STDLIB, "faster_fifo": Q_FF}
PEERS = {"multiprocessing": "vs multiprocessing.Queue", "faster_fifo": "vs faster-fifo"}


def subjects(*keys):
    return [Subject(key, SUBJECTS[key], 0) for key in keys]


def stream_scenario(name, title, n_floats, keys, rate_guess, min_count):
    return Scenario(
        name, title, lambda subject, count: subject.flavour.stream(count, n_floats),
        rate_guess, [RingRow(name, ("gb_s", "frames_s"), "GB/s")], subjects=subjects(*keys),
        min_count=min_count, max_count=5_000_000, needs_numpy=True)


LARGE_KEYS = ("memcpy", "ring_view", "ring_copy", "ring_into", "broadcast1", "broadcast2",
              "fastmp_queue", "multiprocessing", "faster_fifo")
SCENARIOS = [
    stream_scenario(
        "frames_1mib", "1 MiB float32 frames, 1 -> 1", FLOATS_1MIB, LARGE_KEYS,
        {"memcpy": 15000, "ring_view": 3e5, "ring_copy": 3000, "ring_into": 5000,
         "broadcast1": 2e5, "broadcast2": 1e5, "fastmp_queue": 1500, "multiprocessing": 400,
         "faster_fifo": 400}, min_count=20),
    stream_scenario(
        "frames_64mib", "64 MiB float32 frames, 1 -> 1", FLOATS_64MIB, LARGE_KEYS,
        {"memcpy": 120, "ring_view": 3e5, "ring_copy": 40, "ring_into": 60,
         "broadcast1": 2e5, "broadcast2": 1e5, "fastmp_queue": 20, "multiprocessing": 4,
         "faster_fifo": 6}, min_count=2),
    stream_scenario(
        "frames_64b", "64-byte frames (16 float32), 1 -> 1", FLOATS_64B,
        ("ring_view", "ring_copy", "ring_into", "fastmp_queue", "multiprocessing", "faster_fifo"),
        {"ring_view": 5e5, "ring_copy": 5e5, "ring_into": 5e5, "fastmp_queue": 5e5,
         "multiprocessing": 5e4, "faster_fifo": 5e4}, min_count=1000),
    Scenario(
        "pingpong", "ping-pong round trip of a 64-byte frame (16 float32) over two channels",
        lambda subject, count: subject.flavour.pingpong(count),
        {"ring_copy": 1e5, "ring_view": 1e5, "fastmp_queue": 5e4, "multiprocessing": 5e3,
         "faster_fifo": 5e3},
        [RingRow("pingpong", ("p50_us", "p99_us"), "us", lower_is_better=True)],
        subjects=subjects("ring_copy", "ring_view", "fastmp_queue", "multiprocessing",
                          "faster_fifo"),
        min_count=500, max_count=200_000, needs_numpy=True),
]
SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}


def row_figures(row, series):
    """Medians of every metric of every subject, and each subject's ratios
    against memcpy and the peers (bigger is better for the subject)."""
    medians = {}
    for key, s in series.items():
        if s.error is None:
            medians[key] = {metric: s.median(metric) for metric in row.metrics}
    main = row.metrics[0]
    ratios = {}
    for key, m in medians.items():
        ratios[key] = {}
        for other in ("memcpy", *PEERS):
            if other == key or other not in medians:
                continue
            mine, theirs = m[main], medians[other][main]
            if mine and theirs:
                ratios[key][other] = theirs / mine if row.lower_is_better else mine / theirs
    return {"unit": row.unit, "metric": main, "medians": medians, "ratios": ratios}


# -- reporting ---------------------------------------------------------------------------

def format_gb_s(value):
    if value is None:
        return "n/a"
    if value >= 1000:
        return f"{value:,.0f} GB/s"
    return f"{value:.2f} GB/s" if value < 10 else f"{value:.1f} GB/s"


def format_rate(value):
    if value is None:
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M frames/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k frames/s"
    return f"{value:.1f} frames/s"


def format_ratio(ratio):
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def format_us(value):
    if value is None:
        return "n/a"
    return f"{value:.1f} us" if value < 100 else f"{value:.0f} us"


def _subject_cells(scenario, series, skipped, figures):
    """(subject label, status or None) per subject of a scenario."""
    for subject in scenario.subjects:
        key = subject.key
        if key in skipped:
            yield key, subject.flavour.label, f"skipped: {skipped[key]}"
        elif series[key].error is not None:
            yield key, subject.flavour.label, "FAILED"
        else:
            yield key, subject.flavour.label, None


def render_stream(scenario, series, skipped, figures, with_memcpy):
    headers = ["subject", "GB/s" if with_memcpy else "frames/s"]
    if with_memcpy:
        headers += ["frames/s", "vs memcpy"]
    headers += list(PEERS.values())
    lines = []
    for key, label, status in _subject_cells(scenario, series, skipped, figures):
        if status:
            lines.append([label, status] + [""] * (len(headers) - 2))
            continue
        m, r = figures["medians"][key], figures["ratios"][key]
        cells = [label]
        if with_memcpy:
            cells += [format_gb_s(m["gb_s"]), format_rate(m["frames_s"]),
                      "—" if key == "memcpy" else format_ratio(r.get("memcpy"))]
        else:
            cells.append(format_rate(m["frames_s"]))
        cells += ["—" if key in ("memcpy", peer) else format_ratio(r.get(peer)) for peer in PEERS]
        lines.append(cells)
    return markdown_table(headers, lines)


def render_pingpong(scenario, series, skipped, figures):
    headers = ["subject", "p50", "p99", "p50 vs multiprocessing.Queue", "p50 vs faster-fifo"]
    lines = []
    for key, label, status in _subject_cells(scenario, series, skipped, figures):
        if status:
            lines.append([label, status, "", "", ""])
            continue
        m, r = figures["medians"][key], figures["ratios"][key]
        lines.append([label, format_us(m["p50_us"]), format_us(m["p99_us"]),
                      *("—" if key == peer else format_ratio(r.get(peer)) for peer in PEERS)])
    return markdown_table(headers, lines)


#: shared/targets.md and the issue: (label, scenario, must, aim), each a
#: (text, subject, against: "memcpy" (ratio) or None (absolute GB/s), bound).
TARGETS = [
    ("Ring handoff of 1 MiB frames", "frames_1mib",
     ("adds no copy: zero-copy >= memcpy GB/s", "ring_view", "memcpy", 1.0),
     (">= 8 GB/s effective", "ring_view", None, 8.0)),
    ("Ring handoff of 64 MiB frames", "frames_64mib",
     ("adds no copy: zero-copy >= memcpy GB/s", "ring_view", "memcpy", 1.0),
     (">= 8 GB/s effective", "ring_view", None, 8.0)),
]


def render_targets(figures_by_row):
    lines = []
    for label, row, *checks in TARGETS:
        figures = figures_by_row.get(row)
        if figures is None:
            continue  # scenario not run (--only)
        cells = [label]
        for text, key, against, bound in checks:
            medians = figures["medians"].get(key)
            if against is not None:
                value = figures["ratios"].get(key, {}).get(against)
                measured = format_ratio(value)
            else:
                value = medians["gb_s"] if medians else None
                measured = format_gb_s(value)
            verdict = "not measured" if value is None else ("met" if value >= bound else "NOT met")
            cells += [text, measured, verdict]
        lines.append(cells)
    return markdown_table(["target", "must", "measured", "must met?", "aim", "measured",
                           "aim met?"], lines) if lines else ""


def main(argv=None):
    parser = scenario_arguments(__doc__.split("\n\n")[0], quick_help="short smoke run (~45 s)",
                                scenario_names=SCENARIOS_BY_NAME)
    args = parser.parse_args(argv)

    repeats = 3 if args.quick else 5
    target_seconds = 0.1 if args.quick else 0.4
    progress = progress_printer(not args.quiet)
    env = environment()
    handle_sigterm()
    env["malloc"] = pin_malloc_thresholds()  # before any worker is forked
    global RUN_LIMIT
    RUN_LIMIT = 2.5 * target_seconds      # inherited by the forked writers
    chosen = [s for s in SCENARIOS if s.name in args.only] if args.only else SCENARIOS

    began = time.monotonic()
    results, figures_by_row, failures, report = run_scenarios(
        chosen, row_figures, repeats=repeats, target_seconds=target_seconds, progress=progress)
    elapsed = time.monotonic() - began

    print_preamble("fastmp.Ring / fastmp.Broadcast", quick=args.quick, elapsed=elapsed, env=env,
                   libraries=libraries_measured(env),
                   repeats=repeats, target_seconds=target_seconds)
    print(f"Ring/Broadcast slots: {SLOTS[FLOATS_1MIB]} for 1 MiB frames, {SLOTS[FLOATS_64MIB]} "
          f"for 64 MiB, {SLOTS[FLOATS_64B]} for 64 B.  Queues: fastmp capacity 1 MiB (its "
          f"default); faster-fifo max_size_bytes 1 MiB for 64 B frames, else the Ring's bytes + "
          f"1 MiB ({FF_BUFFERS[FLOATS_1MIB] // MIB} MiB, {FF_BUFFERS[FLOATS_64MIB] // MIB} MiB).  "
          f"GB = 10^9 bytes.  Zero-copy rows: effective GB/s = frame bytes x frames/s (the "
          f"writer writes one element, the reader reads it).\n")
    print("Ratios: throughput = subject / peer; latency = peer / subject.  Bigger is better "
          "for the subject.\n")
    for scenario, series, skipped, rows in results:
        figures = rows[scenario.name]
        print(f"## {scenario.title}\n")
        if scenario.name == "pingpong":
            print(render_pingpong(scenario, series, skipped, figures))
        else:
            print(render_stream(scenario, series, skipped, figures,
                                with_memcpy=scenario.name != "frames_64b"))
        print()
    targets_table = render_targets(figures_by_row)
    if targets_table:
        print("## Targets (issue 5, shared/targets.md)\n")
        print(targets_table)
    return finish_report(args, results, failures, environment=env, quick=args.quick,
                         repeats=repeats, target_seconds=target_seconds,
                         elapsed_seconds=elapsed, scenarios=report)


if __name__ == "__main__":
    sys.exit(main())
