"""python -m fastmp.bench, in a tiny configuration: it runs, prints and writes
the Markdown report, draws the PNG plot when matplotlib is installed and says
how to get it when not, and shows its progress bar when asked."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import fastmp

# The fastmp these tests import (installed, or this checkout built in place).
FASTMP_ROOT = str(Path(fastmp.__file__).resolve().parent.parent)
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The smallest run: one scenario (64-byte bytes, ~0.1 s runs, 3 repeats).
TINY = ["--quick", "--only", "bytes"]


def run_bench(args, tmp_path, *, prelude=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [FASTMP_ROOT, os.environ.get("PYTHONPATH")])))
    if prelude is None:
        command = [sys.executable, "-m", "fastmp.bench"]
    else:
        command = [sys.executable, "-c",
                   prelude + "; import runpy; runpy.run_module('fastmp.bench', run_name='__main__')"]
    return subprocess.run(command + args + ["--out", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)


def test_report_and_plot(tmp_path):
    result = run_bench(TINY, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "fastmp-bench.md").read_text()
    assert report == result.stdout
    assert report.startswith("# fastmp.Queue benchmark (quick run")
    assert "| scenario" in report and "| fastmp vs multiprocessing" in report
    assert "| 64 B bytes, 1 -> 1, put/get" in report
    assert "## Targets" in report and "| 64 B bytes, unbatched put/get" in report
    assert "FAILED" not in report
    # stderr is a pipe here: no progress bar unless asked for.
    assert "scenario 1/1" not in result.stderr
    png = tmp_path / "fastmp-bench.png"
    if HAS_MATPLOTLIB:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert "(fastmp-bench.png)" in report
    else:
        assert not png.exists()
        assert 'pip install "fastmp[plot]"' in result.stderr


def test_without_matplotlib_progress_and_json(tmp_path):
    """matplotlib made unimportable: the Markdown is still written, with the
    hint for the plot; --progress draws the bar on a pipe; --json and --name."""
    result = run_bench(TINY + ["--progress", "--json", "--name", "r"], tmp_path,
                       prelude="import sys; sys.modules['matplotlib'] = None")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| 64 B bytes, 1 -> 1, put/get" in (tmp_path / "r.md").read_text()
    assert not (tmp_path / "r.png").exists()
    assert 'pip install "fastmp[plot]"' in result.stderr
    assert "scenario 1/1" in result.stderr and "100%" in result.stderr
    assert '"bytes"' in (tmp_path / "r.json").read_text()


def test_imports_stay_light():
    """Importing fastmp (or the fastmp.bench package) imports neither numpy
    nor matplotlib."""
    code = ("import sys, fastmp, fastmp.bench; "
            "assert 'numpy' not in sys.modules and 'matplotlib' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('numpy', 'matplotlib')))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=FASTMP_ROOT, timeout=60)
