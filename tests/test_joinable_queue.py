"""fastmp.JoinableQueue: task_done() and join(), as multiprocessing.JoinableQueue."""
import pickle
import queue
import threading

import pytest

import fastmp

pytestmark = pytest.mark.timeout(60)


def _worker(q, results):
    for item in iter(q.get, None):
        results.put(item * 2)
        q.task_done()
    q.task_done()  # for the None


def test_join_returns_at_once_with_no_tasks():
    fastmp.JoinableQueue().join()


def test_task_done_too_many_times_raises_value_error():
    q = fastmp.JoinableQueue()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


def test_join_waits_for_every_task_of_a_thread():
    q = fastmp.JoinableQueue()
    for i in range(100):
        q.put(i)
    q.put_many(range(100, 150))
    done = []

    def consume():
        for _ in range(150):
            done.append(q.get(timeout=10))
            q.task_done()

    consumer = threading.Thread(target=consume)
    consumer.start()
    q.join()
    assert len(done) == 150  # join returned only after the last task_done
    consumer.join(10)


def test_a_put_that_fails_is_not_counted_as_a_task():
    q = fastmp.JoinableQueue(1)
    q.put("occupant")
    with pytest.raises(queue.Full):
        q.put("no room", timeout=0.05)
    with pytest.raises(queue.Full):
        q.put_many(["a"], block=False)
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: None)  # cannot be pickled
    assert q.get() == "occupant"
    q.task_done()
    q.join()  # exactly one task was ever counted


def test_closed_queue_refuses_puts_without_counting_them():
    q = fastmp.JoinableQueue()
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)
    with pytest.raises(ValueError, match="is closed"):
        q.put_many([1, 2])


def test_pickling_outside_process_start_is_refused():
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(fastmp.JoinableQueue())


def test_join_across_processes(start_method, procs):
    # Its task count is multiprocessing's Semaphore and Condition, which (as
    # with multiprocessing.JoinableQueue) must come from the children's context.
    q = fastmp.JoinableQueue(ctx=start_method)
    results = fastmp.Queue()
    for _ in range(2):
        procs.start(start_method, _worker, q, results)
    items = list(range(200))
    q.put_many(items[:100])
    for item in items[100:]:
        q.put(item)
    q.join()
    # Every task is done, so every result is already in `results`.
    got = results.get_many(block=False)
    while len(got) < len(items):
        got += results.get_many(block=False)
    assert sorted(got) == [i * 2 for i in items]
    for _ in range(2):
        q.put(None)
    q.join()
    procs.join()
