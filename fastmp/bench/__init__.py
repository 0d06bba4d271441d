"""fastmp's benchmark against multiprocessing (and faster-fifo when installed).

    python -m fastmp.bench                  # full run, a few minutes on 2 cores
    python -m fastmp.bench --quick          # smoke run
    python -m fastmp.bench --out docs/      # write the report (and plot) there

Importing this package imports nothing heavy: the machinery is in
fastmp.bench._common (process handling, side-by-side measurement, tables) and
fastmp.bench.queue (the Queue scenarios); the command is fastmp.bench.__main__.
numpy, faster-fifo and matplotlib are optional.
"""
