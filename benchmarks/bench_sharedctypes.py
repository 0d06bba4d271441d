#!/usr/bin/env python3
"""fastmp's Value, Array, RawValue, RawArray, Lock and RLock side by side with
multiprocessing's.

    python benchmarks/bench_sharedctypes.py            # full run, ~30 s
    python benchmarks/bench_sharedctypes.py --quick    # smoke run, ~5 s
    python benchmarks/bench_sharedctypes.py --only value --only contended --json results.json

What a figure means.  Each operation is timed as a user writes it, in a
function: `for _ in range(n): x = v.value`.  The same loop with `pass` for a
body is timed just before it, and the difference, divided by n, is the
figure: the statement itself (loading v, i and x from locals, the attribute
access or subscript, taking and giving back the lock, converting the number
to or from a Python float or int, storing the result), without the `for`.
The last column gives the whole iteration, loop included.  Garbage
collection is off while the clock runs; each run starts with a short
untimed warm-up of both loops.

Both implementations in one invocation, runs interleaved (fastmp,
multiprocessing, fastmp, ...) so that the noise of this shared VM hits both
alike; run length adapts to each one's speed; figures are medians.  Nothing
fast can be wrong: every run checks what it read (a value set just before),
what it wrote (and that the neighbouring items were left alone), that the
counter holds exactly the number of increments, and that the locks are free
afterwards.  The contended run starts 2 processes ("fork") that increment
the same Value N times each under its lock and checks the total exactly; a
worker that fails, dies or hangs (60 s watchdog) turns the figure into
FAILED, with the reason printed.
"""

import argparse
import gc
import itertools
import statistics
import sys
import time
from dataclasses import dataclass

from bench_queue import (
    Target, environment, fastmp, print_failures, write_json,
)
from _common import (
    CTX, BenchmarkFailure, Check, evaluate_checks, format_ratio, format_value, handle_sigterm,
    markdown_table, measure_side_by_side, progress_printer, run_processes,
)

IMPLEMENTATIONS = {"fastmp": fastmp, "multiprocessing": CTX}  # CTX: the "fork" context
KEYS = list(IMPLEMENTATIONS)
ARRAY_LENGTH = 1000
INDEX = 500            # the item read and written in the Array rows
WARMUP = 2000          # untimed iterations of each loop before a run
WATCHDOG = 60.0        # seconds, for the contended run's processes


# -- the timed loops ---------------------------------------------------------------

def compile_loop(body):
    """`def timed(n, obj, i, x): for _ in range(n): <body>; return x`.

    Every loop, the empty one included, has this same shape and locals, so
    the empty loop's time is exactly the part that is not the statement."""
    lines = ["def timed(n, obj, i, x):", "    for _ in range(n):"]
    lines += ["        " + line for line in body.splitlines()]
    lines.append("    return x")
    namespace = {}
    exec(compile("\n".join(lines), f"<loop: {body!r}>", "exec"), namespace)
    return namespace["timed"]


EMPTY_LOOP = compile_loop("pass")
IDIOM = "with obj.get_lock():\n    obj.value += 1"


# -- what each row creates, sets up and checks --------------------------------------
#
# prepare(obj, run) -> (x, expected): called after the warm-up, just before
# the clock.  check(obj, result, n, expected) -> None or a description of
# what is wrong; result is what the loop returned (its last x).

def prepare_read_value(obj, run):
    expected = run + 0.5
    obj.value = expected
    return 0.0, expected


def check_read(obj, result, n, expected):
    if result != expected:
        return f"read {result!r}, expected {expected!r}"


def prepare_write_value(obj, run):
    obj.value = 0.0
    return run + 0.25, run + 0.25


def check_write_value(obj, result, n, expected):
    if obj.value != expected:
        return f"value is {obj.value!r} after writing {expected!r}"


def prepare_read_item(obj, run):
    expected = run + 0.5
    obj[INDEX] = expected
    return 0.0, expected


def prepare_write_item(obj, run):
    obj[INDEX] = 0.0
    return run + 0.25, run + 0.25


def check_write_item(obj, result, n, expected):
    if obj[INDEX] != expected:
        return f"item {INDEX} is {obj[INDEX]!r} after writing {expected!r}"
    if obj[INDEX - 1] != 0.0 or obj[INDEX + 1] != 0.0:
        return f"neighbours of item {INDEX} changed: {obj[INDEX - 1]!r}, {obj[INDEX + 1]!r}"


def prepare_counter(obj, run):
    obj.value = 0
    return 0, None


def check_counter(obj, result, n, expected):
    if obj.value != n:
        return f"counter is {obj.value} after {n} increments"
    if obj.get_lock()._semlock._count() != 0:
        return "the Value's lock is still held after the loop"


def prepare_nothing(obj, run):
    return 0, None


def check_lock_free(obj, result, n, expected):
    if not obj.acquire(False):
        return "the lock is still held after the loop"
    obj.release()


def check_rlock_free(obj, result, n, expected):
    if obj._semlock._count() != 0:
        return f"the RLock is still held {obj._semlock._count()} times after the loop"


@dataclass
class Micro:
    """One row timed in this process: a statement on one object."""
    key: str
    group: str                 # --only name
    label: str
    body: str                  # the statement; the object is `obj`, the index `i`
    make: object               # implementation module or context -> the object
    prepare: object
    check: object
    guess_ns: dict             # implementation -> ns per iteration (first run's size)
    note: str = ""


def _value(m):
    return m.Value("d", 0.0, lock=True)


def _array(m):
    return m.Array("d", ARRAY_LENGTH, lock=True)


MICROS = [
    Micro("value_read", "value", "`x = v.value`, Value('d', lock=True)", "x = obj.value", _value,
          prepare_read_value, check_read, {"fastmp": 40, "multiprocessing": 100}),
    Micro("value_write", "value", "`v.value = x`, Value('d', lock=True)", "obj.value = x", _value,
          prepare_write_value, check_write_value, {"fastmp": 40, "multiprocessing": 100}),
    Micro("array_read", "array", "`x = a[i]`, Array('d', 1000, lock=True)", "x = obj[i]", _array,
          prepare_read_item, check_read, {"fastmp": 40, "multiprocessing": 150}),
    Micro("array_write", "array", "`a[i] = x`, Array('d', 1000, lock=True)", "obj[i] = x", _array,
          prepare_write_item, check_write_item, {"fastmp": 40, "multiprocessing": 150}),
    Micro("raw_value_read", "raw_value", "`x = r.value`, RawValue('d')", "x = obj.value",
          lambda m: m.RawValue("d"), prepare_read_value, check_read,
          {"fastmp": 30, "multiprocessing": 30}),
    Micro("raw_value_write", "raw_value", "`r.value = x`, RawValue('d')", "obj.value = x",
          lambda m: m.RawValue("d"), prepare_write_value, check_write_value,
          {"fastmp": 30, "multiprocessing": 30}),
    Micro("raw_array_read", "raw_array", "`x = r[i]`, RawArray('d', 1000)", "x = obj[i]",
          lambda m: m.RawArray("d", ARRAY_LENGTH), prepare_read_item, check_read,
          {"fastmp": 30, "multiprocessing": 30}),
    Micro("raw_array_write", "raw_array", "`r[i] = x`, RawArray('d', 1000)", "obj[i] = x",
          lambda m: m.RawArray("d", ARRAY_LENGTH), prepare_write_item, check_write_item,
          {"fastmp": 30, "multiprocessing": 30}),
    Micro("idiom", "idiom", "`with v.get_lock(): v.value += 1`, Value('i'), 1 process", IDIOM,
          lambda m: m.Value("i", 0), prepare_counter, check_counter,
          {"fastmp": 150, "multiprocessing": 600}),
    Micro("lock_pair", "locks", "`lock.acquire(); lock.release()`, Lock()",
          "obj.acquire()\nobj.release()", lambda m: m.Lock(), prepare_nothing, check_lock_free,
          {"fastmp": 60, "multiprocessing": 150}),
    Micro("rlock_pair", "locks", "`lock.acquire(); lock.release()`, RLock()",
          "obj.acquire()\nobj.release()", lambda m: m.RLock(), prepare_nothing, check_rlock_free,
          {"fastmp": 60, "multiprocessing": 150}),
    Micro("lock_with", "locks", "`with lock: pass`, Lock()", "with obj:\n    pass",
          lambda m: m.Lock(), prepare_nothing, check_lock_free,
          {"fastmp": 60, "multiprocessing": 150}),
    Micro("rlock_with", "locks", "`with lock: pass`, RLock()", "with obj:\n    pass",
          lambda m: m.RLock(), prepare_nothing, check_rlock_free,
          {"fastmp": 60, "multiprocessing": 150}),
]


def micro_runner(micro):
    """run_once(key, count) for measure_side_by_side: one timed empty loop,
    then one timed loop of the statement, count iterations each."""
    loop = compile_loop(micro.body)
    objects = {key: micro.make(module) for key, module in IMPLEMENTATIONS.items()}
    runs = itertools.count(1)

    def run_once(key, count):
        obj = objects[key]
        x, _ = micro.prepare(obj, 0)
        EMPTY_LOOP(WARMUP, obj, INDEX, x)
        loop(WARMUP, obj, INDEX, x)
        x, expected = micro.prepare(obj, next(runs))
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter()
            EMPTY_LOOP(count, obj, INDEX, x)
            t1 = time.perf_counter()
            result = loop(count, obj, INDEX, x)
            t2 = time.perf_counter()
        finally:
            if gc_was_enabled:
                gc.enable()
        wrong = micro.check(obj, result, count, expected)
        if wrong:
            raise BenchmarkFailure(f"{key}: {micro.label}: {wrong}")
        loop_ns = (t1 - t0) / count * 1e9
        gross_ns = (t2 - t1) / count * 1e9
        net_ns = gross_ns - loop_ns
        return {"seconds": t2 - t1, "net_ns": net_ns, "gross_ns": gross_ns, "loop_ns": loop_ns,
                "summary": f"{net_ns:.1f} ns net, {gross_ns:.1f} ns with the loop"}

    return run_once


# -- the contended counter ------------------------------------------------------------

CONTENDED_KEY = "contended"
CONTENDED_LABEL = "`with v.get_lock(): v.value += 1`, Value('i'), 2 processes contending, increments/s"


def increment_worker(value, barrier, n):
    loop = compile_loop(IDIOM)
    barrier.wait(30)
    start = time.perf_counter()   # CLOCK_MONOTONIC: comparable across processes
    loop(n, value, 0, 0)
    return start, time.perf_counter()


def contended_run_once(key, count):
    """2 processes increment one fresh Value count/2 times each."""
    module = IMPLEMENTATIONS[key]
    value = module.Value("i", 0)
    barrier = CTX.Barrier(2)
    each = count // 2
    results = run_processes(
        [(f"{key} incrementer {k}", increment_worker, (value, barrier, each)) for k in (1, 2)],
        WATCHDOG)
    total = value.value
    if total != 2 * each:
        raise BenchmarkFailure(f"{key}: counter is {total} after 2 processes x {each:,} "
                               f"increments (expected {2 * each:,})")
    starts, ends = zip(*results.values())
    seconds = max(ends) - min(starts)
    return {"seconds": seconds, "ops_s": 2 * each / seconds, "ns_per_op": seconds / (2 * each) * 1e9,
            "worker_seconds": [end - start for start, end in results.values()],
            "summary": f"{2 * each / seconds / 1e6:.2f} M increments/s, total {total:,} checked"}


CONTENDED_GUESS = {"fastmp": 2e6, "multiprocessing": 4e5}   # increments/s


# -- targets ------------------------------------------------------------------------

def _at_most_ns(bound):
    return [Check(f"<= {bound} ns", at_most=bound)]


NO_SLOWER = [Check("no slower than multiprocessing (>= 1.0x)", peer="multiprocessing", at_least=1.0)]
FASTER = [Check("faster (>= 1.05x, beyond this VM's noise)", peer="multiprocessing", at_least=1.05)]

TARGETS = [
    Target("Value(lock=True).value read", "value_read", _at_most_ns(100), _at_most_ns(80)),
    Target("Value(lock=True).value write", "value_write", _at_most_ns(100), _at_most_ns(80)),
    Target("Array(lock=True)[i] read", "array_read", _at_most_ns(100), _at_most_ns(80)),
    Target("Array(lock=True)[i] write", "array_write", _at_most_ns(100), _at_most_ns(80)),
    Target("RawValue .value read", "raw_value_read", NO_SLOWER, FASTER),
    Target("RawValue .value write", "raw_value_write", NO_SLOWER, FASTER),
    Target("RawArray [i] read", "raw_array_read", NO_SLOWER, FASTER),
    Target("RawArray [i] write", "raw_array_write", NO_SLOWER, FASTER),
]

NOT_COVERED = ("The idiom, contended and Lock/RLock rows have no line in shared/targets.md: "
               "they are reported for comparison only.")


# -- running and reporting ------------------------------------------------------------

def figures_for(series, metric, unit, lower_is_better, extra_metric=None):
    def median(key, name):
        s = series.get(key)
        return s.median(name) if s is not None and s.error is None else None

    fast, peer = median("fastmp", metric), median("multiprocessing", metric)
    figures = {"unit": unit, "fastmp": fast, "peers": {"multiprocessing": peer}, "ratios": {}}
    if fast and peer and fast > 0 and peer > 0:
        figures["ratios"]["multiprocessing"] = peer / fast if lower_is_better else fast / peer
    if extra_metric:
        figures["extra"] = {key: median(key, extra_metric) for key in KEYS}
    return figures


def render_targets(figures_by_row):
    headers = ["target", "must", "measured", "must met?", "aim", "measured", "aim met?"]
    lines = []
    for target in TARGETS:
        figures = figures_by_row.get(target.row)
        if figures is None:
            continue  # not run (--only)
        cells = [target.label]
        for checks in (target.must, target.aim):
            measured, verdict = evaluate_checks(checks, figures)
            ratio = figures["ratios"].get("multiprocessing")
            if checks[0].peer is not None and ratio is not None:
                measured += f" ({ratio:.2f})"   # the table's 1.0x may be 0.97
                if verdict == "NOT met" and checks[0].at_least == 1.0 and ratio >= 0.95:
                    verdict += " (within 5%: noise on this VM)"
            cells += [" and ".join(c.text for c in checks), measured, verdict]
        lines.append(cells)
    return markdown_table(headers, lines) if lines else ""


def _gist(error):
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


GROUPS = sorted({m.group for m in MICROS} | {CONTENDED_KEY})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (~5 s)")
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--only", metavar="NAME", action="append", choices=GROUPS,
                        help="run only these rows (repeatable): " + ", ".join(GROUPS))
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    repeats = 3 if args.quick else 7
    micro_seconds = 0.04 if args.quick else 0.1          # one timed loop of the statement
    contended_repeats = 3 if args.quick else 5
    contended_seconds = 0.15 if args.quick else 0.5
    progress = progress_printer(not args.quiet)
    env = environment()
    handle_sigterm()
    chosen = set(args.only or GROUPS)

    began = time.monotonic()
    rows, figures_by_row, failures, report = [], {}, [], {}

    def record(key, label, series, figures):
        for subject, s in series.items():
            if s.error:
                failures.append(f"{key} / {subject}: {_gist(s.error)}")
        figures_by_row[key] = figures
        report[key] = {"label": label, "figures": figures,
                       "subjects": {subject: {"runs": s.runs, "discarded_runs": s.discarded,
                                              "error": s.error}
                                    for subject, s in series.items()}}

        def cell(subject, value, unit):
            return "FAILED" if series[subject].error else format_value(value, unit)

        extra = figures.get("extra", {})
        rows.append([label, cell("fastmp", figures["fastmp"], figures["unit"]),
                     cell("multiprocessing", figures["peers"]["multiprocessing"], figures["unit"]),
                     format_ratio(figures["ratios"].get("multiprocessing")),
                     " / ".join(format_value(extra.get(k), "ns") for k in KEYS)])

    for micro in MICROS:
        if micro.group not in chosen:
            continue
        progress(f"{micro.key}: {micro.label}")
        try:
            run_once = micro_runner(micro)
        except Exception as exc:   # an implementation cannot even create the object
            failures.append(f"{micro.key}: creating the objects failed: {exc!r}")
            continue
        series = measure_side_by_side(
            KEYS, run_once,
            initial_counts={k: micro_seconds / (micro.guess_ns[k] * 1e-9) for k in KEYS},
            repeats=repeats, target_seconds=micro_seconds, min_count=1000,
            max_count=200_000_000, progress=progress)
        record(micro.key, micro.label, series,
               figures_for(series, "net_ns", "ns", lower_is_better=True, extra_metric="gross_ns"))

    if CONTENDED_KEY in chosen:
        progress(f"{CONTENDED_KEY}: {CONTENDED_LABEL}")
        series = measure_side_by_side(
            KEYS, contended_run_once,
            initial_counts={k: CONTENDED_GUESS[k] * contended_seconds for k in KEYS},
            repeats=contended_repeats, target_seconds=contended_seconds, min_count=2000,
            max_count=100_000_000, multiple=2, progress=progress)
        record(CONTENDED_KEY, CONTENDED_LABEL, series,
               figures_for(series, "ops_s", "ops/s", lower_is_better=False, extra_metric="ns_per_op"))
    elapsed = time.monotonic() - began
    loop_costs = [run["loop_ns"] for row in report.values() for subject in row["subjects"].values()
                  for run in subject["runs"] if "loop_ns" in run]
    loop_ns = statistics.median(loop_costs) if loop_costs else None

    print(f"# fastmp sharedctypes and locks benchmark ({'quick' if args.quick else 'full'} run, "
          f"{elapsed:.0f} s)\n")
    print(f"Python {env['python']}, {env['cpus']} CPUs, {env['platform']}; fastmp {env['fastmp']}; "
          f"multiprocessing's objects from its \"fork\" context.")
    print(f"Single-process rows: medians of {repeats} runs of ~{micro_seconds} s; the contended "
          f"row: medians of {contended_repeats} runs of ~{contended_seconds} s; runs interleaved "
          f"across implementations.")
    if loop_ns is not None:
        print(f"The empty loop cost {loop_ns:.1f} ns per iteration (median of all runs): a gauge "
              f"of this VM's regime for the absolute ns targets (~10 ns in its fast regime).")
    print()
    print("ns figures are per operation as written in a function, with the `for` loop's own cost "
          "subtracted (an empty `for _ in range(n): pass`, timed just before): they include the "
          "local-variable loads, the attribute access or subscript, the lock, the float "
          "conversion and the store.  The last column is the whole iteration, loop included "
          "(for the contended row: wall time per increment).  Ratios: multiprocessing / fastmp "
          "for ns, fastmp / multiprocessing for increments/s: bigger is better for fastmp.\n")
    print(markdown_table(["operation", "fastmp", "multiprocessing", "fastmp vs multiprocessing",
                          "with the loop: fastmp / multiprocessing"], rows))
    targets_table = render_targets(figures_by_row)
    if targets_table:
        print("\n## Targets (shared/targets.md)\n")
        print(targets_table)
        print(f"\n{NOT_COVERED}  RawValue and RawArray are plain ctypes objects in both "
              "libraries (only the memory differs), so ~1.0x is the expected ratio, and the "
              "aim \"faster\" can only be met by noise or memory placement.")
    print_failures(failures)

    if args.json:
        write_json(args.json, {"environment": env, "quick": args.quick, "repeats": repeats,
                               "micro_seconds": micro_seconds,
                               "contended_repeats": contended_repeats,
                               "contended_seconds": contended_seconds,
                               "elapsed_seconds": elapsed, "empty_loop_ns": loop_ns,
                               "rows": report})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
