"""fastmp's type stubs: every public name has one, mypy --strict accepts
examples/ and a snippet using every public class, and stubtest finds the
stubs consistent with the compiled modules.

The stubs checked are those of the fastmp this suite imports: an installed
fastmp is found by mypy through PEP 561 (so this also checks that the
package ships py.typed and its .pyi files); a checkout is put on MYPYPATH.
mypy runs in a subprocess with its cache under a temporary directory; the
first run parses the standard library's stubs (~20-30 s), later runs in the
module reuse the cache.  Skipped when mypy is not installed (pip install
".[typecheck]").
"""
import ast
import os
import subprocess
import sys
import textwrap

import pytest

import fastmp

pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
ALLOWLIST = os.path.join(ROOT, "tests", "stubtest_allowlist.txt")
PACKAGE = os.path.dirname(os.path.abspath(fastmp.__file__))
PUBLIC_MODULES = ["__init__", "queues", "connection", "sharedctypes", "context", "_typed_ring",
                  "_broadcast", "_frames", "_float_channel", "_lock"]

# Uses every public class and function; assert_type pins what the stubs say.
SNIPPET = '''
import ctypes
from array import array
from multiprocessing.context import BaseContext
from typing import Any, assert_type

import fastmp
from fastmp import (Array, Broadcast, FloatChannel, FrameOverwritten, JoinableQueue, Lock, Pipe,
                    Queue, RLock, RawArray, RawValue, Ring, SimpleQueue, Value, get_context)
from fastmp._frames import Frame, Reservation
from fastmp._broadcast import Subscriber
from fastmp.connection import Connection
from fastmp.context import ForkContext, SpawnContext, ForkServerContext
from fastmp.sharedctypes import Synchronized, SynchronizedArray, SynchronizedString


def queues() -> None:
    q: Queue[int] = Queue(maxsize=10, capacity=1 << 16)
    q.put(1)
    q.put_many([2, 3], timeout=1.0)
    assert_type(q.get(timeout=0.5), int)
    assert_type(q.get_many(max_messages_to_get=2), list[int])
    jq: JoinableQueue[str] = JoinableQueue()
    jq.put("x")
    jq.task_done()
    sq: SimpleQueue[bytes] = SimpleQueue()
    sq.put(b"x")
    assert_type(sq.get(), bytes)


def pipes() -> None:
    a, b = Pipe(duplex=False, capacity=4096)
    assert_type(a, Connection)
    b.send({"k": 1})
    b.send_bytes(b"abc")
    b.send_many([1, 2])
    assert_type(a.recv_bytes(), bytes)
    assert_type(a.recv_many(), list[Any])
    assert_type(a.poll(0.1), bool)
    with a, b:
        pass


def shared_values() -> None:
    v = Value("i", 0)
    assert_type(v, Synchronized)
    with v.get_lock():
        v.value += 1
    raw = Value(ctypes.c_double, 1.0, lock=False)
    assert_type(raw, ctypes.c_double)
    arr = Array("d", 8)
    assert_type(arr, SynchronizedArray)
    arr[0] = 1.5
    s = Array(ctypes.c_char, 4)
    assert_type(s, SynchronizedString)
    assert_type(RawValue(ctypes.c_int, 3), ctypes.c_int)
    assert_type(RawArray(ctypes.c_int, 4), ctypes.Array[ctypes.c_int])
    locked = Value("i", 0, lock=RLock())
    assert_type(locked, Synchronized)


def locks() -> None:
    lock = Lock()
    assert_type(lock.acquire(timeout=1.0), bool)
    lock.release()
    with RLock():
        pass


def channels() -> None:
    ch = FloatChannel(1024, latest=False)
    ch.send(1.0)
    ch.send_many([1.0, 2.0])
    assert_type(ch.recv(), float)
    assert_type(ch.recv_many(2), array[float])
    assert_type(ch.recv_many(bytearray(16)), int)
    ring = Ring(4, (2, 3), "float32")
    with ring.reserve() as view:
        pass
    frame = ring.recv_view()
    assert_type(frame, Frame[Any])
    frame.release()
    bc = Broadcast(4, 16, "float64", max_readers=4, policy="skip")
    sub = bc.subscribe()
    assert_type(sub, Subscriber)
    res = bc.reserve()
    assert_type(res, Reservation[Any])
    res.commit()
    try:
        sub.recv_view().release()
    except FrameOverwritten:
        pass


def contexts() -> None:
    ctx = get_context("spawn")
    assert_type(ctx, SpawnContext)
    assert_type(get_context("fork"), ForkContext)
    assert_type(get_context("forkserver"), ForkServerContext)
    q = ctx.Queue(capacity=1 << 16)
    q.put_many([1, 2])
    r, w = ctx.Pipe()
    assert_type(r, Connection)
    assert_type(ctx.Lock(), Lock)
    assert_type(ctx.Value("i", 0), Synchronized)
    assert_type(ctx.get_context(), SpawnContext)
    p = ctx.Process(target=queues)
    p.start()
    p.join()
    # A fastmp context is a multiprocessing BaseContext.
    base: BaseContext = ctx
    base.Event().set()
    fastmp.set_start_method("spawn", force=True)
    assert_type(fastmp.cpu_count(), int)
'''


def mypy_env():
    """Environment and extra arguments under which mypy sees the stubs of
    the fastmp this suite imports."""
    env = dict(os.environ)
    env.pop("MYPYPATH", None)
    parent = os.path.dirname(PACKAGE)
    if not (parent.endswith("site-packages") or parent.endswith("dist-packages")):
        env["MYPYPATH"] = parent  # a checkout (in-place build)
    return env


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[typecheck]')")
    return str(tmp_path_factory.mktemp("mypy_cache"))


def run_mypy(cache_dir, cwd, *args):
    # Run outside the checkout (cwd), so a source tree cannot shadow an
    # installed fastmp.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", cache_dir,
         *args], cwd=cwd, env=mypy_env(), capture_output=True, text=True, timeout=280)
    return result


def test_examples_pass_mypy_strict(cache_dir, tmp_path):
    pytest.importorskip("numpy", reason="examples/ need numpy (its stubs) to type-check")
    paths = sorted(os.path.join(EXAMPLES, f) for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert paths
    result = run_mypy(cache_dir, str(tmp_path), *paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snippet_using_every_public_class_passes_mypy_strict(cache_dir, tmp_path):
    snippet = tmp_path / "uses_fastmp.py"
    snippet.write_text(textwrap.dedent(SNIPPET))
    result = run_mypy(cache_dir, str(tmp_path), str(snippet))
    assert result.returncode == 0, result.stdout + result.stderr


def test_stubs_catch_a_type_error(cache_dir, tmp_path):
    """The stubs are really used: a wrong call is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import fastmp\nq: fastmp.Queue[int] = fastmp.Queue()\nq.put('x')\n"
                   "fastmp.Ring(4, (2,), block=1)\n")
    result = run_mypy(cache_dir, str(tmp_path), str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Argument 1 to "put" of "Queue" has incompatible type "str"' in result.stdout
    assert 'Unexpected keyword argument "block"' in result.stdout


def test_stubtest_finds_stubs_consistent_with_runtime(cache_dir, tmp_path):
    config = tmp_path / "stubtest.ini"
    # fastmp.bench is plain Python without stubs: not part of this check.
    config.write_text("[mypy]\n[mypy-fastmp.bench.*]\nignore_errors = True\n"
                      "[mypy-faster_fifo.*,fastmp.*]\nignore_missing_imports = True\n")
    env = mypy_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(config),
         "--allowlist", ALLOWLIST, "fastmp"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr


def stub_names(path):
    """Names a stub module binds at top level (imports, classes, functions,
    assignments)."""
    names = set()
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def stub_all(path):
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def test_every_public_name_is_in_init_stub():
    stub = os.path.join(PACKAGE, "__init__.pyi")
    missing = sorted(set(fastmp.__all__) - stub_names(stub))
    assert not missing, f"in fastmp.__all__ but not in {stub}: {missing}"
    # The stub's __all__ is the runtime's, so `from fastmp import *` types the same.
    assert sorted(stub_all(stub)) == sorted(fastmp.__all__)


def test_multiprocessing_names_are_reexported_from_the_stdlib_stubs():
    """What fastmp takes unchanged from multiprocessing, the stub imports
    from multiprocessing (`from multiprocessing import X as X`)."""
    import multiprocessing
    stub = os.path.join(PACKAGE, "__init__.pyi")
    from_mp = set()
    for node in ast.parse(open(stub).read()).body:
        if isinstance(node, ast.ImportFrom) and node.module == "multiprocessing":
            from_mp.update(alias.name for alias in node.names if alias.asname == alias.name)
    for name in fastmp.__all__:
        if getattr(fastmp, name) is getattr(multiprocessing, name, None):
            assert name in from_mp, name


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_stubs_and_py_typed_ship_with_the_package(module):
    assert os.path.exists(os.path.join(PACKAGE, "py.typed"))
    stub = os.path.join(PACKAGE, module + ".pyi")
    assert os.path.exists(stub)
    runtime = __import__("fastmp." + module if module != "__init__" else "fastmp",
                         fromlist=["__all__"])
    public = getattr(runtime, "__all__", None)
    if public is not None:
        missing = sorted(set(public) - stub_names(stub))
        assert not missing, f"fastmp.{module}: no stub for {missing}"
