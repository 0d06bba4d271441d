"""The soak run (benchmarks/soak.py), short: many processes hammering fastmp
at once, every message checked, no leak.

Skipped unless FASTMP_SOAK=1 (it takes ~10 s and loads every core), so CI
skips it by default:

    FASTMP_SOAK=1 pytest tests/test_soak.py
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


@pytest.mark.skipif(os.environ.get("FASTMP_SOAK") != "1",
                    reason="soak run: set FASTMP_SOAK=1 to run it")
def test_soak_quick():
    proc = subprocess.Popen([sys.executable, str(SOAK), "--quick", "--seconds", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        # soak.py's own watchdog should have stopped it long before.  SIGTERM
        # first: soak.py then stops its workers; SIGKILL would orphan them.
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"soak.py did not finish within 240 s:\n{stdout}\n{stderr[-5000:]}")
    assert proc.returncode == 0, (
        f"soak.py exited with {proc.returncode}\n--- stdout ---\n{stdout}"
        f"\n--- stderr ---\n{stderr[-5000:]}")
