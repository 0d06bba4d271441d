"""Helpers shared by the tests of fastmp.Ring and fastmp.Broadcast (both
carry typed NumPy frames): waits bounded by PATIENCE, a call in a thread, a
SIGKILL that leaves a zombie, frames filled with one value, futex counts of
a fresh interpreter under strace, and a fresh interpreter's output.

A plain module (not a conftest) so that the test modules, which the
forkserver preloads and spawn children import, can import it by name.
"""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import Call, start_fresh_python

#: Safety net for every wait that should end at once.
PATIENCE = 30


def wait_for(event):
    assert event.wait(PATIENCE), "the other process never got there"


def run_in_thread(fn, *args, **kwargs):
    call = Call(lambda: fn(*args, **kwargs))
    call.start()
    return call.outcome(PATIENCE)


def sigkill(proc):
    """Kill without reaping: a fork or spawn child stays a zombie, as it would
    for a parent that has not joined it yet (a forkserver child is the
    forkserver's to reap).  Returns once the process is dead."""
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.001)
    raise AssertionError("the child did not die")


def frame_of(handle, value):
    """A frame of the Ring's or Broadcast's shape and dtype, every element `value`."""
    return np.full(handle.shape, value, dtype=handle.dtype)


def value_of(frame):
    """The one value a frame is filled with (asserting it is one value)."""
    flat = np.asarray(frame).ravel()
    assert (flat == flat[0]).all(), f"torn frame: {flat[:4]}...{flat[-4:]}"
    return int(flat[0])


def futex_calls(tmp_path, script_text, iterations, *args):
    """futex system calls of a fresh interpreter running `script_text` with
    `iterations` (and `args`) as its arguments."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    script = tmp_path / "busy.py"
    script.write_text(textwrap.dedent(script_text))
    counts = tmp_path / f"futex-{iterations}.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([strace, "-f", "-qq", "-c", "-e", "trace=futex", "-o", str(counts),
                           sys.executable, str(script), str(iterations), *args],
                          env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=PATIENCE)
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"strace cannot trace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    for line in counts.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] == "futex":
            return int(fields[3])
    return 0


def put_how_recv_ended(recv, results):
    """Call recv(timeout=PATIENCE) and put "eof", "a frame" or the repr of
    any other exception into `results` (for a child process to report)."""
    try:
        recv(timeout=PATIENCE)
    except EOFError:
        results.put("eof")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))
    else:
        results.put("a frame")


#: Script text (indented like the scripts futex_calls runs) for asleep(pid):
#: return once process `pid` sleeps in a futex wait.
ASLEEP_IN_A_FUTEX = """
    def asleep(pid):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "S":
                    with open(f"/proc/{pid}/wchan") as wchan:
                        if "futex" in wchan.read():
                            return
            time.sleep(0.005)
        raise SystemExit(f"process {pid} never slept in a futex")
    """


def assert_futex_calls_do_not_grow(tmp_path, script_text, *args):
    """`script_text` run for 3000 iterations makes fewer than 50 futex
    calls more than for 10: none per frame (a few come from the interpreter
    and NumPy)."""
    few = futex_calls(tmp_path, script_text, 10, *args)
    many = futex_calls(tmp_path, script_text, 3000, *args)
    assert many - few < 50, f"futex calls: {few} for 10 iterations, {many} for 3000"


def fresh_python(code, tmp_path):
    """Run code in a new interpreter; return its stdout (fail on a non-zero exit)."""
    child = start_fresh_python(textwrap.dedent(code), tmp_path)
    try:
        out, err = child.communicate(timeout=PATIENCE)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0, err
    return out
