"""Shared fixtures for fastmp's multi-process tests.

* ``start_method``: parametrised over fork, spawn and forkserver; yields the
  ``multiprocessing`` context for it.
* ``procs``: starts child processes and guarantees none outlives its test
  (join with a timeout, then terminate, then kill).
* An autouse module-scoped check that no entry that looks like fastmp's
  appears in /dev/shm (fastmp's segments are memfds: it should create none).
* ``open_fd_count()`` / ``fastmp_fds()`` (fixtures ``fd_count`` /
  ``segment_fds``): this process's open descriptors, for leak checks;
  ``leak_guard``: a baseline of descriptors and /dev/shm taken after the
  start method's own long-lived descriptors exist, checked by ``check()``.
* A session-end safety net: a failed test must not leave the interpreter
  waiting forever at exit for a feeder thread nobody will drain.

Child-process targets live at module level in the test modules (they must be
picklable for spawn and forkserver).
"""

import gc
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

START_METHODS = ("fork", "spawn", "forkserver")

#: Names fastmp could plausibly give a /dev/shm entry (the memfd fallback uses
#: "fastmp-", a future named segment would carry the project's name).
_FASTMP_SHM_NAME = re.compile(r"fast_?mp|^fmp[-_.]", re.IGNORECASE)

#: Modules the forkserver imports once, so that each forkserver child does not
#: pay for numpy/pytest/fastmp imports again (the Queue still reaches the
#: child through DupFd, which is what these tests are about).
_FORKSERVER_PRELOAD = ["fastmp", "numpy", "pytest", "conftest",
                       "test_start_methods", "test_crash_safety", "test_pipe",
                       "test_sharedctypes", "test_lock", "test_float_channel",
                       "test_typed_ring", "test_broadcast", "test_side"]
multiprocessing.set_forkserver_preload(_FORKSERVER_PRELOAD)


# -- a call in a thread ---------------------------------------------------------

class Call(threading.Thread):
    """Runs fn(*args) in a daemon thread, keeping its result or exception."""

    def __init__(self, fn, *args, name=None):
        super().__init__(daemon=True, name=name or f"call-{getattr(fn, '__name__', 'fn')}")
        self.fn, self.args = fn, args
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e

    def outcome(self, timeout=30.0):
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running after {timeout} s"
        return self.result, self.error


def assert_spins_freely(seconds=0.2):
    """Spin this thread for `seconds`: more than 10,000 rounds, so no other
    thread (one blocked in a wait, say) held the GIL all that while."""
    deadline = time.monotonic() + seconds
    spins = 0
    while time.monotonic() < deadline:
        spins += 1
    assert spins > 10_000


# -- a fresh interpreter, for Ctrl-C tests ------------------------------------

def start_fresh_python(code, cwd, stderr=subprocess.PIPE):
    """`python -c code` in a new interpreter, stdout a text pipe.  It imports
    the same fastmp as this process, and runs in `cwd` (a temporary
    directory) so that a source checkout there cannot shadow it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=env, cwd=cwd)


def wait_until_sleeping(pid):
    """Return once the (single-threaded) process sits in a blocking wait."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "S":
                return
        time.sleep(0.005)
    raise AssertionError("the child never blocked")


def interrupted_output(child):
    """interrupt_when_blocked, then the child's (stdout, stderr) and the
    seconds from the signal to its exit; the child is gone afterwards."""
    try:
        sent = interrupt_when_blocked(child)
        out, err = child.communicate(timeout=10)
        return out, err, time.monotonic() - sent
    finally:
        child.kill()
        child.wait()


def assert_ctrl_c_interrupts_promptly(code, cwd):
    """Run `code` (which prints "ready", then blocks) in a fresh interpreter
    and Ctrl-C it: it must end in a KeyboardInterrupt, with a non-zero exit,
    within 2 s of the signal.  Returns its stdout."""
    child = start_fresh_python(code, cwd)
    out, err, elapsed = interrupted_output(child)
    assert "KeyboardInterrupt" in err
    assert child.returncode != 0
    assert elapsed < 2.0
    return out


def interrupt_when_blocked(child):
    """Wait for `child` to print "ready" and block, then send it SIGINT (as
    Ctrl-C would).  Returns the time.monotonic() at which it was sent."""
    assert child.stdout.readline().strip() == "ready"
    wait_until_sleeping(child.pid)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    return sent


# -- /dev/shm -----------------------------------------------------------------

def shm_entries():
    """Names in /dev/shm (empty set if there is no /dev/shm)."""
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def fastmp_shm_entries(baseline=frozenset()):
    """Entries of /dev/shm not in `baseline` whose name looks like fastmp's."""
    return {name for name in shm_entries() - set(baseline) if _FASTMP_SHM_NAME.search(name)}


@pytest.fixture(autouse=True, scope="session")
def feeder_threads_cannot_hang_exit():
    """A failed test can leave messages in a feeder thread of this process
    with nobody left to read them; as with multiprocessing.Queue, the
    interpreter would then wait for that feeder forever at exit.  Cancel
    those joins at the end of the session (and say so)."""
    yield
    import threading
    from multiprocessing import util
    from fastmp.queues import Queue
    stuck = [t for t in threading.enumerate()
             if t.name == "fastmp-QueueFeederThread" and t.is_alive()]
    if stuck:
        for finalizer in list(util._finalizer_registry.values()):
            if getattr(finalizer, "_callback", None) is Queue._finalize_join:
                finalizer.cancel()
        print(f"\nconftest: {len(stuck)} fastmp feeder thread(s) still had messages at "
              f"session end; not waiting for them", file=sys.stderr)


@pytest.fixture(autouse=True, scope="module")
def no_fastmp_shm_entries():
    """fastmp backs everything with memfds: no /dev/shm entry may appear."""
    before = shm_entries()
    yield
    leaked = fastmp_shm_entries(before)
    assert not leaked, f"fastmp left entries in /dev/shm: {sorted(leaked)}"


# -- descriptors ----------------------------------------------------------------

def _fd_targets():
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the descriptor listdir itself used, closed by now
    return fds


def open_fd_count():
    """Number of descriptors this process has open."""
    return len(_fd_targets())


def fastmp_fds():
    """This process's descriptors that refer to a fastmp memfd segment."""
    return {fd: target for fd, target in _fd_targets().items()
            if target.startswith("/memfd:fastmp")}


@pytest.fixture
def fd_count():
    """The open_fd_count helper, as a fixture."""
    return open_fd_count


@pytest.fixture
def segment_fds():
    """The fastmp_fds helper, as a fixture."""
    return fastmp_fds


# -- start methods and child processes --------------------------------------

@pytest.fixture(params=START_METHODS)
def start_method(request):
    """A multiprocessing context for each start method."""
    yield multiprocessing.get_context(request.param)


def _stop(proc, timeout=2.0):
    """Make sure `proc` is gone: terminate, then kill."""
    if proc._closed:
        return
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout)


class Procs:
    """Starts child processes for one test and reaps all of them."""

    def __init__(self):
        self.started = []

    def start(self, ctx, target, *args, name=None):
        proc = ctx.Process(target=target, args=args, name=name, daemon=True)
        proc.start()
        self.started.append(proc)
        return proc

    def join(self, *procs, timeout=30.0, exitcode=0):
        """Join each process (default: all started) within `timeout` seconds in
        total; on failure stop them all and fail.  Checks exit codes unless
        `exitcode` is None."""
        procs = procs or tuple(p for p in self.started if not p._closed)
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        hung = [p for p in procs if p.is_alive()]
        if hung:
            for proc in self.started:
                _stop(proc)
            pytest.fail(f"processes did not finish within {timeout} s: {hung}")
        if exitcode is not None:
            bad = [(p.name, p.exitcode) for p in procs if p.exitcode != exitcode]
            assert not bad, f"unexpected exit codes (want {exitcode}): {bad}"
        for proc in procs:
            proc.close()  # releases its sentinel descriptor now, not at gc

    def cleanup(self):
        for proc in self.started:
            if proc._closed:
                continue
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGCONT)  # a test may have stopped it
                except ProcessLookupError:
                    pass
            _stop(proc)
            proc.close()
        self.started.clear()


def _noop():
    pass


class LeakGuard:
    """Records this process's descriptors and /dev/shm entries before a test;
    `check()` (after the test dropped its queues) asserts both are back."""

    def __init__(self, ctx):
        # Start methods open long-lived descriptors on first use (the
        # forkserver's socket, the resource tracker's pipe): get them open
        # before the baseline.
        ctx.Event()
        proc = ctx.Process(target=_noop)
        proc.start()
        proc.join(30)
        proc.close()
        gc.collect()
        self.fds_before = _fd_targets()
        self.shm_before = shm_entries()

    def check(self):
        gc.collect()
        leaked_shm = fastmp_shm_entries(self.shm_before)
        assert not leaked_shm, f"fastmp entries in /dev/shm: {sorted(leaked_shm)}"
        after = _fd_targets()
        new_segments = {fd: t for fd, t in fastmp_fds().items() if self.fds_before.get(fd) != t}
        assert not new_segments, f"fastmp segments still open: {new_segments}"
        # Fewer is fine: an object from an earlier test (a shared-memory
        # arena, say) may be freed during this one.  More is a leak.
        assert len(after) <= len(self.fds_before), (
            f"descriptor count {len(self.fds_before)} -> {len(after)}; new: "
            f"{ {fd: t for fd, t in after.items() if self.fds_before.get(fd) != t} }")


@pytest.fixture
def leak_guard(start_method):
    """A LeakGuard for the test's start method."""
    return LeakGuard(start_method)


@pytest.fixture
def leak_guard_for():
    """LeakGuard itself, for tests that pick their own context."""
    return LeakGuard


@pytest.fixture
def procs():
    """Child processes of one test; none survives the test."""
    registry = Procs()
    try:
        yield registry
    finally:
        registry.cleanup()
