"""Shared machinery for fastmp's benchmark scripts.

* run_processes(): start worker processes, collect what each reports, and
  make sure none outlives the measurement (watchdog, terminate, kill).
* measure_side_by_side(): repeat a measurement for several implementations,
  interleaved round by round, so that the noise of this shared VM hits every
  implementation alike; run length adapts to each implementation's speed.
* scenario_arguments(): the command line the scenario benchmarks share.
* Rendering: number formatting, Markdown tables, target checks.
"""

import argparse
import ctypes
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait

# fork: children inherit the queues and the workload functions as they are,
# with nothing pickled, and start in a few milliseconds.
CTX = multiprocessing.get_context("fork")

#: How long a finished worker may take to exit before it counts as hung.
JOIN_TIMEOUT = 10.0


class BenchmarkFailure(Exception):
    """A measurement that must not produce a number: a worker crashed,
    reported an error, hung, or received the wrong messages."""


def _child_main(conn, func, args):
    # The parent turns SIGTERM into an exception (see handle_sigterm); a
    # worker must simply die of it when the parent stops it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        result = func(*args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()


def _stop(process):
    """Terminate `process` if it still runs; escalate to SIGKILL."""
    if process.pid is None:
        return
    if process.exitcode is None:
        process.terminate()
        process.join(2.0)
    if process.exitcode is None:
        os.kill(process.pid, signal.SIGKILL)
        process.join(2.0)


def run_processes(workers, timeout):
    """Run `workers`, a list of (role, func, args), each in its own process.

    Returns {role: func's return value}.  Raises BenchmarkFailure if any
    worker raises, dies, does not report within `timeout` seconds, or does not
    exit afterwards.  Whatever happens, no worker is left running.
    """
    started = []
    pending = {}  # reader end of each worker's result pipe -> role
    try:
        for role, func, args in workers:
            reader, writer = CTX.Pipe(duplex=False)
            process = CTX.Process(target=_child_main, args=(writer, func, args),
                                  name=f"bench-{role}", daemon=True)
            process.start()
            # Close the parent's copy, so that a worker that dies gives EOF
            # instead of leaving the reader waiting for ever.
            writer.close()
            started.append((role, process))
            pending[reader] = role

        results = {}
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkFailure(
                    f"timed out after {timeout:.0f} s waiting for: {', '.join(sorted(pending.values()))}")
            for reader in wait(list(pending), remaining):
                role = pending.pop(reader)
                try:
                    status, payload = reader.recv()
                except EOFError:
                    process = dict(started)[role]
                    process.join(1.0)
                    raise BenchmarkFailure(
                        f"{role} died without reporting (exit code {process.exitcode})") from None
                finally:
                    reader.close()
                if status != "ok":
                    raise BenchmarkFailure(f"{role} failed:\n{payload}")
                results[role] = payload

        for role, process in started:
            process.join(JOIN_TIMEOUT)
            if process.exitcode is None:
                raise BenchmarkFailure(f"{role} reported but did not exit within {JOIN_TIMEOUT:.0f} s")
            if process.exitcode != 0:
                raise BenchmarkFailure(f"{role} exited with code {process.exitcode}")
        return results
    finally:
        for reader in pending:
            reader.close()
        for _, process in started:
            _stop(process)


def scenario_arguments(description, *, quick_help, scenario_names):
    """The command line of a scenario benchmark: --quick, --json PATH,
    --only NAME (one of `scenario_names`, repeatable) and --quiet.  The
    script adds its own options to the parser returned."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--only", metavar="NAME", action="append", choices=list(scenario_names),
                        help="run only this scenario (repeatable): " + ", ".join(scenario_names))
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def handle_sigterm():
    """Make SIGTERM raise SystemExit in this process, so that the clean-up in
    run_processes (stop every worker) runs as it does for Ctrl-C."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)


def pin_malloc_thresholds():
    """Fix glibc malloc's mmap and trim thresholds in this process (and so in
    every worker forked from it afterwards).

    Left alone, glibc adapts its mmap threshold to the sizes a process has
    freed so far, so whether each 1 MB buffer (a pickle, a received message)
    is served from the heap or from fresh, page-faulted mmap memory depends
    on the process's history: the same queue then runs ~10x faster or slower
    from one run to the next.  With fixed thresholds, buffers up to 32 MiB
    are reused from the heap in every process, every run.  Larger ones are
    still mmap'ed (glibc's ceiling), so 64 MB messages pay their page faults
    in every implementation alike.

    Returns a description of what is in force, for the report."""
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc defaults (mallopt unavailable)"
    if mallopt(m_mmap_threshold, 32 << 20) != 1 or mallopt(m_trim_threshold, 256 << 20) != 1:
        return "malloc defaults (mallopt refused)"
    return "glibc malloc pinned: mmap threshold 32 MiB, trim threshold 256 MiB"


# -- repetitions ---------------------------------------------------------------

@dataclass
class Series:
    """Repeated measurements of one subject (an implementation + settings)."""
    key: str
    count: int                                 # work units for the next run
    runs: list = field(default_factory=list)   # kept runs: dicts of metrics
    discarded: int = 0                         # runs too short to keep
    error: str | None = None

    def median(self, metric):
        values = [run[metric] for run in self.runs if metric in run]
        return statistics.median(values) if values else None


def measure_side_by_side(keys, run_once, *, initial_counts, repeats, target_seconds,
                         min_count=1, max_count=10**9, multiple=1, progress=None, on_run=None):
    """Measure every subject in `keys` `repeats` times, interleaved.

    `run_once(key, count)` does `count` units of work and returns a dict of
    metrics that includes "seconds", the timed duration.  After each run the
    count is rescaled so that the next run lasts about `target_seconds`; a
    run shorter than 40 % of that (the first guess was off) is discarded and
    redone, unless the count is already at `max_count`.  A BenchmarkFailure
    ends that subject's series with an error; the others go on.
    `on_run(key, kept, repeats)`, if given, is called before each run (for a
    progress bar: `kept` runs of `key` are done so far).
    """
    series = {key: Series(key, _clamp(initial_counts[key], min_count, max_count, multiple))
              for key in keys}
    max_attempts = repeats + 4
    for _ in range(max_attempts):
        active = [s for s in series.values() if s.error is None and len(s.runs) < repeats]
        if not active:
            break
        for s in active:
            if on_run:
                on_run(s.key, len(s.runs), repeats)
            try:
                metrics = run_once(s.key, s.count)
            except BenchmarkFailure as exc:
                s.error = str(exc)
                if progress:
                    progress(f"  {s.key}: FAILED: {exc}")
                continue
            seconds = max(metrics["seconds"], 1e-9)
            long_enough = seconds >= 0.4 * target_seconds or s.count >= max_count
            if long_enough:
                s.runs.append(metrics)
            else:
                s.discarded += 1
            if progress:
                state = (f"run {len(s.runs)}/{repeats}" if long_enough
                         else "calibration run, discarded")
                progress(f"  {s.key}: {metrics.get('summary', '')} "
                         f"({s.count} units in {seconds:.3f} s, {state})")
            s.count = _clamp(s.count * target_seconds / seconds, min_count, max_count, multiple)
    for s in series.values():
        if s.error is None and len(s.runs) < repeats:
            s.error = f"only {len(s.runs)} of {repeats} runs were long enough to keep"
    return series


def _clamp(count, low, high, multiple):
    count = min(max(int(count), low), high)
    return max(multiple, count - count % multiple)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted sequence."""
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


# -- rendering ---------------------------------------------------------------

def format_value(value, unit):
    if value is None:
        return "n/a"
    if unit in ("msg/s", "ops/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f} M {unit}"
        if value >= 1e3:
            return f"{value / 1e3:.1f} k {unit}"
        return f"{value:.0f} {unit}"
    if unit == "ns":
        return f"{value:.1f} ns" if value < 100 else f"{value:,.0f} ns"
    if unit == "MB/s":
        return f"{value:,.0f} MB/s"
    if unit == "us":
        return f"{value:.1f} us" if value < 100 else f"{value:.0f} us"
    return f"{value:g} {unit}"


def format_ratio(ratio):
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def markdown_table(headers, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


@dataclass
class Check:
    """One condition of a target, on a table row: either a ratio against a
    peer (`peer` set; the ratio is oriented so that bigger is better) or an
    absolute bound on fastmp's figure (`at_least` or `at_most`)."""
    text: str
    peer: str | None = None
    at_least: float | None = None
    at_most: float | None = None

    def evaluate(self, row_figures):
        """Returns (measured text, met: True/False/None when unmeasured)."""
        if self.peer is not None:
            ratio = row_figures["ratios"].get(self.peer)
            if ratio is None:
                return "n/a", None
            return format_ratio(ratio), ratio >= self.at_least
        value = row_figures["fastmp"]
        if value is None:
            return "n/a", None
        measured = format_value(value, row_figures["unit"])
        if self.at_least is not None:
            return measured, value >= self.at_least
        return measured, value <= self.at_most


def evaluate_checks(checks, row_figures):
    """All checks of one column of a target: (measured text, verdict text)."""
    measured, verdicts = [], []
    for check in checks:
        text, met = check.evaluate(row_figures)
        measured.append(text)
        verdicts.append(None if met is None else bool(met))
    if any(v is None for v in verdicts):
        verdict = "not measured"
    else:
        verdict = "met" if all(verdicts) else "NOT met"
    return " and ".join(measured), verdict


def progress_printer(enabled=True):
    def progress(message):
        if enabled:
            print(message, file=sys.stderr, flush=True)
    return progress
