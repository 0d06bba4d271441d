"""`import fastmp as multiprocessing`: every public name of multiprocessing is
there, and an ordinary program runs with only that line changed."""
import multiprocessing
import os
import subprocess
import sys

import pytest

import fastmp

pytestmark = pytest.mark.timeout(120)


def test_every_public_name_of_multiprocessing_is_there():
    missing = [name for name in multiprocessing.__all__ if not hasattr(fastmp, name)]
    assert missing == []
    assert set(multiprocessing.__all__) <= set(fastmp.__all__)


def test_reimplemented_names_are_fastmps_and_the_rest_are_the_standard_librarys():
    assert fastmp.Queue.__module__ == "fastmp.queues"
    assert fastmp.get_context.__module__ == "fastmp.context"
    assert fastmp.Pipe is fastmp.connection.Pipe
    assert fastmp.SimpleQueue.__module__ == "fastmp.queues"
    assert fastmp.Value is fastmp.sharedctypes.Value
    assert fastmp.Lock.__module__ == "fastmp._lock"
    assert fastmp.FloatChannel.__module__ == "fastmp._float_channel"
    assert fastmp.Process is multiprocessing.Process
    assert fastmp.cpu_count is multiprocessing.cpu_count


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_multiprocessing_program_runs_with_only_the_import_changed(method, tmp_path):
    program = os.path.join(os.path.dirname(__file__), "drop_in_program.py")
    # Run outside the checkout so a source tree cannot shadow the installed fastmp.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    result = subprocess.run([sys.executable, program, method], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {method}"
