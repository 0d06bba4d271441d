#!/usr/bin/env python3
"""fastmp.FloatChannel side by side with multiprocessing's ways to pass floats.

    python benchmarks/bench_float_channel.py            # full run, ~45 s
    python benchmarks/bench_float_channel.py --quick    # smoke run, ~10 s
    python benchmarks/bench_float_channel.py --only latency --json results.json

The same method as bench_queue.py: every implementation in one invocation,
runs interleaved, real processes started with "fork", a warm-up before the
clock starts, medians of several runs, and the targets of shared/targets.md
checked on the medians.

Scenarios (fastmp.FloatChannel against):

* latency: ping-pong of one float over two channels, each round trip timed
  on its own; one-way latency = round trip / 2 (p50, p99).  Peers: one
  duplex multiprocessing.Pipe (send/recv), two multiprocessing.Queues.
* single: floats one at a time, producer -> consumer.  Peers:
  Pipe(duplex=False) send/recv, Queue put/get.
* batched: batches of 4096 floats: send_many(array('d')) and
  recv_many(out) into one reused array('d').  Peers: Pipe(duplex=False)
  send_bytes(array)/recv_bytes_into(array) (the standard library's fastest
  float batch: no pickling), Queue put/get of the array('d').
* latest_latency: latest=True channels in ping-pong (each recv waits for a
  newer value), against two multiprocessing.Value('d') (lock=True) that
  each side polls until the value changes.
* latest_reads: one process publishes a counter as fast as it can, the
  other reads the newest value as fast as it can: FloatChannel(latest=True)
  recv() (which returns only newer values) against Value('d').value reads.

Every run checks what it received: ping-pong replies equal the requests,
streams end with a marker and the consumer then finds nothing more, latest
readers see strictly increasing (FloatChannel) or non-decreasing (Value)
values.

This VM moves between two regimes every few seconds to minutes: in one a
cache line crosses between the two vCPUs in ~50 ns, in the other in ~250 ns
(a C ping-pong of one line).  FloatChannel's absolute figures follow (one-way
p50 ~120-150 ns or ~450-500 ns; batches of 4096 ~4.4 or ~1.6 G floats/s),
and a full run may see both; the ratios come from interleaved runs.
"""

import array
import queue
import sys
import time

# bench_queue also puts this checkout on sys.path when fastmp is not installed.
from bench_queue import (
    Flavour, Row, Scenario, Subject, WATCHDOG, environment, finish_report, print_preamble,
    run_scenarios,
)
from _common import (
    CTX, BenchmarkFailure, handle_sigterm, markdown_table, percentile, pin_malloc_thresholds,
    progress_printer, run_processes, scenario_arguments,
)

from fastmp._float_channel import FloatChannel

#: Floats per send_many / recv_many (the target's batch).
BATCH = 4096
#: FloatChannel capacity: its default.
CAPACITY = 4096
MARK = -1.0   # last float of a stream


# -- the implementations ---------------------------------------------------------
#
# Each flavour hands the workloads plain callables: the hot loops call them
# directly, as a user would write them.

class ChannelFlavour(Flavour):
    column = "fastmp"
    label = "fastmp.FloatChannel"

    def __init__(self, latest=False):
        self.latest = latest

    def one_way(self):
        """(reader, writer) ends of one channel, and a clean-up."""
        ch = FloatChannel(CAPACITY, latest=self.latest)
        return ch, ch, ch.close

    def two_way(self):
        """(client's send, client's recv, echo's recv, echo's send), clean-up."""
        requests = FloatChannel(CAPACITY, latest=self.latest)
        replies = FloatChannel(CAPACITY, latest=self.latest)

        def close():
            requests.close()
            replies.close()
        return requests.send, replies.recv, requests.recv, replies.send, close

    def send(self, writer):
        return writer.send

    def recv(self, reader):
        return reader.recv

    def send_batch(self, writer):
        return writer.send_many

    def recv_into(self, reader):
        return reader.recv_many

    def assert_drained(self, reader):
        try:
            extra = reader.recv(timeout=0.05)
        except (queue.Empty, EOFError):
            return
        raise BenchmarkFailure(f"{self.label}: unexpected extra float after the run: {extra}")


class PipeFlavour(Flavour):
    column = "pipe"
    label = "multiprocessing.Pipe"

    def one_way(self):
        reader, writer = CTX.Pipe(duplex=False)

        def close():
            reader.close()
            writer.close()
        return reader, writer, close

    def two_way(self):
        client, echo = CTX.Pipe()

        def close():
            client.close()
            echo.close()
        return client.send, client.recv, echo.recv, echo.send, close

    def send(self, writer):
        return writer.send

    def recv(self, reader):
        return reader.recv

    def send_batch(self, writer):
        return writer.send_bytes

    def recv_into(self, reader):
        into = reader.recv_bytes_into

        def recv_into(out):
            return into(out) // 8
        return recv_into

    def assert_drained(self, reader):
        # The parent still holds the writer end: poll() cannot mean EOF.
        if reader.poll(0.05):
            raise BenchmarkFailure(f"{self.label}: unexpected extra message after the run")


class QueueFlavour(Flavour):
    column = "queue"
    label = "multiprocessing.Queue"

    def one_way(self):
        q = CTX.Queue()

        def close():
            q.close()
            q.join_thread()
        return q, q, close

    def two_way(self):
        requests, replies = CTX.Queue(), CTX.Queue()

        def close():
            for q in (requests, replies):
                q.close()
                q.join_thread()
        return requests.put, replies.get, requests.get, replies.put, close

    def send(self, writer):
        return writer.put

    def recv(self, reader):
        return reader.get

    def send_batch(self, writer):
        return writer.put

    def recv_into(self, reader):
        get = reader.get

        def recv_into(out):
            batch = get()
            out[:len(batch)] = batch
            return len(batch)
        return recv_into

    def assert_drained(self, reader):
        try:
            reader.get(timeout=0.05)
        except queue.Empty:
            return
        raise BenchmarkFailure(f"{self.label}: unexpected extra message after the run")


class ValuePort:
    """One direction of a ping-pong over a multiprocessing.Value('d'): send
    stores, recv polls (each poll takes the Value's lock) until it changes."""

    def __init__(self, value):
        self.value = value
        self.last = value.value

    def send(self, x):
        self.value.value = x

    def recv(self):
        v = self.value
        last = self.last
        while True:
            x = v.value
            if x != last:
                self.last = x
                return x


class ValueFlavour(Flavour):
    column = "value"
    label = "multiprocessing.Value('d')"

    def one_way(self):
        v = CTX.Value("d", 0.0)
        return v, v, lambda: None

    def two_way(self):
        requests, replies = CTX.Value("d", 0.0), CTX.Value("d", 0.0)
        # Each process gets its own port objects (forked copies): the client
        # polls `replies`, the echo polls `requests`.
        return (ValuePort(requests).send, ValuePort(replies).recv, ValuePort(requests).recv,
                ValuePort(replies).send, lambda: None)

    def send(self, writer):
        def store(x):
            writer.value = x
        return store

    def recv(self, reader):
        def load():
            return reader.value
        return load


CHANNEL, LATEST, PIPE, QUEUE, VALUE = (ChannelFlavour(), ChannelFlavour(latest=True),
                                       PipeFlavour(), QueueFlavour(), ValueFlavour())
LATEST.label = "fastmp.FloatChannel(latest=True)"
RING_SUBJECTS = [Subject(f.column, f, 0) for f in (CHANNEL, PIPE, QUEUE)]
LATEST_SUBJECTS = [Subject(f.column, f, 0) for f in (LATEST, VALUE)]
PEER_LABELS = {"pipe": PIPE.label, "queue": QUEUE.label, "value": VALUE.label}


# -- workloads (they run in the worker processes) --------------------------------

def _wait(event):
    if not event.wait(WATCHDOG):
        raise BenchmarkFailure("the consumer never finished the warm-up")


def echo(recv, send, total):
    for _ in range(total):
        send(recv())


def ping(send, recv, count, warmup):
    """Round trips of one float, each timed on its own (perf_counter_ns)."""
    timer = time.perf_counter_ns
    samples = []
    append = samples.append
    for i in range(1, warmup + count + 1):
        x = float(i)
        start = timer()
        send(x)
        reply = recv()
        append(timer() - start)
        if reply != x:
            raise BenchmarkFailure(f"round trip {i}: sent {x}, got back {reply}")
    timed = sorted(samples[warmup:])
    return {"seconds": sum(timed) / 1e9,
            "p50_ns": percentile(timed, 50) / 2, "p99_ns": percentile(timed, 99) / 2}


def produce_single(send, count, warmup, warmed):
    for _ in range(warmup):
        send(1.0)
    _wait(warmed)
    for _ in range(count - 1):
        send(1.0)
    send(MARK)


def consume_single(recv, count, warmup, warmed, assert_drained):
    for _ in range(warmup):
        recv()
    start = time.perf_counter()
    warmed.set()
    for _ in range(count):
        last = recv()
    seconds = time.perf_counter() - start
    if last != MARK:
        raise BenchmarkFailure(f"last float: expected {MARK}, got {last}")
    assert_drained()
    return {"seconds": seconds, "floats": count}


def produce_batches(send_batch, batches, warmup_batches, warmed):
    chunk = array.array("d", [1.0]) * BATCH
    for _ in range(warmup_batches):
        send_batch(chunk)
    _wait(warmed)
    for _ in range(batches - 1):
        send_batch(chunk)
    final = array.array("d", chunk)
    final[-1] = MARK
    send_batch(final)


def consume_batches(recv_into, floats, warmup_floats, warmed, assert_drained):
    out = array.array("d", bytes(8 * BATCH))
    got = 0
    while got < warmup_floats:
        got += recv_into(out)
    if got != warmup_floats:
        raise BenchmarkFailure(f"warm-up: received {got} floats, {warmup_floats} were sent")
    start = time.perf_counter()
    warmed.set()
    got = 0
    while got < floats:
        k = recv_into(out)
        got += k
    seconds = time.perf_counter() - start
    if got != floats or out[k - 1] != MARK:
        raise BenchmarkFailure(f"received {got} floats ending {out[k - 1]}, "
                               f"{floats} were sent ending {MARK}")
    assert_drained()
    return {"seconds": seconds, "floats": floats}


def publish_counter(send, stop):
    """Publish 1.0, 2.0, ... until told to stop."""
    i = 0.0
    while not stop.is_set():
        for _ in range(1024):
            i += 1.0
            send(i)


def read_newest(recv, count, warmup, stop, strictly):
    last = -1.0
    try:
        for _ in range(warmup):
            last = recv()
        start = time.perf_counter()
        for _ in range(count):
            x = recv()
            if x < last or (strictly and x == last):
                raise BenchmarkFailure(f"read {x} after {last}: not "
                                       f"{'strictly ' if strictly else ''}increasing")
            last = x
        seconds = time.perf_counter() - start
    finally:
        stop.set()
    return {"seconds": seconds, "reads": count, "last": last}


# -- one timed run of each kind ----------------------------------------------------------

def _warmup_share(count, multiple=1):
    share = max(count // 10, multiple)
    return share - share % multiple


def run_pingpong(subject, count):
    flavour = subject.flavour
    warmup = max(count // 10, 100)
    client_send, client_recv, echo_recv, echo_send, close = flavour.two_way()
    try:
        result = run_processes([
            ("echo", echo, (echo_recv, echo_send, warmup + count)),
            ("client", ping, (client_send, client_recv, count, warmup)),
        ], WATCHDOG)["client"]
    finally:
        close()
    result["summary"] = (f"one-way p50 {format_ns(result['p50_ns'])}, "
                         f"p99 {format_ns(result['p99_ns'])}")
    return result


def run_single(subject, count):
    flavour = subject.flavour
    warmup = _warmup_share(count)
    reader, writer, close = flavour.one_way()
    try:
        warmed = CTX.Event()
        result = run_processes([
            ("producer", produce_single, (flavour.send(writer), count, warmup, warmed)),
            ("consumer", consume_single, (flavour.recv(reader), count, warmup, warmed,
                                          lambda: flavour.assert_drained(reader))),
        ], WATCHDOG)["consumer"]
    finally:
        close()
    return _rate(result)


def run_batched(subject, count):
    flavour = subject.flavour
    batches = max(count // BATCH, 1)
    warmup_batches = _warmup_share(batches)
    reader, writer, close = flavour.one_way()
    try:
        warmed = CTX.Event()
        result = run_processes([
            ("producer", produce_batches, (flavour.send_batch(writer), batches, warmup_batches,
                                           warmed)),
            ("consumer", consume_batches, (flavour.recv_into(reader), batches * BATCH,
                                           warmup_batches * BATCH, warmed,
                                           lambda: flavour.assert_drained(reader))),
        ], WATCHDOG)["consumer"]
    finally:
        close()
    return _rate(result)


def run_latest_reads(subject, count):
    flavour = subject.flavour
    warmup = _warmup_share(count)
    reader, writer, close = flavour.one_way()
    try:
        stop = CTX.Event()
        result = run_processes([
            ("publisher", publish_counter, (flavour.send(writer), stop)),
            ("reader", read_newest, (flavour.recv(reader), count, warmup, stop,
                                     flavour is LATEST)),
        ], WATCHDOG)["reader"]
    finally:
        close()
    result["ns_per_read"] = result["seconds"] / result["reads"] * 1e9
    result["summary"] = f"{format_ns(result['ns_per_read'])} per read"
    return result


def _rate(result):
    rate = result["floats"] / result["seconds"]
    return dict(result, floats_s=rate, summary=format_rate(rate))


# -- rendering -----------------------------------------------------------------------

def format_rate(value):
    if value is None:
        return "n/a"
    if value >= 1e9:
        return f"{value / 1e9:.2f} G floats/s"
    if value >= 1e6:
        return f"{value / 1e6:.1f} M floats/s"
    return f"{value / 1e3:.0f} k floats/s"


def format_ns(value):
    if value is None:
        return "n/a"
    return f"{value:.0f} ns" if value < 10_000 else f"{value / 1e3:.1f} us"


def format_value(value, unit):
    return format_rate(value) if unit == "floats/s" else format_ns(value)


def format_ratio(ratio):
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


# -- scenarios -------------------------------------------------------------------------

SCENARIOS = [
    Scenario(
        "latency", "ping-pong of one float over two channels (one-way = round trip / 2)",
        run_pingpong, {"fastmp": 1e6, "pipe": 2e4, "queue": 6e3},
        [Row("latency_p50", "one-way latency, p50", "p50_ns", "ns", lower_is_better=True),
         Row("latency_p99", "one-way latency, p99", "p99_ns", "ns", lower_is_better=True)],
        subjects=RING_SUBJECTS, min_count=1000, max_count=3_000_000),
    Scenario(
        "single", "floats one at a time, 1 -> 1", run_single,
        {"fastmp": 1.5e7, "pipe": 2e5, "queue": 2e5},
        [Row("single", "floats one at a time (send/recv)", "floats_s", "floats/s")],
        subjects=RING_SUBJECTS, min_count=10_000, max_count=100_000_000),
    Scenario(
        "batched", f"batches of {BATCH} floats, 1 -> 1", run_batched,
        {"fastmp": 3e9, "pipe": 2e8, "queue": 5e7},
        [Row("batched", f"batches of {BATCH} floats (send_many/recv_many)", "floats_s",
             "floats/s")],
        subjects=RING_SUBJECTS, min_count=20 * BATCH, max_count=20_000_000_000, multiple=BATCH),
    Scenario(
        "latest_latency", "latest mode: ping-pong of one float, newest-value channels",
        run_pingpong, {"fastmp": 1e6, "value": 2e5},
        [Row("latest_p50", "latest mode one-way latency, p50", "p50_ns", "ns",
             lower_is_better=True),
         Row("latest_p99", "latest mode one-way latency, p99", "p99_ns", "ns",
             lower_is_better=True)],
        subjects=LATEST_SUBJECTS, min_count=1000, max_count=3_000_000),
    Scenario(
        "latest_reads", "latest mode: newest-value reads while a writer publishes",
        run_latest_reads, {"fastmp": 1e7, "value": 2e6},
        [Row("latest_reads", "newest-value read under a busy writer", "ns_per_read", "ns",
             lower_is_better=True)],
        subjects=LATEST_SUBJECTS, min_count=10_000, max_count=200_000_000),
]
SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}

#: shared/targets.md, FloatChannel rows: (label, row, must, aim), each a
#: (text, "max"|"min", bound) on fastmp's figure.
TARGETS = [
    ("one-way latency p50", "latency_p50", ("<= 1 us", "max", 1000.0), ("<= 0.3 us", "max", 300.0)),
    ("throughput, one at a time", "single", (">= 10 M floats/s", "min", 1e7), None),
    (f"throughput, batches of {BATCH}", "batched", (">= 200 M floats/s", "min", 2e8),
     (">= 1 G floats/s", "min", 1e9)),
]


def row_figures(row, series):
    """Medians for one row: fastmp, each peer, and ratios oriented so that
    bigger is better for fastmp."""
    def median(key):
        s = series.get(key)
        return s.median(row.metric) if s is not None and s.error is None else None

    figures = {"unit": row.unit, "fastmp": median("fastmp"), "peers": {}, "ratios": {}}
    for key in series:
        if key == "fastmp":
            continue
        value = median(key)
        figures["peers"][key] = value
        if value and figures["fastmp"]:
            figures["ratios"][key] = (value / figures["fastmp"] if row.lower_is_better
                                      else figures["fastmp"] / value)
    return figures


def render_results(results, peers):
    headers = (["scenario", "fastmp.FloatChannel"] + [PEER_LABELS[p] for p in peers]
               + [f"fastmp vs {PEER_LABELS[p].split('.')[-1]}" for p in peers])
    lines = []
    for scenario, series, _, rows in results:
        if not any(s.key in peers for s in scenario.subjects):
            continue

        def cell(key, value, unit):
            s = series.get(key)
            return "FAILED" if s is not None and s.error else format_value(value, unit)

        for row in scenario.rows:
            f = rows[row.key]
            lines.append([row.label, cell("fastmp", f["fastmp"], row.unit),
                          *(cell(p, f["peers"].get(p), row.unit) for p in peers),
                          *(format_ratio(f["ratios"].get(p)) for p in peers)])
    return markdown_table(headers, lines) if lines else ""


def verdict(check, value):
    if check is None:
        return "—", "—"
    text, kind, bound = check
    if value is None:
        return text, "not measured"
    met = value <= bound if kind == "max" else value >= bound
    return text, "met" if met else "NOT met"


def render_targets(figures_by_row):
    lines = []
    for label, row, must, aim in TARGETS:
        figures = figures_by_row.get(row)
        if figures is None:
            continue
        value = figures["fastmp"]
        measured = format_value(value, figures["unit"])
        must_text, must_verdict = verdict(must, value)
        aim_text, aim_verdict = verdict(aim, value)
        lines.append([f"FloatChannel {label}", must_text, measured, must_verdict, aim_text,
                      aim_verdict])
    return markdown_table(["target", "must", "measured", "must met?", "aim", "aim met?"],
                          lines) if lines else ""


def main(argv=None):
    parser = scenario_arguments(__doc__.split("\n\n")[0], quick_help="short smoke run (~10 s)",
                                scenario_names=SCENARIOS_BY_NAME)
    args = parser.parse_args(argv)

    repeats = 3 if args.quick else 5
    target_seconds = 0.1 if args.quick else 0.5
    progress = progress_printer(not args.quiet)
    env = environment()
    handle_sigterm()
    env["malloc"] = pin_malloc_thresholds()  # before any worker is forked
    chosen = [s for s in SCENARIOS if s.name in args.only] if args.only else SCENARIOS

    began = time.monotonic()
    results, figures_by_row, failures, report = run_scenarios(
        chosen, row_figures, repeats=repeats, target_seconds=target_seconds, progress=progress)
    elapsed = time.monotonic() - began

    print_preamble("fastmp.FloatChannel", quick=args.quick, elapsed=elapsed, env=env,
                   libraries=f"fastmp {env['fastmp']}", repeats=repeats,
                   target_seconds=target_seconds)
    print(f"FloatChannel capacity {CAPACITY} floats (its default).  Ping-pongs: "
          f"multiprocessing.Pipe is one duplex Pipe(), Queue two Queues; one-way streams use "
          f"Pipe(duplex=False).  Batches: Pipe send_bytes/recv_bytes_into of the array('d') "
          f"(no pickling), Queue put/get of the array('d').  This VM's cache-transfer regime "
          f"shifts during a run (see the docstring): absolute figures move by ~3x with it.\n")
    print("Ratios: throughput = fastmp / peer; latency and time per read = peer / fastmp.  "
          "Bigger is better for fastmp in both.\n")
    ring_table = render_results(results, ["pipe", "queue"])
    if ring_table:
        print(ring_table)
    latest_table = render_results(results, ["value"])
    if latest_table:
        print("\nLatest mode (FloatChannel(latest=True)) against multiprocessing.Value('d') "
              "(lock=True; the ping-pong polls it until it changes):\n")
        print(latest_table)
    targets_table = render_targets(figures_by_row)
    if targets_table:
        print("\n## Targets (shared/targets.md, FloatChannel rows)\n")
        print(targets_table)
    return finish_report(args, results, failures, environment=env, quick=args.quick,
                         repeats=repeats, target_seconds=target_seconds,
                         elapsed_seconds=elapsed, scenarios=report)


if __name__ == "__main__":
    sys.exit(main())
