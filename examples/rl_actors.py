#!/usr/bin/env python3
"""Reinforcement-learning actors feeding one learner, with fastmp.

    python examples/rl_actors.py                          # fastmp and its twin, side by side
    python examples/rl_actors.py --backend fastmp         # one backend only
    python examples/rl_actors.py --actors 8 --steps 500 --batch 16 --obs-shape 4,84,84
    python examples/rl_actors.py --start-method spawn --repeats 1

The shape of the program is the one of actor/learner systems (IMPALA, Ape-X,
SEED): N actor processes step their environments and ship batches of
observations and rewards to one learner process, which trains on them.  Here
the "environment" is a cheap NumPy operation and the "training" is a running
mean of the observations (an observation normaliser), so that what is measured
is the transport, not the model.

fastmp backend (the design to copy):

* Bulk data, zero-copy.  Each actor owns a ``fastmp.Ring``: a single-producer,
  single-consumer ring of ``--slots`` frames in shared memory, each frame one
  whole batch of observations, shape ``(batch, *obs_shape)``, float32.  The
  actor writes its batch straight into a free slot
  (``with ring.reserve() as frame: np.add(base, shift, out=frame)``) and the
  slot is published when the ``with`` block ends.  The learner reads it in
  place (``with ring.recv_view() as frame: ...``): a read-only view of the same
  shared memory, handed back to the actor when that block ends.  Nothing is
  pickled or copied on the way.
* Small data, batched.  After publishing a frame, the actor puts a small
  ``StepReport`` (actor id, step, the batch's rewards and checksum) on one
  ``fastmp.Queue`` shared by all actors.  The learner takes these reports many
  at a time with ``get_many``.  Each report is also the doorbell for its frame:
  an actor publishes the frame before it puts the report, and both the ring
  and the queue keep each actor's order, so the oldest frame in that actor's
  ring is the one the report describes.  The learner never polls N rings.
* Back-pressure for free.  An actor can run at most ``--slots`` batches ahead
  of the learner: then ``reserve()`` waits until the learner releases a slot.
  Memory stays bounded however slow the learner is.

multiprocessing backend (the twin, for comparison): the same actors and
learner, but each batch (observations and rewards together) goes through one
``multiprocessing.Queue`` (bounded to ``--slots`` batches per actor, the same
back-pressure): pickled by a feeder thread in the actor, written through a
pipe, read and unpickled by the learner.  The actor must allocate a
fresh observation array per batch, because the feeder thread pickles it
later, after ``put()`` has returned.

Nothing is taken on trust: every batch's observations are integer-valued
("pixels" 0..255 plus a per-step shift), so the learner's float64 sum of what
it received must equal, exactly, the checksum the actor computed from what it
sent; a frame read from the wrong slot, a stale or a torn one fails the
check.  The learner also checks each actor's steps arrive in order and the
totals at the end.  The clock runs from the moment every actor is ready to
the moment the learner has consumed the last batch (process start-up is not
counted); the backends run ``--repeats`` times each, alternating, and the
medians are compared.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.context
import queue
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue as StdlibQueue
from multiprocessing.synchronize import Barrier
from typing import Any, Literal, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

try:
    import fastmp
except ImportError:  # run from a source checkout without installing it
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import fastmp

StartMethod = Literal["fork", "spawn", "forkserver"]

#: Reports the learner takes per get_many() call.
MAX_REPORTS_PER_GET = 64
#: How long the learner waits for data before it checks that the actors are
#: still alive (a dead actor must end the program, not hang it).
LIVENESS_CHECK_SECONDS = 1.0
#: Largest "pixel" value: observations are integers in [0, PIXEL_MAX + SHIFTS).
PIXEL_MAX = 255
#: The per-step shift added to an actor's base frames cycles through this many
#: values, so consecutive frames of one actor differ.
SHIFTS = 32


# -- the workload: the same in both backends -----------------------------------

@dataclass(frozen=True)
class Workload:
    """What every actor does; sent to each actor process as an argument."""

    actors: int
    steps: int          # batches per actor
    batch: int          # observations per batch
    obs_shape: tuple[int, ...]
    slots: int          # fastmp ring slots per actor (batches in flight)

    def __post_init__(self) -> None:
        # The learner sums a batch over its first axis in float32: exact only
        # while every such sum stays below 2**24.
        if self.batch * (PIXEL_MAX + SHIFTS) >= 2**24:
            raise ValueError(f"batch of {self.batch} is too large for exact float32 checksums")

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.obs_shape)

    @property
    def observations(self) -> int:
        return self.actors * self.steps * self.batch

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape)) * np.dtype(np.float32).itemsize


class StepReport(NamedTuple):
    """The small message an actor sends per batch (its frame travels apart
    in the fastmp backend)."""

    actor: int
    step: int
    checksum: float                 # exact float64 sum of the batch's observations
    rewards: NDArray[np.float32]    # one per observation


class Environment:
    """An actor's stand-in for its environments: base frames of random
    integer "pixels", fixed per actor, plus a shift that changes every step.
    Cheap on purpose: one pass writing the batch."""

    def __init__(self, actor: int, workload: Workload) -> None:
        self.actor = actor
        self.rng = np.random.default_rng(seed=actor)
        self.base: NDArray[np.float32] = self.rng.integers(
            0, PIXEL_MAX + 1, size=workload.frame_shape).astype(np.float32)
        # Every value is an integer below 2**24, so float32 holds it exactly
        # and float64 sums of a batch are exact: checksums compare with ==.
        self.base_sum = float(self.base.sum(dtype=np.float64))
        self.batch = workload.batch

    def step(self, step: int, out: NDArray[np.float32]) -> StepReport:
        """Write one batch of observations into `out`; return its report."""
        shift = step % SHIFTS
        np.add(self.base, np.float32(shift), out=out)
        rewards = self.rng.random(self.batch, dtype=np.float32)
        return StepReport(self.actor, step, self.base_sum + shift * self.base.size, rewards)


class Learner:
    """Consumes batches: a running mean of the observations (per element of
    the observation shape, as an observation normaliser keeps) and of the
    rewards; checks every batch against its report."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.obs_sum = np.zeros(workload.obs_shape, dtype=np.float64)
        self.reward_sum = 0.0
        self.batches = 0
        self.next_step = [0] * workload.actors
        self.checksum_received = 0.0   # what the learner summed
        self.checksum_reported = 0.0   # what the actors said they sent

    def consume(self, report: StepReport, observations: NDArray[np.float32]) -> None:
        if report.step != self.next_step[report.actor]:
            raise RuntimeError(f"actor {report.actor}: got step {report.step}, "
                               f"expected {self.next_step[report.actor]}")
        self.next_step[report.actor] += 1
        if observations.shape != self.workload.frame_shape:
            raise RuntimeError(f"actor {report.actor} step {report.step}: observations of shape "
                               f"{observations.shape}, expected {self.workload.frame_shape}")
        # One pass over the batch: sum over the batch axis.  In float32 (three
        # times faster than float64 here) it is still exact: the values are
        # integers and a batch's sums stay far below 2**24.
        batch_sum = observations.sum(axis=0)
        self.obs_sum += batch_sum
        received = float(batch_sum.sum(dtype=np.float64))
        if received != report.checksum:
            raise RuntimeError(f"actor {report.actor} step {report.step}: observations sum to "
                               f"{received}, the actor sent {report.checksum}")
        self.checksum_received += received
        self.checksum_reported += report.checksum
        self.reward_sum += float(report.rewards.sum(dtype=np.float64))
        self.batches += 1

    @property
    def done(self) -> bool:
        return self.batches == self.workload.actors * self.workload.steps

    def check_complete(self) -> None:
        expected = [self.workload.steps] * self.workload.actors
        if self.next_step != expected:
            raise RuntimeError(f"batches received per actor: {self.next_step}, expected {expected}")
        if self.checksum_received != self.checksum_reported:
            raise RuntimeError(f"checksum of everything received {self.checksum_received} != "
                               f"checksum the actors reported {self.checksum_reported}")

    def mean_observation(self) -> float:
        return float(self.obs_sum.sum()) / (self.workload.observations * self.obs_sum.size)

    def mean_reward(self) -> float:
        return self.reward_sum / self.workload.observations


# -- fastmp backend ---------------------------------------------------------------

def fastmp_actor(actor: int, workload: Workload, ring: fastmp.Ring,
                 reports: fastmp.Queue[StepReport], ready: Barrier) -> None:
    env = Environment(actor, workload)
    ready.wait()
    for step in range(workload.steps):
        # Write the batch straight into a free slot of the shared ring; it is
        # published when the block ends (an exception would abandon it).
        with ring.reserve() as frame:
            report = env.step(step, as_array(frame))
        reports.put(report)
    ring.close()


def fastmp_learner(workload: Workload, rings: list[fastmp.Ring],
                   reports: fastmp.Queue[StepReport], actors: Sequence[BaseProcess]) -> Learner:
    learner = Learner(workload)
    while not learner.done:
        try:
            batch = reports.get_many(timeout=LIVENESS_CHECK_SECONDS,
                                     max_messages_to_get=MAX_REPORTS_PER_GET)
        except queue.Empty:
            check_alive(actors)
            continue
        for report in batch:
            # The report's frame is already the oldest in its actor's ring:
            # read it in place; the slot goes back to the actor on exit.
            with rings[report.actor].recv_view() as frame:
                learner.consume(report, as_array(frame))
    return learner


def run_fastmp(workload: Workload, start_method: StartMethod) -> tuple[Learner, float]:
    ctx = fastmp.get_context(start_method)
    rings = [fastmp.Ring(workload.slots, workload.frame_shape, "float32")
             for _ in range(workload.actors)]
    reports: fastmp.Queue[StepReport] = ctx.Queue()
    ready = ctx.Barrier(workload.actors + 1)
    actors = [ctx.Process(target=fastmp_actor, args=(i, workload, rings[i], reports, ready),
                          name=f"actor-{i}")
              for i in range(workload.actors)]
    try:
        learner, seconds = run_actors(actors, ready, fastmp_learner, workload, rings, reports,
                                      actors)
    finally:
        stop_actors(actors)
        for ring in rings:
            ring.close()
        reports.close()
    learner.check_complete()
    return learner, seconds


def as_array(frame: Any) -> NDArray[np.float32]:
    """A Ring's views are NumPy arrays whenever NumPy is importable (it is
    here); the check documents that and narrows the type."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"expected a NumPy view, got {type(frame).__name__}")
    return frame


# -- multiprocessing backend (the twin) -------------------------------------------

class Batch(NamedTuple):
    """What an actor of the twin sends per batch: everything in one message."""

    report: StepReport
    observations: NDArray[np.float32]


def multiprocessing_actor(actor: int, workload: Workload, batches: StdlibQueue[Batch],
                          ready: Barrier) -> None:
    env = Environment(actor, workload)
    ready.wait()
    for step in range(workload.steps):
        # A fresh array each step: the queue's feeder thread pickles it after
        # put() has returned, so it must not be overwritten.
        observations = np.empty(workload.frame_shape, dtype=np.float32)
        report = env.step(step, observations)
        batches.put(Batch(report, observations))


def multiprocessing_learner(workload: Workload, batches: StdlibQueue[Batch],
                            actors: Sequence[BaseProcess]) -> Learner:
    learner = Learner(workload)
    while not learner.done:
        try:
            item: Batch = batches.get(timeout=LIVENESS_CHECK_SECONDS)
        except queue.Empty:
            check_alive(actors)
            continue
        learner.consume(item.report, item.observations)
    return learner


def stdlib_context(start_method: StartMethod) -> (multiprocessing.context.ForkContext
                                                  | multiprocessing.context.SpawnContext
                                                  | multiprocessing.context.ForkServerContext):
    # (One call per literal: typeshed types get_context(str) as BaseContext.)
    if start_method == "fork":
        return multiprocessing.get_context("fork")
    if start_method == "spawn":
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("forkserver")


def run_multiprocessing(workload: Workload, start_method: StartMethod) -> tuple[Learner, float]:
    ctx = stdlib_context(start_method)
    # Bounded like the rings: at most `slots` batches in flight per actor
    # (unbounded, put() never blocks and actors would pile batches up in memory).
    batches: StdlibQueue[Batch] = ctx.Queue(maxsize=workload.actors * workload.slots)
    ready = ctx.Barrier(workload.actors + 1)
    actors = [ctx.Process(target=multiprocessing_actor, args=(i, workload, batches, ready),
                          name=f"actor-{i}")
              for i in range(workload.actors)]
    try:
        learner, seconds = run_actors(actors, ready, multiprocessing_learner, workload, batches,
                                      actors)
    finally:
        stop_actors(actors)
        batches.close()
        batches.join_thread()
    learner.check_complete()
    return learner, seconds


# -- process handling --------------------------------------------------------------

def run_actors(actors: Sequence[BaseProcess], ready: Barrier,
               learn: Callable[..., Learner], *args: Any) -> tuple[Learner, float]:
    """Start the actors and, once all of them are ready, time learn(*args)
    until it has consumed everything; then join the actors (an actor that
    failed raises).  Returns the learner and the seconds it took."""
    for process in actors:
        process.start()
    ready.wait()
    start = time.perf_counter()
    learner = learn(*args)
    seconds = time.perf_counter() - start
    join_actors(actors)
    return learner, seconds


def check_alive(actors: Sequence[BaseProcess]) -> None:
    """A learner waiting for data from an actor that died would wait forever."""
    for process in actors:
        if process.exitcode is not None and process.exitcode != 0:
            raise RuntimeError(f"{process.name} died with exit code {process.exitcode}")


def join_actors(actors: Sequence[BaseProcess], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for process in actors:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode != 0:
            raise RuntimeError(f"{process.name} ended with exit code {process.exitcode}")


def stop_actors(actors: Sequence[BaseProcess]) -> None:
    """After an error: no actor may outlive the program."""
    for process in actors:
        if process.pid is not None and process.exitcode is None:
            process.terminate()
            process.join(5.0)


# -- command line ----------------------------------------------------------------------

BACKENDS = {"fastmp": run_fastmp, "multiprocessing": run_multiprocessing}


def report_line(backend: str, workload: Workload, learner: Learner, seconds: float) -> str:
    rate = workload.observations / seconds
    gb_s = workload.frame_bytes * workload.actors * workload.steps / seconds / 1e9
    return (f"{backend}: {workload.actors} actors x {workload.steps} batches of "
            f"{workload.frame_shape} float32 = {workload.observations:,} observations in "
            f"{seconds:.3f} s: {rate:,.0f} obs/s ({gb_s:.2f} GB/s); "
            f"{learner.batches} batch checksums match (total {learner.checksum_received:.0f}); "
            f"mean observation {learner.mean_observation():.3f}, "
            f"mean reward {learner.mean_reward():.4f}")


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (expected e.g. 84,84)") from None
    if not shape or any(n <= 0 for n in shape):
        raise argparse.ArgumentTypeError(f"dimensions must be positive: {text!r}")
    return shape


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--backend", choices=list(BACKENDS),
                       help="run one backend only (default: both, compared)")
    which.add_argument("--compare", action="store_true",
                       help="run both backends and compare them (the default)")
    parser.add_argument("--actors", type=positive, default=4, help="actor processes (default 4)")
    parser.add_argument("--steps", type=positive, default=300,
                        help="batches per actor (default 300)")
    parser.add_argument("--batch", type=positive, default=32,
                        help="observations per batch (default 32)")
    parser.add_argument("--obs-shape", type=parse_shape, default=(84, 84),
                        help="shape of one observation, e.g. 84,84 or 4,84,84 (default 84,84)")
    parser.add_argument("--repeats", type=positive, default=3,
                        help="runs of each backend, alternating; medians reported (default 3)")
    parser.add_argument("--slots", type=positive, default=4,
                        help="fastmp ring slots per actor: batches in flight (default 4)")
    methods = multiprocessing.get_all_start_methods()
    parser.add_argument("--start-method", choices=methods,
                        default="fork" if "fork" in methods else "spawn",
                        help="how actor processes are started (default fork)")
    args = parser.parse_args(argv)

    try:
        workload = Workload(actors=args.actors, steps=args.steps, batch=args.batch,
                            obs_shape=args.obs_shape, slots=args.slots)
    except ValueError as exc:
        parser.error(str(exc))
    backends = [args.backend] if args.backend else list(BACKENDS)
    start_method = cast(StartMethod, args.start_method)  # one of argparse's choices
    # Runs alternate between the backends, so that a machine that is busier
    # for a while slows both alike; each is summed up by its median.
    rates: dict[str, list[float]] = {backend: [] for backend in backends}
    for _ in range(args.repeats):
        for backend in backends:
            learner, seconds = BACKENDS[backend](workload, start_method)
            rates[backend].append(workload.observations / seconds)
            print(report_line(backend, workload, learner, seconds), flush=True)
    medians = {backend: statistics.median(runs) for backend, runs in rates.items()}
    print(f"median of {args.repeats} run{'s' if args.repeats > 1 else ''}: "
          + ", ".join(f"{backend} {rate:,.0f} obs/s" for backend, rate in medians.items()))
    if len(medians) == 2:
        ratio = medians["fastmp"] / medians["multiprocessing"]
        verdict = "met" if ratio >= 5 else "NOT met"
        print(f"fastmp / multiprocessing: {ratio:.1f}x observations per second "
              f"(target >= 5x: {verdict}; start method {args.start_method})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
