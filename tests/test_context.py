"""fastmp.get_context(): a multiprocessing context whose queues are fastmp's,
accepted wherever a multiprocessing context is (Pool, ProcessPoolExecutor,
data-loader style code)."""
import concurrent.futures
import multiprocessing
import queue

import pytest

import fastmp

pytestmark = pytest.mark.timeout(120)

METHODS = ["fork", "spawn", "forkserver"]


def _square(x):
    return x * x


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


def test_other_primitives_are_the_standard_librarys(ctx):
    method = ctx.get_start_method()
    stdlib = multiprocessing.get_context(method)
    assert type(ctx.SimpleQueue()) is type(stdlib.SimpleQueue())
    assert type(ctx.Event()) is type(stdlib.Event())
    assert type(ctx.Lock()) is type(stdlib.Lock())


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
