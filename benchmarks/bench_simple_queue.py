#!/usr/bin/env python3
"""fastmp.SimpleQueue side by side with multiprocessing.SimpleQueue.

    python benchmarks/bench_simple_queue.py            # full run, ~25 s
    python benchmarks/bench_simple_queue.py --quick    # smoke run, ~5 s
    python benchmarks/bench_simple_queue.py --json results.json

The same method as bench_queue.py, whose workloads it reuses: both
implementations in one invocation, runs interleaved, real processes started
with "fork", a warm-up before the clock starts, medians of several runs.  The
consumer takes exactly the expected number of messages, checks the last one,
and then checks with empty() that nothing more is left.  SimpleQueue has no
timeouts: a queue that hangs is caught by the parent's watchdog, and every
worker is stopped whatever happens.
"""

import argparse
import sys
import time

from bench_queue import (
    SMALL_BUFFER, Flavour, Row, Scenario, Subject, _short, environment, finish_report,
    print_preamble, run_scenarios,
    fastmp, run_bytes, run_pingpong, run_tuples,
)
from _common import (
    CTX, BenchmarkFailure, Check, evaluate_checks, format_ratio, format_value, handle_sigterm,
    markdown_table, pin_malloc_thresholds, progress_printer,
)


class SimpleFlavour(Flavour):
    """A SimpleQueue: plain blocking put/get, no batching, no timeouts."""

    def assert_drained(self, q):
        # Every put has returned before the consumer took the last message
        # (both SimpleQueues write synchronously), so a duplicate would be
        # visible here already.
        if not q.empty():
            raise BenchmarkFailure(f"{self.label}: unexpected extra message after the run: "
                                   f"{_short(q.get())}")


class FastmpSimpleFlavour(SimpleFlavour):
    column = "fastmp"
    label = "fastmp.SimpleQueue"

    def create(self, buffer_bytes):
        return fastmp.SimpleQueue(capacity=buffer_bytes)


class StdlibSimpleFlavour(SimpleFlavour):
    column = "multiprocessing"
    label = "multiprocessing.SimpleQueue"

    def create(self, buffer_bytes):
        return CTX.SimpleQueue()  # a locked pipe: no buffer setting


FASTMP, STDLIB = FastmpSimpleFlavour(), StdlibSimpleFlavour()
SUBJECTS = [Subject(f.column, f, SMALL_BUFFER) for f in (FASTMP, STDLIB)]

SCENARIOS = [
    Scenario(
        "tuples", "(i, 3.14, 'obs') tuples, 1 -> 1, put/get", run_tuples,
        {"fastmp": 1e6, "multiprocessing": 2e5},
        [Row("tuples", "(i, 3.14, \"obs\") tuples, 1 -> 1, put/get", "msg_s", "msg/s")],
        subjects=SUBJECTS, min_count=1000),
    Scenario(
        "bytes", "64 B bytes, 1 -> 1, put/get", run_bytes,
        {"fastmp": 2e6, "multiprocessing": 2e5},
        [Row("bytes", "64 B bytes, 1 -> 1, put/get", "msg_s", "msg/s")],
        subjects=SUBJECTS, min_count=1000),
    Scenario(
        "pingpong", "ping-pong round trip of 64 B over two SimpleQueues", run_pingpong,
        {"fastmp": 5e4, "multiprocessing": 2e4},
        [Row("pingpong_p50", "ping-pong 64 B round trip, p50", "p50_us", "us", lower_is_better=True),
         Row("pingpong_p99", "ping-pong 64 B round trip, p99", "p99_us", "us", lower_is_better=True)],
        subjects=SUBJECTS, min_count=1000, max_count=300_000),
]

#: The issue's target for SimpleQueue.
TARGET_LABEL = "SimpleQueue small objects >= 5x multiprocessing.SimpleQueue"
TARGET_ROW = "tuples"
TARGET_CHECKS = [Check(">= 5x multiprocessing.SimpleQueue", peer="multiprocessing", at_least=5)]


def row_figures(row, series):
    def median(key):
        s = series.get(key)
        return s.median(row.metric) if s is not None and s.error is None else None

    fast, peer = median("fastmp"), median("multiprocessing")
    figures = {"unit": row.unit, "fastmp": fast, "peers": {"multiprocessing": peer}, "ratios": {}}
    if fast and peer:
        figures["ratios"]["multiprocessing"] = peer / fast if row.lower_is_better else fast / peer
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (~5 s)")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    repeats = 3 if args.quick else 5
    target_seconds = 0.1 if args.quick else 0.75
    progress = progress_printer(not args.quiet)
    env = environment()
    handle_sigterm()
    env["malloc"] = pin_malloc_thresholds()  # before any worker is forked

    began = time.monotonic()
    results, figures_by_row, failures, report = run_scenarios(
        SCENARIOS, row_figures, repeats=repeats, target_seconds=target_seconds, progress=progress)
    elapsed = time.monotonic() - began

    lines = []
    for scenario, series, _, rows in results:

        def cell(key, value, unit):
            return "FAILED" if series[key].error else format_value(value, unit)

        for row in scenario.rows:
            f = rows[row.key]
            lines.append([row.label, cell("fastmp", f["fastmp"], row.unit),
                          cell("multiprocessing", f["peers"]["multiprocessing"], row.unit),
                          format_ratio(f["ratios"].get("multiprocessing"))])

    print_preamble("fastmp.SimpleQueue", quick=args.quick, elapsed=elapsed, env=env,
                   libraries=f"fastmp {env['fastmp']}", repeats=repeats,
                   target_seconds=target_seconds)
    print("fastmp.SimpleQueue capacity 1 MiB (its default); multiprocessing.SimpleQueue "
          "(fork context) is a locked pipe.\n")
    print("Ratios: throughput = fastmp / multiprocessing; latency = multiprocessing / fastmp.  "
          "Bigger is better for fastmp in both.\n")
    print(markdown_table(["scenario", "fastmp.SimpleQueue", "multiprocessing.SimpleQueue",
                          "fastmp vs multiprocessing"], lines))
    target_figures = figures_by_row[TARGET_ROW]
    measured, verdict = evaluate_checks(TARGET_CHECKS, target_figures)
    ratio = target_figures["ratios"].get("multiprocessing")
    if ratio is not None:
        measured += f" ({ratio:.2f})"  # the table's 5.0x may be 4.96
    print(f"\nTarget: {TARGET_LABEL} (small tuples): measured {measured}: {verdict}")
    return finish_report(args, results, failures, environment=env, quick=args.quick,
                         repeats=repeats, target_seconds=target_seconds,
                         elapsed_seconds=elapsed,
                         target={"label": TARGET_LABEL, "measured": measured,
                                 "verdict": verdict},
                         scenarios=report)


if __name__ == "__main__":
    sys.exit(main())
