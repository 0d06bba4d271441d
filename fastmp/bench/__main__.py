"""python -m fastmp.bench: fastmp.Queue against multiprocessing.Queue (and
faster_fifo.Queue when installed), with a progress bar; writes the report as
Markdown and, when matplotlib is installed, the ratios as a PNG plot.

    python -m fastmp.bench                    # full run, a few minutes on 2 cores
    python -m fastmp.bench --quick            # smoke run
    python -m fastmp.bench --only bytes --out results/ --json

The scenarios and the method are fastmp.bench.queue's (benchmarks/bench_queue.py
in the source tree): real processes started with fork, runs interleaved across
implementations, medians, every run checked.  numpy (array scenarios),
faster-fifo (its column) and matplotlib (the plot: pip install "fastmp[plot]")
are optional.
"""

import argparse
import contextlib
import io
import sys
import time
import types
from pathlib import Path

from . import queue as bench

PLOT_HINT = 'for the plot, install matplotlib: pip install "fastmp[plot]"'


class ProgressBar:
    """One status line on stderr: scenario i/n, subject, run k/n, a bar over
    all expected runs, elapsed time.  Redrawn in place on a terminal; one line
    per update otherwise (--progress into a file or pipe)."""

    WIDTH = 24

    def __init__(self, scenarios, repeats, *, stream=sys.stderr):
        self.stream = stream
        self.in_place = stream.isatty()
        self.scenarios = scenarios
        self.repeats = repeats
        self.total = sum(len(bench.runnable_subjects(s)[0]) for s in scenarios) * repeats
        self.done_before = 0     # runs expected of the scenarios already finished
        self.kept = {}           # subject key -> runs kept, current scenario
        self.index = 0
        self.began = time.monotonic()
        self.last_width = 0

    def scenario(self, index, scenario):
        if index:
            self.done_before += len(bench.runnable_subjects(self.scenarios[index - 1])[0]) * self.repeats
        self.index, self.kept = index, {}
        self._draw(f"{scenario.name} starting")

    def run(self, key, kept, repeats):
        self.kept[key] = kept
        self._draw(f"{self.scenarios[self.index].name}: {key} run {kept + 1}/{repeats}")

    def message(self, text):
        """A line of its own (a failure), above the bar."""
        if text.lstrip().startswith(tuple(s.name + ":" for s in self.scenarios)):
            return  # the scenario title lines: the bar shows them
        if "FAILED" in text:
            self._clear()
            print(text.strip(), file=self.stream, flush=True)

    def finish(self):
        self.done_before, self.kept = self.total, {}
        self._draw("done")
        if self.in_place:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, what):
        done = min(self.done_before + sum(self.kept.values()), self.total)
        fraction = done / self.total if self.total else 1.0
        filled = round(fraction * self.WIDTH)
        elapsed = int(time.monotonic() - self.began)
        line = (f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {fraction:4.0%}  "
                f"scenario {self.index + 1}/{len(self.scenarios)}  {what}  "
                f"elapsed {elapsed // 60}:{elapsed % 60:02d}")
        if self.in_place:
            pad = max(self.last_width - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self.last_width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _clear(self):
        if self.in_place and self.last_width:
            self.stream.write("\r" + " " * self.last_width + "\r")
            self.last_width = 0


def ratio_rows(results):
    """(label, {peer column: ratio}, {peer column: ran unbatched}) for every
    table row, in table order; ratios are oriented so that bigger is better
    for fastmp."""
    rows = []
    for scenario, _series, _skipped, figures_by_row in results:
        for row in scenario.rows:
            ratios = figures_by_row[row.key]["ratios"]
            unbatched = {peer.column: peer.column in scenario.unbatched_peers for peer in bench.PEERS}
            rows.append((row.label, ratios, unbatched))
    return rows


def write_plot(path, results, *, subtitle):
    """A horizontal bar chart of fastmp/multiprocessing and fastmp/faster-fifo
    per table row, log scale, values written on the bars.  Returns False
    (and writes nothing) when matplotlib is not installed or nothing was
    measured."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError:
        return False
    rows = ratio_rows(results)
    peers = [(peer, label, colour) for peer, label, colour in
             (("multiprocessing", "vs multiprocessing.Queue", "#1f77b4"),
              ("faster_fifo", "vs faster_fifo.Queue", "#ff7f0e"))
             if any(peer in ratios for _, ratios, _ in rows)]
    if not peers:
        return False

    height = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(10, 2.2 + 0.3 * len(rows) * len(peers)))
    values = []
    for i, (peer, label, colour) in enumerate(peers):
        ys, xs, notes = [], [], []
        for r, (_, ratios, unbatched) in enumerate(rows):
            if peer in ratios:
                ys.append(r + (i - (len(peers) - 1) / 2) * height)
                xs.append(ratios[peer])
                notes.append(" †" if unbatched[peer] else "")
        values.extend(xs)
        bars = ax.barh(ys, xs, height=height * 0.92, color=colour, label=label)
        for bar, x, note in zip(bars, xs, notes):
            ax.annotate(f"{bench.format_ratio(x)}{note}", (x, bar.get_y() + bar.get_height() / 2),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
    ax.set_xscale("log")
    low = min(min(values), 1.0) / 1.6
    ax.set_xlim(low, max(values) * 3.5)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.axvline(1.0, color="black", linewidth=1)
    ax.text(1.0, -0.85, " same speed", fontsize=8, va="center")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _, _ in rows])
    ax.set_ylim(len(rows) - 0.5, -1.1)
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_xlabel("fastmp speed-up (throughput: fastmp / peer; latency: peer / fastmp), log scale")
    ax.set_title("fastmp.Queue against its peers: bigger is better for fastmp\n" + subtitle,
                 fontsize=11)
    ax.legend(loc="upper right", ncol=len(peers), fontsize=9, frameon=False)
    if any(unbatched[p] for _, ratios, unbatched in rows for p, _, _ in peers if p in ratios):
        fig.text(0.01, 0.01, "† multiprocessing.Queue has no put_many/get_many: fastmp batched "
                 "against it unbatched", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m fastmp.bench",
        description="fastmp.Queue against multiprocessing.Queue (and faster_fifo.Queue when "
                    "installed): prints a Markdown report and writes it, with a PNG plot of "
                    "the ratios when matplotlib is installed.")
    parser.add_argument("--quick", action="store_true", help="short smoke run (~30 s)")
    parser.add_argument("--only", metavar="NAME", action="append", choices=list(bench.SCENARIOS_BY_NAME),
                        help="run only this scenario (repeatable): " + ", ".join(bench.SCENARIOS_BY_NAME))
    parser.add_argument("--out", metavar="DIR", default=".",
                        help="directory for the report files (default: the current directory)")
    parser.add_argument("--name", metavar="STEM", default="fastmp-bench",
                        help="file name stem: STEM.md, STEM.png, STEM.json (default: fastmp-bench)")
    parser.add_argument("--json", action="store_true", help="also write every run as STEM.json")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true",
                       help="show the progress bar even when stderr is not a terminal")
    shown.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc malloc's adaptive thresholds alone")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md_path, png_path = out / f"{args.name}.md", out / f"{args.name}.png"
    json_path = out / f"{args.name}.json" if args.json else None

    scenarios = ([bench.SCENARIOS_BY_NAME[n] for n in args.only] if args.only else bench.SCENARIOS)
    repeats, _ = bench.run_settings(args.quick)
    show = not args.quiet and (args.progress or sys.stderr.isatty())
    bar = ProgressBar(scenarios, repeats) if show else None
    measured = bench.measure(args, progress=bar.message if bar else (lambda text: None),
                             on_scenario=bar.scenario if bar else None,
                             on_run=bar.run if bar else None)
    if bar:
        bar.finish()

    env = measured["env"]
    subtitle = (f"{'quick' if args.quick else 'full'} run, {env['date'][:10]}, Python "
                f"{env['python']}, {env['cpus']} CPUs; medians of {measured['repeats']} runs")
    plotted = write_plot(png_path, measured["results"], subtitle=subtitle)

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        bench.print_report(args, **measured)
        status = bench.finish_report(types.SimpleNamespace(json=json_path),
                                     measured["results"], measured["failures"],
                                     **bench.json_fields(args, **measured))
        if plotted:
            print(f"\n![fastmp speed-up against multiprocessing and faster-fifo]({png_path.name})")
    report = text.getvalue()
    md_path.write_text(report)
    sys.stdout.write(report)
    written = [md_path] + ([png_path] if plotted else []) + ([json_path] if json_path else [])
    print("\nwrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    if not plotted:
        print(f"no plot: {PLOT_HINT}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
