"""fastmp.Lock / fastmp.RLock against multiprocessing.Lock / RLock.

Wherever the standard library defines the behaviour, a test runs against
both implementations (the ``impl`` fixture: "fastmp" and "stdlib") so that the
expectation is shown to be multiprocessing's own: acquire/release/with,
non-blocking and timed acquires, negative timeouts, a Lock released by another
thread or process (a semaphore, in the standard library), the errors for
releasing too often or by a non-owner, reprs, ``_semlock._is_mine()`` and
``_count()`` (what multiprocessing's Condition calls), pickling outside
process start, and Ctrl-C interrupting a blocked acquire.

fastmp-only behaviour is tested on fastmp alone and says so: a holder process
killed with SIGKILL does not leave the lock held for ever (another process,
or the parent, takes it over), and a waiter killed while asleep on the lock
does not wedge later releases.  Condition, Event and Barrier of a fastmp
context are the standard library's, running on fastmp's locks across
processes.

Rules kept throughout: no sleeping in the hope that a race goes one way.
Threads and processes are sequenced with Events; where a test wants a waiter
to be asleep before it acts, it waits until the waiter sits in a blocking
wait (state S, plus the lock's waiters mark for fastmp); that look only makes
the blocking path likely, no assertion depends on it.  Timeouts are safety
nets.  Every child process goes through the ``procs`` fixture.
"""

import ctypes
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.reduction import ForkingPickler

import pytest
from conftest import Call

import fastmp

pytestmark = pytest.mark.timeout(60)

#: Safety net for anything that should happen "at once" (never a pacing device).
TIMEOUT = 30.0
#: The "somebody may sleep on it" bit of a fastmp lock's futex word (_lock_layout.h).
WAITERS = 0x80000000

LOCKS = {
    ("fastmp", "Lock"): fastmp.Lock,
    ("fastmp", "RLock"): fastmp.RLock,
    ("stdlib", "Lock"): multiprocessing.Lock,
    ("stdlib", "RLock"): multiprocessing.RLock,
}
FAST_LOCKS = {"Lock": fastmp.Lock, "RLock": fastmp.RLock}
CONTEXTS = {"fastmp": fastmp.get_context, "stdlib": multiprocessing.get_context}


@pytest.fixture(params=["fastmp", "stdlib"])
def impl(request):
    """Whose locks: fastmp's or multiprocessing's."""
    return request.param


@pytest.fixture(params=["Lock", "RLock"])
def kind(request):
    return request.param


def make(impl, kind):
    return LOCKS[impl, kind]()


def main_name():
    return multiprocessing.current_process().name


# -- helpers ----------------------------------------------------------------------

def in_thread(fn, *args, name=None):
    """fn(*args) in another thread: (result, exception)."""
    call = Call(fn, *args, name=name)
    call.start()
    return call.outcome()


class Holder:
    """A thread that holds `lock` until told to let go (a context manager)."""

    def __init__(self, lock, name="holder"):
        self.lock = lock
        self.held = threading.Event()
        self.go = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self):
        self.lock.acquire()
        self.held.set()
        self.go.wait(TIMEOUT)
        self.lock.release()

    def __enter__(self):
        self.thread.start()
        assert self.held.wait(TIMEOUT)
        return self

    def __exit__(self, *exc):
        self.go.set()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()


def is_free(lock):
    """Whether another thread can take `lock` at once (it gives it back)."""
    def probe():
        got = lock.acquire(False)
        if got:
            lock.release()
        return got
    result, error = in_thread(probe)
    assert error is None, error
    return result


def futex_word(lock):
    """The raw 32-bit word of a fastmp lock (holder pid | WAITERS)."""
    return ctypes.c_uint32.from_address(lock._block.address).value


def _state(path):
    with open(path) as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def wait_until_sleeping(pid, timeout=10.0):
    """Return once process `pid` has been in a blocking wait (state S) for
    several consecutive looks.  Only makes it likely that the next action
    lands while it sleeps; no assertion depends on it."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        try:
            state = _state(f"/proc/{pid}/stat")
        except FileNotFoundError:
            return
        streak = streak + 1 if state == "S" else 0
        if streak >= 5:
            return
        time.sleep(0.002)
    raise AssertionError(f"process {pid} never blocked")


def wait_until(predicate, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


# -- child targets (module level: picklable for spawn and forkserver) -------------------

def _child_sees_parents_locks(lock, rlock, out):
    """The parent holds both.  Report what this process sees, then release
    the parent's Lock (allowed: a semaphore) and try to release its RLock
    (not allowed: not the owner)."""
    report = {
        "lock.acquire(False)": lock.acquire(False),
        "lock.acquire(timeout=0.01)": lock.acquire(timeout=0.01),
        "rlock.acquire(False)": rlock.acquire(False),
        "lock repr": repr(lock),
        "rlock repr": repr(rlock),
        "lock _is_mine": lock._semlock._is_mine(),
        "rlock _is_mine": rlock._semlock._is_mine(),
    }
    if isinstance(lock, fastmp.Lock):
        report["holder"] = (lock._holder_pid(), rlock._holder_pid())
    try:
        rlock.release()
    except AssertionError as e:
        report["rlock.release()"] = str(e)
    lock.release()
    report["lock then free here"] = lock.acquire(False)
    if isinstance(lock, fastmp.Lock):
        report["repr held here"] = repr(lock)
    lock.release()
    out.put(report)


def _count_under_lock(lock, counter, go, n):
    """n increments of a plain shared number: exact only if `lock` excludes."""
    go.wait(TIMEOUT)
    for _ in range(n):
        with lock:
            counter.value += 1


def _hold_until_killed(lock, depth, held):
    for _ in range(depth):
        lock.acquire()
    held.set()
    time.sleep(TIMEOUT)   # killed long before this ends


def _take_over_and_hold(lock, ready, took, out):
    """Wait for a lock whose holder will be killed; record what the take-over
    looks like from here; then keep the lock until killed too."""
    ready.set()
    got = lock.acquire(timeout=TIMEOUT)
    out[0] = int(got)
    out[1] = lock._holder_pid()
    out[2] = lock._semlock._count()
    out[3] = int(lock._semlock._is_mine())
    took.set()
    time.sleep(TIMEOUT)   # killed long before this ends


def _acquire_forever(lock, ready):
    ready.set()
    lock.acquire()


def _acquire_and_release(lock, out):
    out.value = int(lock.acquire(timeout=TIMEOUT))
    lock.release()


def _condition_event_barrier_child(cond, state, event, barrier, out):
    with cond:
        state.value = 1
        cond.notify_all()
        out[0] = int(bool(cond.wait_for(lambda: state.value == 2, timeout=TIMEOUT)))
        out[1] = cond._lock._semlock._count()
    out[2] = int(event.wait(TIMEOUT))
    out[3] = barrier.wait(TIMEOUT) + 1   # 1 or 2: the barrier let it through


# == one process ==================================================================================

def test_acquire_release_and_with(impl, kind):
    lock = make(impl, kind)
    assert lock.acquire() is True
    assert not is_free(lock)
    lock.release()
    assert is_free(lock)
    with lock as entered:
        assert entered is True
        assert not is_free(lock)
    assert is_free(lock)
    assert lock.acquire(block=True, timeout=None) is True
    lock.release()
    assert lock.acquire(True, 5.0) is True
    lock.release()
    assert lock.acquire(False) is True
    lock.release()
    assert lock.acquire(timeout=0) is True
    lock.release()
    assert is_free(lock)


def test_with_releases_when_the_body_raises(impl, kind):
    lock = make(impl, kind)
    with pytest.raises(ZeroDivisionError):
        with lock:
            1 / 0
    assert is_free(lock)


def test_acquire_on_a_lock_held_by_another_thread_returns_false(impl, kind):
    lock = make(impl, kind)
    with Holder(lock):
        assert lock.acquire(False) is False
        assert lock.acquire(block=False) is False
        assert lock.acquire(timeout=0.05) is False
        assert lock.acquire(True, 0.05) is False
        assert lock.acquire(timeout=0) is False
        start = time.monotonic()
        assert lock.acquire(False, 600) is False     # block=False ignores the timeout
        assert time.monotonic() - start < TIMEOUT / 2
    assert lock.acquire(timeout=0) is True
    lock.release()


@pytest.mark.parametrize("timeout", [-1, -0.5, -1e9])
def test_negative_timeout_acts_as_zero(impl, kind, timeout):
    lock = make(impl, kind)
    with Holder(lock):
        start = time.monotonic()
        assert lock.acquire(timeout=timeout) is False
        assert lock.acquire(True, timeout) is False
        assert time.monotonic() - start < TIMEOUT / 2
    assert lock.acquire(timeout=timeout) is True     # free: taken at once
    lock.release()


def test_timeout_of_the_wrong_type_raises_type_error(impl, kind):
    lock = make(impl, kind)
    with pytest.raises(TypeError):
        lock.acquire(timeout="1")
    assert is_free(lock)


def test_lock_is_not_recursive(impl):
    lock = make(impl, "Lock")
    assert lock.acquire()
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.05) is False
    assert lock._semlock._count() == 1
    lock.release()
    assert is_free(lock)


def test_lock_may_be_released_by_another_thread(impl):
    lock = make(impl, "Lock")
    lock.acquire()
    result, error = in_thread(lock.release)
    assert error is None
    assert is_free(lock)
    # ... and the other way round: taken in a thread, released here.
    result, error = in_thread(lock.acquire)
    assert (result, error) == (True, None)
    assert lock.acquire(False) is False
    lock.release()
    assert is_free(lock)


def test_releasing_a_free_lock_raises_value_error(impl):
    lock = make(impl, "Lock")
    with pytest.raises(ValueError, match=r"^semaphore or lock released too many times$"):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(ValueError, match=r"^semaphore or lock released too many times$"):
        lock.release()
    assert is_free(lock)


def test_rlock_recursion(impl):
    rlock = make(impl, "RLock")
    for depth in range(1, 4):
        assert rlock.acquire() is True
        assert rlock._semlock._count() == depth
    assert repr(rlock) == f"<RLock({main_name()}, 3)>"
    assert not is_free(rlock)
    with rlock:
        assert rlock._semlock._count() == 4
    for depth in (2, 1, 0):
        rlock.release()
        assert rlock._semlock._count() == depth
    assert is_free(rlock)
    with pytest.raises(AssertionError, match=r"^attempt to release recursive lock not owned by thread$"):
        rlock.release()


def test_rlock_release_by_a_non_owner_thread_raises_assertion_error(impl):
    rlock = make(impl, "RLock")
    rlock.acquire()
    _, error = in_thread(rlock.release)
    assert isinstance(error, AssertionError)
    assert str(error) == "attempt to release recursive lock not owned by thread"
    assert rlock._semlock._is_mine() and rlock._semlock._count() == 1   # still ours
    rlock.release()
    assert is_free(rlock)
    with Holder(rlock):   # held by another thread: not ours to release
        with pytest.raises(AssertionError, match=r"^attempt to release recursive lock not owned by thread$"):
            rlock.release()
    assert is_free(rlock)


def test_rlock_held_by_another_thread_is_not_taken_recursively(impl):
    rlock = make(impl, "RLock")
    with Holder(rlock):
        assert rlock.acquire(False) is False
        assert rlock.acquire(timeout=0.05) is False
    assert rlock.acquire(False) is True
    rlock.release()


REPRS = {
    "Lock": {"free": "<Lock(owner=None)>", "mine": "<Lock(owner={name})>",
             "other thread": "<Lock(owner=SomeOtherThread)>"},
    "RLock": {"free": "<RLock(None, 0)>", "mine": "<RLock({name}, 1)>",
              "other thread": "<RLock(SomeOtherThread, nonzero)>"},
}


def test_repr(impl, kind):
    lock = make(impl, kind)
    forms = REPRS[kind]
    assert repr(lock) == forms["free"]
    with lock:
        assert repr(lock) == forms["mine"].format(name=main_name())
    assert repr(lock) == forms["free"]
    with Holder(lock):
        assert repr(lock) == forms["other thread"]
    assert repr(lock) == forms["free"]

    def describe():     # seen from the holding thread itself: "process|thread"
        with lock:
            return repr(lock)

    result, error = in_thread(describe, name="Worker")
    assert error is None
    assert result == forms["mine"].format(name=f"{main_name()}|Worker")
    assert repr(lock) == forms["free"]


def test_semlock_is_mine_and_count(impl, kind):
    lock = make(impl, kind)
    semlock = lock._semlock
    assert (semlock._is_mine(), semlock._count()) == (False, 0)
    lock.acquire()
    assert (semlock._is_mine(), semlock._count()) == (True, 1)
    result, error = in_thread(semlock._is_mine)
    assert (result, error) == (False, None)
    if kind == "RLock":
        lock.acquire()
        assert (semlock._is_mine(), semlock._count()) == (True, 2)
        lock.release()
    lock.release()
    assert (semlock._is_mine(), semlock._count()) == (False, 0)
    with Holder(lock):
        assert semlock._is_mine() is False


def test_pickling_outside_process_start_raises_runtime_error(impl, kind):
    lock = make(impl, kind)
    message = rf"^{kind} objects should only be shared between processes through inheritance$"
    with pytest.raises(RuntimeError, match=message):
        pickle.dumps(lock)
    with pytest.raises(RuntimeError, match=message):
        ForkingPickler.dumps(lock)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_context_locks_are_fastmps(method):
    ctx = fastmp.get_context(method)
    assert type(ctx.Lock()) is fastmp.Lock
    assert type(ctx.RLock()) is fastmp.RLock
    cond = ctx.Condition()
    assert type(cond._lock) is fastmp.RLock
    assert type(ctx.Condition(ctx.Lock())._lock) is fastmp.Lock
    assert type(ctx.Event()._cond._lock) is fastmp.Lock
    assert type(ctx.Barrier(2)._cond._lock) is fastmp.RLock


def test_condition_wait_timeouts_and_ownership_checks(impl):
    ctx = CONTEXTS[impl]("fork")
    cond = ctx.Condition()
    with pytest.raises(AssertionError, match=r"^must acquire\(\) condition before using wait\(\)$"):
        cond.wait(0.01)
    with pytest.raises(AssertionError, match=r"^lock is not owned$"):
        cond.notify()
    with cond:
        assert cond.wait(0.01) is False
        assert cond.wait_for(lambda: False, timeout=0.05) is False
        assert cond.wait_for(lambda: "yes", timeout=0.05) == "yes"
        assert cond._lock._semlock._count() == 1
    assert is_free(cond._lock)


def test_condition_wait_gives_back_every_level_of_an_rlock(impl):
    """Condition.wait releases the RLock _count() times and takes it back as
    often: a notifier in another thread gets in, and the depth is restored."""
    ctx = CONTEXTS[impl]("fork")
    cond = ctx.Condition()
    flag = []

    def notifier():
        with cond:
            flag.append(True)
            cond.notify()

    with cond:
        with cond:
            thread = threading.Thread(target=notifier, daemon=True)
            thread.start()
            assert cond.wait_for(lambda: flag, timeout=TIMEOUT)
            assert cond._lock._semlock._count() == 2
            assert cond._lock._semlock._is_mine()
    thread.join(TIMEOUT)
    assert is_free(cond._lock)


def test_event_on_fastmp_locks_between_threads():
    event = fastmp.get_context("fork").Event()
    assert not event.is_set()
    assert event.wait(0.01) is False
    waiter = Call(event.wait, TIMEOUT)
    waiter.start()
    event.set()
    assert waiter.outcome() == (True, None)
    event.clear()
    assert not event.is_set()


# == several processes ============================================================================

def test_locks_passed_to_a_child(impl, start_method, procs):
    """The child sees the parent's hold on both locks, may release the Lock
    (a semaphore) but not the RLock (not the owner)."""
    ctx = CONTEXTS[impl](start_method.get_start_method())
    lock, rlock = ctx.Lock(), ctx.RLock()
    out = start_method.SimpleQueue()
    lock.acquire()
    rlock.acquire()
    child = procs.start(start_method, _child_sees_parents_locks, lock, rlock, out)
    report = out.get()
    procs.join(child)
    expected = {
        "lock.acquire(False)": False,
        "lock.acquire(timeout=0.01)": False,
        "rlock.acquire(False)": False,
        "lock repr": "<Lock(owner=SomeOtherProcess)>",
        "rlock repr": "<RLock(SomeOtherProcess, nonzero)>",
        "lock _is_mine": False,
        "rlock _is_mine": False,
        "rlock.release()": "attempt to release recursive lock not owned by thread",
        "lock then free here": True,
    }
    if impl == "fastmp":
        expected["holder"] = (os.getpid(), os.getpid())
        # (The standard library's per-process count went negative with the
        # release of the parent's hold, so its repr says SomeOtherProcess here.)
        expected["repr held here"] = f"<Lock(owner={child.name})>"
    assert report == expected
    # The child gave the Lock back; the RLock is still ours.
    assert lock.acquire(False) is True
    lock.release()
    assert rlock._semlock._is_mine() and rlock._semlock._count() == 1
    rlock.release()
    assert is_free(rlock)
    out.close()


@pytest.mark.parametrize("impl_kind", ["fastmp-Lock", "fastmp-RLock", "stdlib-Lock"])
def test_mutual_exclusion_across_processes(impl_kind, procs):
    """3 processes each add 3000 to a plain shared number (a read, then a
    write) under the lock: the total is exact only if the lock excludes."""
    impl, kind = impl_kind.split("-")
    ctx = multiprocessing.get_context("fork")
    lock = make(impl, kind)
    counter = fastmp.RawValue("q", 0)
    go = ctx.Event()
    for _ in range(3):
        procs.start(ctx, _count_under_lock, lock, counter, go, 3000)
    go.set()
    procs.join()
    assert counter.value == 9000
    assert is_free(lock)


@pytest.mark.parametrize("kind, depth", [("Lock", 1), ("RLock", 1), ("RLock", 2)],
                         ids=["Lock", "RLock", "RLock-twice"])
def test_a_killed_holder_is_taken_over_by_another_process_then_by_the_parent(
        start_method, kind, depth, procs):
    """fastmp only (a standard-library lock stays held for ever).  A holder
    SIGKILLed while holding (an RLock possibly taken twice): a process already
    waiting on the lock takes it over (once the dead holder is reaped), at
    depth 1; then that one is killed holding it, and the parent takes it over."""
    ctx = start_method
    lock = FAST_LOCKS[kind]()
    held, ready, took = ctx.Event(), ctx.Event(), ctx.Event()
    out = fastmp.RawArray("q", 4)
    holder = procs.start(ctx, _hold_until_killed, lock, depth, held)
    assert held.wait(TIMEOUT)
    assert lock._holder_pid() == holder.pid
    assert lock.acquire(False) is False          # its holder is alive: no take-over
    heir = procs.start(ctx, _take_over_and_hold, lock, ready, took, out)
    assert ready.wait(TIMEOUT)

    os.kill(holder.pid, signal.SIGKILL)
    procs.join(holder, exitcode=-signal.SIGKILL)
    assert took.wait(TIMEOUT), "the waiting process never took the lock over"
    assert list(out) == [1, heir.pid, 1, 1]      # got it, recorded as holder, depth 1, its own
    assert lock._holder_pid() == heir.pid
    assert repr(lock).startswith(("<Lock(owner=SomeOtherProcess)>", "<RLock(SomeOtherProcess"))

    os.kill(heir.pid, signal.SIGKILL)
    procs.join(heir, exitcode=-signal.SIGKILL)
    assert lock.acquire(timeout=TIMEOUT) is True
    assert lock._holder_pid() == os.getpid()
    assert lock._semlock._is_mine() and lock._semlock._count() == 1
    assert repr(lock) in (f"<Lock(owner={main_name()})>", f"<RLock({main_name()}, 1)>")
    lock.release()
    assert lock._holder_pid() == 0
    assert is_free(lock)
    # And it works as a lock for a fresh process.
    result = fastmp.RawValue("i", 0)
    procs.join(procs.start(ctx, _acquire_and_release, lock, result))
    assert result.value == 1
    assert is_free(lock)


def test_the_parent_takes_over_from_a_killed_child_it_has_not_reaped_yet(procs):
    ctx = multiprocessing.get_context("fork")
    lock = fastmp.Lock()
    held = ctx.Event()
    holder = procs.start(ctx, _hold_until_killed, lock, 1, held)
    assert held.wait(TIMEOUT)
    os.kill(holder.pid, signal.SIGKILL)
    wait_until(lambda: _state(f"/proc/{holder.pid}/stat") == "Z", "the holder to die")
    try:
        # timeout is only a safety net: a robust mutex would be had at once.
        assert lock.acquire(timeout=1.0) is True
        lock.release()
    finally:
        procs.join(holder, exitcode=-signal.SIGKILL)


def test_waiters_killed_while_asleep_do_not_wedge_the_lock(kind, procs):
    """fastmp only.  Two processes asleep on a held lock (the waiters mark is
    set) are SIGKILLed; releases and acquires afterwards work for everyone,
    including a live thread asleep on it."""
    ctx = multiprocessing.get_context("fork")
    lock = FAST_LOCKS[kind]()
    lock.acquire()
    sleepers = []
    for _ in range(2):
        ready = ctx.Event()
        sleepers.append(procs.start(ctx, _acquire_forever, lock, ready))
        assert ready.wait(TIMEOUT)
    wait_until(lambda: futex_word(lock) & WAITERS, "the waiters mark")
    for proc in sleepers:
        wait_until_sleeping(proc.pid)
    assert futex_word(lock) == os.getpid() | WAITERS
    for proc in sleepers:
        os.kill(proc.pid, signal.SIGKILL)
    procs.join(*sleepers, exitcode=-signal.SIGKILL)

    lock.release()
    assert lock._holder_pid() == 0
    for _ in range(100):
        assert lock.acquire(timeout=TIMEOUT) is True
        lock.release()
    # A live sleeper is still woken by a release.
    lock.acquire()

    def take_and_give_back():
        got = lock.acquire(timeout=TIMEOUT)
        lock.release()
        return got

    waiter = Call(take_and_give_back)
    waiter.start()
    wait_until(lambda: futex_word(lock) & WAITERS or not waiter.is_alive(), "the thread to wait")
    lock.release()
    assert waiter.outcome() == (True, None)
    assert is_free(lock)
    # And a live process.
    result = fastmp.RawValue("i", 0)
    procs.join(procs.start(ctx, _acquire_and_release, lock, result))
    assert result.value == 1


def test_condition_event_and_barrier_of_a_fastmp_context_across_processes(start_method, procs):
    """The standard library's Condition, Event and Barrier, made by a fastmp
    context, i.e. running on fastmp's Lock/RLock, between two processes."""
    ctx = fastmp.get_context(start_method.get_start_method())
    cond, event, barrier = ctx.Condition(), ctx.Event(), ctx.Barrier(2)
    state = ctx.Value("i", 0)
    out = ctx.RawArray("q", 4)
    assert type(cond._lock) is fastmp.RLock
    child = procs.start(ctx, _condition_event_barrier_child, cond, state, event, barrier, out)
    with cond:
        assert cond.wait_for(lambda: state.value == 1, timeout=TIMEOUT)
        state.value = 2
        cond.notify_all()
    event.set()
    assert barrier.wait(TIMEOUT) in (0, 1)
    procs.join(child)
    assert out[0] == 1 and out[1] == 1 and out[2] == 1 and out[3] in (1, 2)
    assert is_free(cond._lock)


# == Ctrl-C ========================================================================================

#: What the blocked main thread does while a holder thread keeps the lock.
_BLOCKED = {
    "Lock.acquire()": ("lock = M.Lock()", "lock.acquire()"),
    "Lock.acquire(timeout)": ("lock = M.Lock()", "lock.acquire(timeout=600)"),
    "RLock.acquire()": ("lock = M.RLock()", "lock.acquire()"),
    "with RLock": ("lock = M.RLock()", "with lock: pass"),
    "Value.value": ("v = M.Value('i', 7); lock = v.get_lock()", "v.value"),
    "Array[i] = x": ("a = M.Array('d', 3); lock = a.get_lock()", "a[1] = 2.5"),
}


@pytest.mark.parametrize("call", sorted(_BLOCKED))
def test_ctrl_c_interrupts_a_blocked_acquire(impl, call, tmp_path):
    """A fresh interpreter blocks on a lock another of its threads holds;
    SIGINT raises KeyboardInterrupt there promptly, and the lock still works."""
    setup, blocking = _BLOCKED[call]
    module = "fastmp" if impl == "fastmp" else "multiprocessing"
    code = "\n".join([
        "import threading",
        f"import {module} as M",
        setup,
        "held, go = threading.Event(), threading.Event()",
        "def hold():",
        "    lock.acquire(); held.set(); go.wait(); lock.release()",
        "t = threading.Thread(target=hold, daemon=True); t.start(); held.wait()",
        "print('ready', flush=True)",
        "try:",
        f"    {blocking}",
        "except KeyboardInterrupt:",
        "    print('interrupted', flush=True)",
        "else:",
        "    print('returned', flush=True)",
        "go.set(); t.join()",
        "if lock.acquire(False):",
        "    lock.release(); print('usable', flush=True)",
    ])
    # The child imports the same fastmp as this process; it runs elsewhere so
    # that a source checkout in the working directory cannot shadow it.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err_file:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 stderr=err_file, text=True, env=env, cwd=tmp_path)
    try:
        assert child.stdout.readline().strip() == "ready", err_path.read_text()
        wait_until_sleeping(child.pid)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        elapsed = time.monotonic() - sent
        child.wait(timeout=10)
        rest = child.stdout.read()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    err = err_path.read_text()
    assert line == "interrupted", err
    assert elapsed < 5.0
    assert rest.split() == ["usable"], err
    assert child.returncode == 0, err
