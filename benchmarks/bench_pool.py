#!/usr/bin/env python3
"""multiprocessing's Pool and ProcessPoolExecutor on a fastmp context vs on
the standard library's, side by side.

    python benchmarks/bench_pool.py            # full run, ~40 s
    python benchmarks/bench_pool.py --quick    # smoke run, ~10 s
    python benchmarks/bench_pool.py --json results.json

Pool and the executor are the standard library's code in both columns; only
the context differs: `fastmp.get_context("fork")` gives them fastmp's
SimpleQueue (a fastmp.Pipe) for their task and result queues, the
standard library's context gives them its own.  Each scenario starts a
fresh pool per run (the start-up is outside the clock), runs interleaved
across the two contexts, checks every result, and reports the median.

Target (issue 3): `ctx.Pool(2).map` over 100,000 tiny tasks no slower than
the standard library's.  With the default chunksize, map sends a few dozen
chunks, so both columns are bound by pickling in the workers and the ratio
sits near 1.0; chunksize=1 and apply_async send one message per task and
show the queues themselves.
"""

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import sys
import time

try:
    import fastmp
except ImportError:
    # Not installed: use this checkout, built in place.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastmp

from _common import format_ratio, format_value, markdown_table, progress_printer

CONTEXTS = {
    "fastmp": fastmp.get_context("fork"),
    "multiprocessing": multiprocessing.get_context("fork"),
}


def tiny(x):
    return x + 1


def pool_map(ctx, n, chunksize=None, rounds=1):
    """Seconds per map() of n tasks (the mean of `rounds` maps in a row:
    one map of 100,000 tiny tasks lasts only ~15 ms)."""
    expected = list(range(1, n + 1))
    with ctx.Pool(2) as pool:
        pool.map(tiny, range(10))           # workers up and warm
        start = time.perf_counter()
        for _ in range(rounds):
            out = pool.map(tiny, range(n), chunksize)
        seconds = (time.perf_counter() - start) / rounds
        if out != expected:
            raise AssertionError("wrong results from Pool.map")
    pool.join()
    return seconds


def pool_apply_async(ctx, n):
    with ctx.Pool(2) as pool:
        pool.map(tiny, range(10))
        start = time.perf_counter()
        results = [pool.apply_async(tiny, (i,)) for i in range(n)]
        out = [r.get(timeout=120) for r in results]
        seconds = time.perf_counter() - start
    pool.join()
    if out != list(range(1, n + 1)):
        raise AssertionError("wrong results from Pool.apply_async")
    return seconds


def executor_map(ctx, n):
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as executor:
        list(executor.map(tiny, range(10)))
        start = time.perf_counter()
        out = list(executor.map(tiny, range(n), chunksize=64))
        seconds = time.perf_counter() - start
    if out != list(range(1, n + 1)):
        raise AssertionError("wrong results from ProcessPoolExecutor.map")
    return seconds


def scenarios(quick):
    scale = 5 if quick else 1
    n_map = 100_000
    n_one = 20_000 // scale
    return [
        ("Pool(2).map, 100,000 tiny tasks, default chunksize (mean of 10 maps)", n_map,
         lambda ctx: pool_map(ctx, n_map, rounds=10)),
        (f"Pool(2).map, {n_one:,} tiny tasks, chunksize=1", n_one,
         lambda ctx: pool_map(ctx, n_one, 1)),
        (f"Pool(2).apply_async, {n_one:,} tiny tasks", n_one,
         lambda ctx: pool_apply_async(ctx, n_one)),
        (f"ProcessPoolExecutor(2).map, {n_one:,} tiny tasks, chunksize=64", n_one,
         lambda ctx: executor_map(ctx, n_one)),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and tasks")
    parser.add_argument("--repeats", type=int, default=None, help="runs per context (default 5, quick 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    progress = progress_printer()

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; fork; fastmp {fastmp.__version__} "
          f"({os.path.dirname(fastmp.__file__)}); "
          f"medians of {repeats} runs, interleaved; pool start-up not timed.")
    rows, figures = [], []
    for label, n, run in scenarios(args.quick):
        progress(label)
        times = {name: [] for name in CONTEXTS}
        for _ in range(repeats):
            for name, ctx in CONTEXTS.items():
                seconds = run(ctx)
                times[name].append(seconds)
                progress(f"  {name}: {n / seconds:,.0f} tasks/s")
        rates = {name: n / statistics.median(values) for name, values in times.items()}
        ratio = rates["fastmp"] / rates["multiprocessing"]
        rows.append([label, format_value(rates["fastmp"], "msg/s").replace("msg", "tasks"),
                     format_value(rates["multiprocessing"], "msg/s").replace("msg", "tasks"),
                     format_ratio(ratio)])
        figures.append({"scenario": label, "tasks": n, "seconds": times,
                        "tasks_per_second": rates, "ratio": ratio})
    print()
    print(markdown_table(["scenario", "fastmp context", "multiprocessing context",
                          "fastmp vs multiprocessing"], rows))
    target = figures[0]["ratio"]
    print()
    print(f"Target: ctx.Pool(2).map over 100,000 tiny tasks no slower than the standard library's: "
          f"measured {target:.2f}x: {'met' if target >= 1.0 else 'NOT met'}"
          f"{' (within 5%: noise on this machine)' if 0.95 <= target < 1.0 else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
