#!/usr/bin/env python3
"""fastmp.Queue side by side with multiprocessing.Queue and faster_fifo.Queue.

    python benchmarks/bench_queue.py            # full run, about 2 minutes
    python benchmarks/bench_queue.py --quick    # smoke run, ~30 s
    python benchmarks/bench_queue.py --only pingpong --json results.json

The code is fastmp.bench.queue (`python -m fastmp.bench` runs the same
scenarios and also writes a Markdown report and a plot).  Imported, this module
is that module, for the scripts here that do `from bench_queue import ...`.
"""

import sys

import _checkout  # noqa: F401  (this checkout's fastmp when none is installed)
from fastmp.bench import queue as _queue

if __name__ == "__main__":
    sys.exit(_queue.main())
sys.modules[__name__] = _queue
