"""fastmp.SimpleQueue: multiprocessing.SimpleQueue's get/put/empty/close."""
import pickle
import threading

import pytest

import fastmp

pytestmark = pytest.mark.timeout(60)


def _echo(inbox, outbox):
    for item in iter(inbox.get, None):
        outbox.put(item)


def test_put_get_in_order_and_empty():
    q = fastmp.SimpleQueue()
    assert q.empty()
    objs = [b"raw", "text", (1, 3.14), {"k": [1, 2]}, None, b""]
    for obj in objs:
        q.put(obj)
    assert not q.empty()
    assert [q.get() for _ in objs] == objs
    assert q.empty()


def test_class_getitem():
    assert fastmp.SimpleQueue[int] is not None


def test_put_blocks_while_full_and_resumes_as_a_reader_drains():
    q = fastmp.SimpleQueue(capacity=1024)
    messages = [bytes([i]) * 300 for i in range(20)]  # 6 KB through a 1 KiB ring
    received = []
    reader = threading.Thread(target=lambda: received.extend(q.get() for _ in messages))
    reader.start()
    for message in messages:
        q.put(message)
    reader.join(10)
    assert received == messages


def test_message_larger_than_the_ring():
    q = fastmp.SimpleQueue(capacity=4096)
    big = bytes(range(256)) * 1000
    result = []
    reader = threading.Thread(target=lambda: result.append(q.get()))
    reader.start()
    q.put(big)
    reader.join(10)
    assert result == [big]


def test_every_call_after_close_raises_os_error():
    q = fastmp.SimpleQueue()
    q.put(1)
    q.close()
    for call in (q.get, q.empty, lambda: q.put(2)):
        with pytest.raises(OSError, match="handle is closed"):
            call()
    q.close()  # twice is harmless


def test_unpicklable_object_raises_in_put_and_loses_nothing():
    q = fastmp.SimpleQueue()
    q.put("before")
    with pytest.raises(Exception):
        q.put(lambda: None)
    q.put("after")
    assert [q.get(), q.get()] == ["before", "after"]
    assert q.empty()


def test_bad_capacity():
    with pytest.raises(TypeError):
        fastmp.SimpleQueue(capacity="big")
    with pytest.raises(ValueError):
        fastmp.SimpleQueue(capacity=10)


def test_pickling_outside_process_start_is_refused():
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(fastmp.SimpleQueue())


def test_round_trip_through_a_child(start_method, procs):
    inbox, outbox = fastmp.SimpleQueue(), fastmp.SimpleQueue()
    procs.start(start_method, _echo, inbox, outbox)
    objs = [("msg", i, b"x" * (i * 37)) for i in range(300)]
    for obj in objs:
        inbox.put(obj)
    assert [outbox.get() for _ in objs] == objs
    inbox.put(None)
    procs.join()
