"""The example programs run, and check what they claim: examples/rl_actors.py
in a tiny configuration, both backends, under fork and spawn."""
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(120)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
RL_ACTORS = os.path.join(EXAMPLES, "rl_actors.py")
TINY = ["--actors", "2", "--steps", "25", "--batch", "3", "--obs-shape", "4,5", "--slots", "2",
        "--repeats", "1"]
#: "<backend>: ... = N observations ...; B batch checksums match (total T); ..."
REPORT = re.compile(r"^(fastmp|multiprocessing): .* = ([\d,]+) observations .*; "
                    r"(\d+) batch checksums match \(total (\d+)\)", re.MULTILINE)


def run_example(path, *args):
    # Run outside the checkout so a source tree cannot shadow the installed
    # fastmp; the example finds this one through PYTHONPATH.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, path, *args], cwd=os.path.dirname(path), env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_rl_actors_both_backends_deliver_every_batch_intact(method):
    result = run_example(RL_ACTORS, *TINY, "--start-method", method)
    assert result.returncode == 0, result.stderr
    reports = {m.group(1): m.groups()[1:] for m in REPORT.finditer(result.stdout)}
    assert set(reports) == {"fastmp", "multiprocessing"}, result.stdout
    observations, batches, total = reports["fastmp"]
    assert observations == f"{2 * 25 * 3}"
    assert batches == "50"
    # Both backends run the same seeded workload: the learners' checksums of
    # everything they received agree, and each already equals what the
    # actors reported sending (the example exits non-zero otherwise).
    assert reports["multiprocessing"] == (observations, batches, total)
    assert "fastmp / multiprocessing: " in result.stdout


def test_rl_actors_one_backend():
    result = run_example(RL_ACTORS, *TINY, "--backend", "fastmp")
    assert result.returncode == 0, result.stderr
    assert [m.group(1) for m in REPORT.finditer(result.stdout)] == ["fastmp"]


def load_rl_actors():
    spec = importlib.util.spec_from_file_location("rl_actors", RL_ACTORS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rl_actors_learner_rejects_a_wrong_frame():
    """The checksum check is not vacuous: a frame that is not the one the
    report describes (stale, another actor's, torn) is refused."""
    rl = load_rl_actors()
    workload = rl.Workload(actors=2, steps=3, batch=2, obs_shape=(3, 3), slots=2)
    env = rl.Environment(0, workload)
    frame = np.empty(workload.frame_shape, dtype=np.float32)
    learner = rl.Learner(workload)
    learner.consume(env.step(0, frame), frame)
    report = env.step(1, frame)
    stale = frame.copy()
    stale[1, 2, 0] += 1.0
    with pytest.raises(RuntimeError, match="sum to"):
        learner.consume(report, stale)
    with pytest.raises(RuntimeError, match="got step 2, expected 0"):
        learner.consume(env.step(2, frame)._replace(actor=1), frame)
