#!/usr/bin/env python3
"""fastmp.Queue side by side with multiprocessing.Queue and faster_fifo.Queue.

    python benchmarks/bench_queue.py            # full run, about 2 minutes
    python benchmarks/bench_queue.py --quick    # smoke run, ~30 s
    python benchmarks/bench_queue.py --only pingpong --json results.json

(`python -m fastmp.bench` runs these scenarios too, with a progress bar, and
writes the report as Markdown and the ratios as a PNG plot.)

Every scenario is run for every implementation in the same invocation, with
the runs interleaved (fastmp, multiprocessing, faster-fifo, fastmp, ...), so
that the ratios compare figures taken under the same load.  Workers are real
processes started with the "fork" method.  Each run starts its processes,
passes a warm-up share of messages, and only then starts the clock; the
consumer stops it when it has taken exactly the expected number of messages,
checks the last one, and checks that nothing more is left in the queue.
"""

import datetime
import functools
import json
import os
import platform
import queue
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import fastmp

from ._common import (
    CTX, BenchmarkFailure, Check, evaluate_checks, format_ratio, format_value, markdown_table,
    handle_sigterm, measure_side_by_side, percentile, pin_malloc_thresholds, progress_printer,
    run_processes, scenario_arguments,
)

try:
    import numpy as np
except ImportError:
    np = None

try:
    import faster_fifo
    from faster_fifo import Queue as FFQueue
except ImportError:
    faster_fifo = FFQueue = None

#: Limit for one run, in seconds: the parent kills the workers after it, and
#: it is faster-fifo's blocking timeout (its default of 10 s is too short to
#: mean "block").
WATCHDOG = 60.0
#: Messages per put_many/get_many.
BATCH = 256
#: Ring / buffer size for small messages and 1 MB arrays: fastmp's default
#: capacity, and the same max_size_bytes for faster-fifo.
SMALL_BUFFER = 1 << 20
#: For 64 MB arrays faster-fifo needs a buffer that holds a whole message;
#: fastmp is run both at its default (the array streams through 1 MiB) and
#: with this same buffer.
LARGE_BUFFER = 65 << 20
MB = 1_000_000
ONE_MB_FLOATS = 250_000          # float32: 1,000,000 bytes
SIXTY_FOUR_MB_FLOATS = 16_000_000  # float32: 64,000,000 bytes
ARRAY_MARK = 7.0  # first element of the last array of a run; the others hold 1.0


# -- the implementations ---------------------------------------------------------

class Flavour:
    """How the workloads drive one queue implementation.  The hot loops call
    the callables returned here directly: no adapter call per message.

    fastmp and multiprocessing are driven with their plain blocking calls
    (put(x), get()), as a drop-in user would write them; a queue that hangs
    is caught by the parent's watchdog (WATCHDOG), not by a timeout."""
    column = ""      # table column (and JSON key)
    label = ""
    batching = False
    missing = None   # why it cannot run, or None

    def create(self, buffer_bytes):
        raise NotImplementedError

    def putter(self, q):
        return q.put

    def getter(self, q):
        return q.get

    def batch_putter(self, q):
        return None

    def batch_getter(self, q, max_messages):
        return None

    def assert_drained(self, q):
        """After a run: nothing may be left (a queue that duplicated
        messages must not pass)."""
        try:
            extra = q.get(True, 0.05)
        except queue.Empty:
            return
        raise BenchmarkFailure(f"{self.label}: unexpected extra message after the run: {_short(extra)}")


class FastmpFlavour(Flavour):
    column = "fastmp"
    label = "fastmp.Queue"
    batching = True

    def create(self, buffer_bytes):
        return fastmp.Queue(capacity=buffer_bytes)

    def batch_putter(self, q):
        return q.put_many

    def batch_getter(self, q, max_messages):
        return functools.partial(q.get_many, max_messages_to_get=max_messages)


class StdlibFlavour(Flavour):
    column = "multiprocessing"
    label = "multiprocessing.Queue"

    def create(self, buffer_bytes):
        return CTX.Queue()  # no buffer setting: a pipe plus a feeder thread


class FasterFifoFlavour(Flavour):
    column = "faster_fifo"
    label = "faster_fifo.Queue"
    batching = True
    missing = None if FFQueue is not None else "faster_fifo is not installed"

    def create(self, buffer_bytes):
        return FFQueue(max_size_bytes=buffer_bytes)

    # Explicit timeouts: faster-fifo's default (10 s) would turn a long
    # stall into an exception in the middle of a run.
    def putter(self, q):
        return functools.partial(q.put, block=True, timeout=WATCHDOG)

    def getter(self, q):
        return functools.partial(q.get, block=True, timeout=WATCHDOG)

    def batch_putter(self, q):
        return functools.partial(q.put_many, block=True, timeout=WATCHDOG)

    def batch_getter(self, q, max_messages):
        return functools.partial(q.get_many, block=True, timeout=WATCHDOG,
                                 max_messages_to_get=max_messages)


FASTMP, STDLIB, FASTER_FIFO = FastmpFlavour(), StdlibFlavour(), FasterFifoFlavour()
COLUMNS = [FASTMP, STDLIB, FASTER_FIFO]
PEERS = [STDLIB, FASTER_FIFO]


@dataclass
class Subject:
    """One thing measured: an implementation with its buffer size."""
    key: str
    flavour: Flavour
    buffer_bytes: int


def standard_subjects(buffer_bytes=SMALL_BUFFER):
    return [Subject(f.column, f, buffer_bytes) for f in COLUMNS]


def _short(obj):
    text = repr(obj)
    return text if len(text) < 80 else text[:77] + "..."


# -- workloads (they run in the worker processes) --------------------------------

def produce_constant(put, put_many, payload, final, count, warmup, batch, warmed):
    """Put `warmup` copies of `payload`; once the consumer has taken them,
    put `count` messages: copies of `payload`, and `final` last.  With `batch`,
    put_many lists of `batch` messages (count and warmup are multiples)."""
    if batch:
        chunk = [payload] * batch
        for _ in range(warmup // batch):
            put_many(chunk)
        _wait(warmed)
        for _ in range(count // batch - 1):
            put_many(chunk)
        put_many(chunk[:-1] + [final])
    else:
        for _ in range(warmup):
            put(payload)
        _wait(warmed)
        for _ in range(count - 1):
            put(payload)
        put(final)


def produce_tuples(put, count, warmup, warmed):
    for i in range(warmup):
        put((i, 3.14, "obs"))
    _wait(warmed)
    for i in range(count):
        put((i, 3.14, "obs"))


def produce_arrays(put, n_floats, count, warmup, warmed):
    payload = np.ones(n_floats, dtype=np.float32)
    final = payload.copy()
    final[0] = ARRAY_MARK
    final[-1] = count
    produce_constant(put, None, payload, final, count, warmup, 0, warmed)


def consume(get, get_many, count, warmup, warmed, verify_last, assert_drained):
    """Take `warmup` messages, then start the clock, release the producers and
    take exactly `count` messages.  Returns the timed duration, the number of
    messages timed and the consumer's page faults meanwhile."""
    if get_many is None:
        for _ in range(warmup):
            get()
        faults_before = _minor_faults()
        start = time.perf_counter()
        warmed.set()
        for _ in range(count):
            last = get()
        seconds = time.perf_counter() - start
    else:
        received = 0
        while received < warmup:
            received += len(get_many())
        if received != warmup:
            raise BenchmarkFailure(f"warm-up: received {received} messages, {warmup} were put")
        faults_before = _minor_faults()
        start = time.perf_counter()
        warmed.set()
        received = 0
        while received < count:
            messages = get_many()
            received += len(messages)
        seconds = time.perf_counter() - start
        if received != count:
            raise BenchmarkFailure(f"received {received} messages, {count} were put")
        last = messages[-1]
    faults = _minor_faults() - faults_before
    verify_last(last)
    assert_drained()
    return {"seconds": seconds, "messages": count, "consumer_page_faults": faults}


def echo(get, put, total):
    for _ in range(total):
        put(get())


def ping(put, get, count, warmup, assert_drained):
    """Round trips of 64-byte messages, each timed on its own."""
    timer = time.perf_counter_ns
    samples = []
    for i in range(warmup + count):
        message = i.to_bytes(8, "little") * 8
        start = timer()
        put(message)
        reply = get()
        samples.append(timer() - start)
        if reply != message:
            raise BenchmarkFailure(f"round trip {i}: sent {_short(message)}, got back {_short(reply)}")
    assert_drained()
    timed = sorted(samples[warmup:])
    return {"seconds": sum(timed) / 1e9,
            "p50_us": percentile(timed, 50) / 1e3,
            "p99_us": percentile(timed, 99) / 1e3}


def _minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _wait(event):
    if not event.wait(WATCHDOG):
        raise BenchmarkFailure("the consumer never finished the warm-up")


# -- one timed run of each kind ------------------------------------------------------

def _warmup_share(count, multiple):
    """About a tenth of the timed messages, at least one batch."""
    share = max(count // 10, multiple)
    return share - share % multiple


def run_stream(subject, count, *, producers, batched, make_producer, verify_last):
    """`producers` workers -> one consumer through one queue; `count` messages
    in all.  `make_producer(q, index, per_producer, warmup, batch, warmed)`
    returns one producer's (func, args).  Returns the consumer's metrics."""
    flavour = subject.flavour
    batch = BATCH if batched and flavour.batching else 0
    per_producer = count // producers
    warmup = _warmup_share(per_producer, batch or 1)
    q = flavour.create(subject.buffer_bytes)
    try:
        warmed = CTX.Event()
        workers = [(f"producer{i}",) + make_producer(q, i, per_producer, warmup, batch, warmed)
                   for i in range(producers)]
        get_many = flavour.batch_getter(q, BATCH) if batch else None
        workers.append(("consumer", consume,
                        (flavour.getter(q), get_many, per_producer * producers, warmup * producers,
                         warmed, verify_last, functools.partial(flavour.assert_drained, q))))
        return run_processes(workers, WATCHDOG)["consumer"]
    finally:
        q.close()


def _expect_equal(expected):
    def verify_last(last):
        if last != expected:
            raise BenchmarkFailure(f"last message: expected {_short(expected)}, got {_short(last)}")
    return verify_last


def _rate_metrics(consumer_result):
    rate = consumer_result["messages"] / consumer_result["seconds"]
    return dict(consumer_result, msg_s=rate, summary=format_value(rate, "msg/s"))


def run_bytes(subject, count, *, producers=1, batched=False):
    """64-byte bytes messages.  Each producer's last message is distinct, so
    the consumer's last one must be one of them."""
    payload = b"p" * 64
    finals = [f"final-{i}".encode().ljust(64, b".") for i in range(producers)]
    flavour = subject.flavour

    def make_producer(q, index, per_producer, warmup, batch, warmed):
        return produce_constant, (flavour.putter(q), flavour.batch_putter(q), payload,
                                  finals[index], per_producer, warmup, batch, warmed)

    def verify_last(last):
        if last not in finals:
            raise BenchmarkFailure(f"last message is not a producer's final one: {_short(last)}")

    result = run_stream(subject, count, producers=producers, batched=batched,
                        make_producer=make_producer, verify_last=verify_last)
    return _rate_metrics(result)


def run_tuples(subject, count):
    def make_producer(q, index, per_producer, warmup, batch, warmed):
        return produce_tuples, (subject.flavour.putter(q), per_producer, warmup, warmed)

    result = run_stream(subject, count, producers=1, batched=False, make_producer=make_producer,
                        verify_last=_expect_equal((count - 1, 3.14, "obs")))
    return _rate_metrics(result)


def run_arrays(subject, count, *, n_floats):
    def make_producer(q, index, per_producer, warmup, batch, warmed):
        return produce_arrays, (subject.flavour.putter(q), n_floats, per_producer, warmup, warmed)

    def verify_last(last):
        if not (isinstance(last, np.ndarray) and last.dtype == np.float32
                and last.shape == (n_floats,) and last[0] == ARRAY_MARK
                and last[-1] == count and last[n_floats // 2] == 1.0):
            raise BenchmarkFailure(f"last array is wrong: {_short(last)}")

    result = run_stream(subject, count, producers=1, batched=False, make_producer=make_producer,
                        verify_last=verify_last)
    mb_s = result["messages"] * n_floats * 4 / MB / result["seconds"]
    return dict(result, mb_s=mb_s, summary=format_value(mb_s, "MB/s"))


def run_pingpong(subject, count):
    flavour = subject.flavour
    warmup = max(count // 10, 50)
    requests = flavour.create(subject.buffer_bytes)
    replies = flavour.create(subject.buffer_bytes)
    try:
        workers = [
            ("echo", echo, (flavour.getter(requests), flavour.putter(replies), warmup + count)),
            ("client", ping, (flavour.putter(requests), flavour.getter(replies), count, warmup,
                              functools.partial(flavour.assert_drained, replies))),
        ]
        result = run_processes(workers, WATCHDOG)["client"]
    finally:
        requests.close()
        replies.close()
    result["summary"] = (f"p50 {format_value(result['p50_us'], 'us')}, "
                         f"p99 {format_value(result['p99_us'], 'us')}")
    return result


# -- scenarios ----------------------------------------------------------------------

@dataclass
class Row:
    """One line of the results table."""
    key: str
    label: str
    metric: str
    unit: str
    fastmp_subject: str = "fastmp"
    lower_is_better: bool = False


@dataclass
class Scenario:
    name: str
    title: str
    run_once: object            # (subject, count) -> metrics
    rate_guess: dict            # subject key -> work units per second (first run's size)
    rows: list
    subjects: list = field(default_factory=standard_subjects)
    min_count: int = 1
    max_count: int = 20_000_000
    multiple: int = 1
    needs_numpy: bool = False
    # Columns whose peer cannot batch: they run unbatched, marked with a dagger.
    unbatched_peers: tuple = ()


SCENARIOS = [
    Scenario(
        "bytes", "64 B bytes, 1 -> 1, put/get",
        run_bytes,
        {"fastmp": 2.5e6, "multiprocessing": 3e5, "faster_fifo": 3e5},
        [Row("bytes", "64 B bytes, 1 -> 1, put/get", "msg_s", "msg/s")],
        min_count=1000),
    Scenario(
        "bytes_batched", "64 B bytes, 1 -> 1, put_many/get_many of 256",
        functools.partial(run_bytes, batched=True),
        {"fastmp": 1e7, "multiprocessing": 3e5, "faster_fifo": 5e5},
        [Row("bytes_batched", "64 B bytes, 1 -> 1, batches of 256", "msg_s", "msg/s")],
        min_count=4 * BATCH, multiple=BATCH, unbatched_peers=("multiprocessing",)),
    Scenario(
        "tuples", "(i, 3.14, 'obs') tuples, 1 -> 1, put/get",
        run_tuples,
        {"fastmp": 1e6, "multiprocessing": 3e5, "faster_fifo": 3e5},
        [Row("tuples", "(i, 3.14, \"obs\") tuples, 1 -> 1, put/get", "msg_s", "msg/s")],
        min_count=1000),
    Scenario(
        "pingpong", "ping-pong round trip of 64 B over two queues",
        run_pingpong,
        {"fastmp": 5e4, "multiprocessing": 2e4, "faster_fifo": 2e4},
        [Row("pingpong_p50", "ping-pong 64 B round trip, p50", "p50_us", "us", lower_is_better=True),
         Row("pingpong_p99", "ping-pong 64 B round trip, p99", "p99_us", "us", lower_is_better=True)],
        min_count=1000, max_count=300_000),
    Scenario(
        "numpy_1mb", "1 MB float32 NumPy arrays, 1 -> 1",
        functools.partial(run_arrays, n_floats=ONE_MB_FLOATS),
        {"fastmp": 5000, "multiprocessing": 450, "faster_fifo": 800},
        [Row("numpy_1mb", "1 MB float32 arrays", "mb_s", "MB/s")],
        min_count=20, max_count=100_000, needs_numpy=True),
    Scenario(
        "numpy_64mb", "64 MB float32 NumPy arrays, 1 -> 1",
        functools.partial(run_arrays, n_floats=SIXTY_FOUR_MB_FLOATS),
        {"fastmp": 35, "fastmp_big": 35, "multiprocessing": 7, "faster_fifo": 7},
        [Row("numpy_64mb", "64 MB float32 arrays (fastmp capacity 1 MiB)", "mb_s", "MB/s"),
         Row("numpy_64mb_big", "64 MB float32 arrays (fastmp capacity 65 MiB)",
             "mb_s", "MB/s", fastmp_subject="fastmp_big")],
        subjects=[Subject("fastmp", FASTMP, SMALL_BUFFER),
                  Subject("fastmp_big", FASTMP, LARGE_BUFFER),
                  Subject("multiprocessing", STDLIB, LARGE_BUFFER),
                  Subject("faster_fifo", FASTER_FIFO, LARGE_BUFFER)],
        min_count=3, max_count=1000, needs_numpy=True),
    Scenario(
        "fan_in", "64 B bytes, 4 producers -> 1 consumer, put_many/get_many of 256",
        functools.partial(run_bytes, producers=4, batched=True),
        {"fastmp": 4e6, "multiprocessing": 3e5, "faster_fifo": 7e5},
        [Row("fan_in", "64 B bytes, 4 -> 1, batches of 256", "msg_s", "msg/s")],
        min_count=16 * BATCH, multiple=4 * BATCH, unbatched_peers=("multiprocessing",)),
]
SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Target:
    """A line of shared/targets.md that this benchmark measures."""
    label: str
    row: str
    must: list
    aim: list


TARGETS = [
    Target("64 B bytes, unbatched put/get", "bytes",
           [Check(">= 10x multiprocessing", peer="multiprocessing", at_least=10)],
           [Check(">= 2 M msg/s", at_least=2e6)]),
    Target("64 B bytes, batches of 256", "bytes_batched",
           [Check(">= 3x faster-fifo batched", peer="faster_fifo", at_least=3),
            Check(">= 2 M msg/s", at_least=2e6)],
           [Check(">= 5 M msg/s", at_least=5e6)]),
    Target("small tuples, unbatched", "tuples",
           [Check(">= 5x multiprocessing", peer="multiprocessing", at_least=5)],
           [Check(">= 600 k msg/s", at_least=6e5)]),
    Target("4 producers -> 1 consumer, batched", "fan_in",
           [Check(">= 3x faster-fifo", peer="faster_fifo", at_least=3)],
           [Check(">= 3 M msg/s", at_least=3e6)]),
    Target("Queue ping-pong round trip p50", "pingpong_p50",
           [Check(">= 10x lower than multiprocessing", peer="multiprocessing", at_least=10)],
           [Check("<= 5 us", at_most=5.0)]),
    Target("64 MB arrays, fastmp capacity 1 MiB", "numpy_64mb",
           [Check(">= 10x multiprocessing MB/s", peer="multiprocessing", at_least=10)],
           [Check(">= 3 GB/s", at_least=3000)]),
    Target("64 MB arrays, fastmp capacity 65 MiB", "numpy_64mb_big",
           [Check(">= 10x multiprocessing MB/s", peer="multiprocessing", at_least=10)],
           [Check(">= 3 GB/s", at_least=3000)]),
]

NOT_COVERED = ("The Pipe, Value/Array/RawValue, FloatChannel and Ring targets are measured by "
               "benchmarks/bench_pipe.py, bench_sharedctypes.py, bench_float_channel.py and bench_ring.py "
               "in fastmp's source tree.")


# -- running and reporting -------------------------------------------------------------

def runnable_subjects(scenario):
    """The subjects of `scenario` that can run here, and {key: why not} for
    the others (numpy or faster-fifo missing)."""
    skipped = {}
    subjects = []
    for subject in scenario.subjects:
        if scenario.needs_numpy and np is None:
            skipped[subject.key] = "numpy is not installed"
        elif subject.flavour.missing:
            skipped[subject.key] = subject.flavour.missing
        else:
            subjects.append(subject)
    return subjects, skipped


def run_scenario(scenario, *, repeats, target_seconds, progress, on_run=None):
    """Returns {subject key: Series} plus skip notes {subject key: reason}."""
    subjects, skipped = runnable_subjects(scenario)
    by_key = {s.key: s for s in subjects}
    progress(f"{scenario.name}: {scenario.title}")
    series = measure_side_by_side(
        list(by_key), lambda key, count: scenario.run_once(by_key[key], count),
        initial_counts={k: scenario.rate_guess[k] * target_seconds for k in by_key},
        repeats=repeats, target_seconds=target_seconds, min_count=scenario.min_count,
        max_count=scenario.max_count, multiple=scenario.multiple, progress=progress,
        on_run=on_run)
    return series, skipped


def row_figures(row, series):
    """Medians for one row: fastmp, each peer, and ratios oriented so that
    bigger is better for fastmp."""
    def median(key):
        s = series.get(key)
        return s.median(row.metric) if s is not None and s.error is None else None

    figures = {"unit": row.unit, "fastmp": median(row.fastmp_subject), "peers": {}, "ratios": {}}
    for peer in PEERS:
        value = median(peer.column)
        figures["peers"][peer.column] = value
        if value and figures["fastmp"]:
            figures["ratios"][peer.column] = (value / figures["fastmp"] if row.lower_is_better
                                              else figures["fastmp"] / value)
    return figures


def cell(scenario, key, value, unit, series, skipped):
    if key in skipped:
        return f"skipped: {skipped[key]}"
    s = series.get(key)
    if s is not None and s.error is not None:
        return "FAILED"
    text = format_value(value, unit)
    if key in scenario.unbatched_peers:
        text += " (unbatched) †"
    return text


def render_results(results):
    headers = ["scenario", "fastmp", "multiprocessing", "faster-fifo",
               "fastmp vs multiprocessing", "fastmp vs faster-fifo"]
    lines = []
    for scenario, series, skipped, figures_by_row in results:
        for row in scenario.rows:
            figures = figures_by_row[row.key]
            ratio_cells = []
            for peer in PEERS:
                ratio = format_ratio(figures["ratios"].get(peer.column))
                if peer.column in scenario.unbatched_peers and ratio != "n/a":
                    ratio += " (vs unbatched) †"
                ratio_cells.append(ratio)
            lines.append([row.label,
                          cell(scenario, row.fastmp_subject, figures["fastmp"], row.unit, series, skipped),
                          *(cell(scenario, peer.column, figures["peers"][peer.column], row.unit,
                                 series, skipped) for peer in PEERS),
                          *ratio_cells])
    return markdown_table(headers, lines)


def render_targets(figures_by_row):
    headers = ["target", "must", "measured", "must met?", "aim", "measured", "aim met?"]
    lines = []
    for target in TARGETS:
        figures = figures_by_row.get(target.row)
        if figures is None:
            continue  # scenario not run (--only)
        must_measured, must_verdict = evaluate_checks(target.must, figures)
        aim_measured, aim_verdict = evaluate_checks(target.aim, figures)
        lines.append([target.label, " and ".join(c.text for c in target.must), must_measured,
                      must_verdict, " and ".join(c.text for c in target.aim), aim_measured,
                      aim_verdict])
    return markdown_table(headers, lines) if lines else ""


def _gist(error):
    """First and last line of an error: which worker, and the exception."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


def run_scenarios(scenarios, row_figures, *, repeats, target_seconds, progress,
                  on_scenario=None, on_run=None):
    """Run each scenario side by side; returns (results, figures_by_row,
    failures, report): results as (scenario, series, skipped, rows) tuples,
    figures by row key, one line per failed subject, and the JSON report.
    For a progress bar: `on_scenario(index, scenario)` is called as each
    scenario starts, and `on_run` is measure_side_by_side's."""
    results, figures_by_row, failures, report = [], {}, [], {}
    for index, scenario in enumerate(scenarios):
        if on_scenario:
            on_scenario(index, scenario)
        series, skipped = run_scenario(scenario, repeats=repeats, target_seconds=target_seconds,
                                       progress=progress, on_run=on_run)
        rows = {row.key: row_figures(row, series) for row in scenario.rows}
        figures_by_row.update(rows)
        results.append((scenario, series, skipped, rows))
        for key, s in series.items():
            if s.error:
                failures.append(f"{scenario.name} / {key}: {_gist(s.error)}")
        report[scenario.name] = {
            "title": scenario.title,
            "skipped": skipped,
            "subjects": {key: {"runs": s.runs, "discarded_runs": s.discarded, "error": s.error}
                         for key, s in series.items()},
            "rows": rows,
        }
    return results, figures_by_row, failures, report


def libraries_measured(env):
    """print_preamble's `libraries` for a benchmark of fastmp against
    faster-fifo with NumPy arrays: their versions (or "not installed")."""
    return (f"fastmp {env['fastmp']}; faster-fifo {env['faster_fifo'] or 'not installed'}; "
            f"numpy {env['numpy'] or 'not installed'}")


def print_preamble(title, *, quick, elapsed, env, libraries, repeats, target_seconds):
    print(f"# {title} benchmark ({'quick' if quick else 'full'} run, {elapsed:.0f} s)\n")
    print(f"Python {env['python']}, {env['cpus']} CPUs, {env['platform']}; workers started with "
          f"fork; {libraries}.")
    print(f"Each figure is the median of {repeats} runs of ~{target_seconds} s (steady state, "
          f"after a warm-up), runs interleaved across implementations; {env['malloc']}.")


def print_failures(failures):
    if failures:
        print("\n## Failures\n")
        for failure in failures:
            print(f"* {failure}")
        print("\n(full worker tracebacks are in the --json output)")


def finish_report(args, results, failures, **json_fields):
    """The end of every bench script: skipped scenarios, failures, the JSON
    file if asked for (`json_fields` plus the scenarios' report); returns
    the exit status."""
    skipped_notes = sorted({f"{key}: {why}" for _, _, skipped, _ in results
                            for key, why in skipped.items()})
    if skipped_notes:
        print("\nSkipped: " + "; ".join(skipped_notes))
    print_failures(failures)
    if args.json:
        write_json(args.json, json_fields)
    return 1 if failures else 0


def write_json(path, payload):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def environment():
    def version(module):
        return getattr(module, "__version__", None) if module is not None else None

    ff_version = None
    if faster_fifo is not None:
        try:
            from importlib.metadata import version as dist_version
            ff_version = dist_version("faster-fifo")
        except Exception:
            ff_version = "unknown"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "start_method": "fork",
        "fastmp": f"{fastmp.__version__} ({Path(fastmp.__file__).parent})",
        "numpy": version(np),
        "faster_fifo": ff_version,
    }


def main(argv=None):
    parser = scenario_arguments(__doc__.split("\n\n")[0], quick_help="short smoke run (~30 s)",
                                scenario_names=SCENARIOS_BY_NAME)
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc malloc's adaptive thresholds alone (large-message "
                             "figures then flip between two modes from run to run)")
    args = parser.parse_args(argv)
    measured = measure(args, progress=progress_printer(not args.quiet))
    print_report(args, **measured)
    return finish_report(args, measured["results"], measured["failures"],
                         **json_fields(args, **measured))


def run_settings(quick):
    """(repeats, seconds per run) of a full or a quick run."""
    return (3, 0.1) if quick else (5, 0.75)


def measure(args, *, progress, on_scenario=None, on_run=None):
    """Run the scenarios chosen by `args` (--quick, --only, --system-malloc);
    returns what print_report and json_fields take."""
    repeats, target_seconds = run_settings(args.quick)
    env = environment()
    handle_sigterm()
    # Before any worker is forked: they inherit the setting.
    env["malloc"] = "malloc defaults" if args.system_malloc else pin_malloc_thresholds()
    chosen = [SCENARIOS_BY_NAME[name] for name in args.only] if args.only else SCENARIOS

    began = time.monotonic()
    results, figures_by_row, failures, report = run_scenarios(
        chosen, row_figures, repeats=repeats, target_seconds=target_seconds, progress=progress,
        on_scenario=on_scenario, on_run=on_run)
    elapsed = time.monotonic() - began
    return dict(results=results, figures_by_row=figures_by_row, failures=failures, report=report,
                env=env, repeats=repeats, target_seconds=target_seconds, elapsed=elapsed)


def json_fields(args, *, env, repeats, target_seconds, elapsed, report, **_):
    return dict(environment=env, quick=args.quick, repeats=repeats,
                target_seconds=target_seconds, elapsed_seconds=elapsed, scenarios=report)


def print_report(args, *, results, figures_by_row, env, repeats, target_seconds, elapsed, **_):
    """The Markdown report on stdout: header, results table, targets table."""
    print_preamble("fastmp.Queue", quick=args.quick, elapsed=elapsed, env=env,
                   libraries=libraries_measured(env),
                   repeats=repeats, target_seconds=target_seconds)
    print("Buffers: fastmp capacity 1 MiB (its default) and faster-fifo max_size_bytes 1 MiB, "
          "except for 64 MB arrays: faster-fifo 65 MiB (it needs the whole message to fit) and "
          "fastmp both 1 MiB and 65 MiB.  fastmp sends arrays of 512 KiB and more through "
          "its side arena (one copy, whatever the capacity).  MB = 10^6 bytes.\n")
    print("Ratios: throughput = fastmp / peer; latency = peer / fastmp.  Bigger is better for "
          "fastmp in both.\n")
    print(render_results(results))
    if any(s.unbatched_peers for s, *_ in results):
        print("\n† multiprocessing.Queue has no put_many/get_many: it runs unbatched put/get "
              "there, and the ratio compares fastmp batched against it unbatched.")
    targets_table = render_targets(figures_by_row)
    if targets_table:
        print("\n## Targets (shared/targets.md)\n")
        print(targets_table)
        print(f"\n{NOT_COVERED}")


if __name__ == "__main__":
    sys.exit(main())
