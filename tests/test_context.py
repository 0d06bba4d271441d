"""fastmp.get_context(): a multiprocessing context whose queues and pipes are
fastmp's, accepted wherever a multiprocessing context is (Pool,
ProcessPoolExecutor, data-loader style code).  Pool and the executor reach
into SimpleQueue's pipe (_reader, _writer, _rlock, connection.wait on the
reader): these tests run them on fastmp's SimpleQueue, including the paths
that only run when something goes wrong (terminate, a worker that dies)."""
import concurrent.futures
import multiprocessing
import os
import queue
import signal

import pytest

import fastmp

pytestmark = pytest.mark.timeout(120)

METHODS = ["fork", "spawn", "forkserver"]


def _square(x):
    return x * x


def _fail_on_three(x):
    if x == 3:
        raise ValueError("three")
    return x


def _die(x):
    os.kill(os.getpid(), signal.SIGKILL)


def _pid(_):
    return os.getpid()


def _loader_worker(index_queue, result_queue, done):
    # The shape of a DataLoader worker: indices in, samples out, an Event to stop.
    while not done.is_set():
        try:
            index = index_queue.get(timeout=0.1)
        except queue.Empty:
            continue
        if index is None:
            break
        result_queue.put((index, [index] * 4))
    result_queue.cancel_join_thread()


@pytest.fixture(params=METHODS)
def ctx(request):
    return fastmp.get_context(request.param)


def test_context_is_a_multiprocessing_context_for_its_method(ctx):
    method = ctx.get_start_method()
    assert isinstance(ctx, multiprocessing.context.BaseContext)
    assert ctx.Process is multiprocessing.get_context(method).Process
    assert ctx.get_context() is ctx
    assert fastmp.get_context(method) is ctx
    assert ctx.get_context("spawn") is fastmp.get_context("spawn")


def test_context_queues_are_fastmps(ctx):
    q = ctx.Queue(3, capacity=4096)
    assert type(q) is fastmp.Queue
    q.put_many([1, 2, 3])
    with pytest.raises(queue.Full):
        q.put(4, block=False)
    assert q.get_many() == [1, 2, 3]
    assert type(ctx.JoinableQueue()) is fastmp.JoinableQueue


def test_context_simple_queue_and_pipe_are_fastmps(ctx):
    q = ctx.SimpleQueue()
    assert type(q) is fastmp.SimpleQueue
    q.put("x")
    assert q.get() == "x"
    a, b = ctx.Pipe()
    assert type(a) is type(b) is fastmp.connection.Connection
    assert a.readable and a.writable
    reader, writer = ctx.Pipe(duplex=False)
    assert (reader.readable, reader.writable, writer.readable, writer.writable) == \
        (True, False, False, True)
    for conn in (a, b, reader, writer):
        conn.close()
    q.close()


def test_context_locks_and_shared_values_are_fastmps(ctx):
    assert type(ctx.Lock()) is fastmp.Lock
    assert type(ctx.RLock()) is fastmp.RLock
    value = ctx.Value("d", 1.5)
    assert type(value) is fastmp.sharedctypes.Synchronized and value.value == 1.5
    assert type(value.get_lock()) is fastmp.RLock
    array = ctx.Array("i", [1, 2, 3], lock=False)
    assert list(array) == [1, 2, 3]
    assert ctx.RawValue("i", 4).value == 4
    assert list(ctx.RawArray("b", 2)) == [0, 0]


def _wait_for_everything(event, condition, barrier, state):
    event.wait(30)
    with condition:
        condition.wait_for(lambda: state.value >= 1, 30)
    barrier.wait(30)
    state.value += 10


def test_standard_library_condition_event_barrier_run_on_fastmp_locks(ctx):
    # Condition calls lock._semlock._is_mine() and _count() on the context's
    # (fastmp) RLock; Event and Barrier are built on Condition.
    event, condition, barrier = ctx.Event(), ctx.Condition(), ctx.Barrier(2)
    state = ctx.Value("i", 0)
    assert type(condition._lock) is fastmp.RLock
    child = ctx.Process(target=_wait_for_everything, args=(event, condition, barrier, state))
    child.start()
    try:
        event.set()
        with condition:
            state.value = 1
            condition.notify_all()
        barrier.wait(30)
        child.join(60)
    finally:
        if child.exitcode is None:
            child.kill()
            child.join()
    assert child.exitcode == 0
    assert state.value == 11


def test_other_primitives_are_the_standard_librarys(ctx):
    method = ctx.get_start_method()
    stdlib = multiprocessing.get_context(method)
    assert type(ctx.Event()) is type(stdlib.Event())
    assert type(ctx.Semaphore()) is type(stdlib.Semaphore())


def test_default_context_follows_multiprocessing_without_fixing_it():
    before = multiprocessing.get_start_method(allow_none=True)
    ctx = fastmp.get_context()
    expected = before or multiprocessing.get_all_start_methods()[0]
    assert ctx.get_start_method() == expected
    assert multiprocessing.get_start_method(allow_none=True) == before


@pytest.mark.parametrize("method", ["nope", "", 3])
def test_unknown_method_is_a_value_error(method):
    with pytest.raises(ValueError, match="cannot find context"):
        fastmp.get_context(method)


def test_pool_works_with_a_fastmp_context(ctx):
    with ctx.Pool(2) as pool:
        assert pool.map(_square, range(200)) == [x * x for x in range(200)]
        assert sorted(pool.imap_unordered(_square, range(50))) == [x * x for x in range(50)]
        assert pool.apply_async(_square, (12,)).get(timeout=60) == 144
    pool.join()
    pool = ctx.Pool(1)
    pool.terminate()
    pool.join()


def test_pool_runs_on_fastmp_simple_queues(ctx):
    with ctx.Pool(2) as pool:
        assert type(pool._inqueue) is type(pool._outqueue) is fastmp.SimpleQueue
        assert type(pool._change_notifier) is fastmp.SimpleQueue
        with pytest.raises(ValueError, match="three"):
            pool.map(_fail_on_three, range(10))
        # The pool survives a task's exception.
        assert pool.map(_square, range(5)) == [0, 1, 4, 9, 16]
    pool.join()


def test_pool_replaces_workers_after_maxtasksperchild(ctx):
    # Worker replacement is driven by connection.wait on the change
    # notifier's _reader plus the workers' sentinels.
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        pids = pool.map(_pid, range(6), chunksize=1)
    pool.join()
    assert len(set(pids)) >= 3


def test_pool_terminate_with_tasks_in_flight(ctx):
    # terminate() drains the inqueue under _rlock while the task handler may
    # still be putting, then kills the workers: it must return, not hang.
    pool = ctx.Pool(2)
    try:
        results = [pool.apply_async(_square, (i,)) for i in range(2000)]
        assert results[0].get(timeout=60) == 0
    finally:
        pool.terminate()
        pool.join()
    assert all(p.exitcode is not None for p in pool._pool)


def test_process_pool_executor_runs_on_fastmp_simple_queue(ctx):
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as executor:
        assert executor.submit(_square, 3).result(timeout=60) == 9
        assert type(executor._result_queue) is fastmp.SimpleQueue
        future = executor.submit(_fail_on_three, 3)
        with pytest.raises(ValueError, match="three"):
            future.result(timeout=60)


def test_process_pool_executor_notices_a_dead_worker(ctx):
    # The manager thread waits on the result queue's _reader and the
    # workers' sentinels together; a SIGKILLed worker must break the pool,
    # not hang it.
    executor = concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx)
    try:
        future = executor.submit(_die, 0)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            future.result(timeout=60)
    finally:
        executor.shutdown(wait=True)


def test_process_pool_executor_accepts_a_fastmp_context(ctx):
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as executor:
        assert list(executor.map(_square, range(100))) == [x * x for x in range(100)]
        assert executor.submit(_square, 9).result(timeout=60) == 81


def test_data_loader_style_use(ctx):
    index_queue, result_queue, done = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_loader_worker, args=(index_queue, result_queue, done),
                           daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for index in range(100):
            index_queue.put(index)
        samples = dict(result_queue.get(timeout=30) for _ in range(100))
        assert samples == {i: [i] * 4 for i in range(100)}
    finally:
        done.set()
        for _ in workers:
            index_queue.put(None)
        for worker in workers:
            worker.join(30)
        index_queue.cancel_join_thread()
        index_queue.close()
        index_queue.join_thread()
        result_queue.close()
        result_queue.join_thread()
    assert [worker.exitcode for worker in workers] == [0, 0]
