"""fastmp._ring.FramedRing: framing, batches, wrap-around, streaming, admission, repair."""
import multiprocessing
import os
import threading

import pytest

from fastmp import _ring
from fastmp._ring import PUT_ADMITTED_, PUT_FULL_, PUT_WRITTEN_, FramedRing

pytestmark = pytest.mark.timeout(60)


def _payload(i, size):
    return bytes((i + j) % 251 for j in range(size))


def test_put_get_one_record_keeps_kind_and_body():
    ring = FramedRing(1024)
    assert ring.put(7, b"hello") == PUT_WRITTEN_
    assert ring.count == 1
    assert ring.get() == (7, b"hello")
    assert ring.count == 0 and ring.used_bytes == 0


def test_body_given_as_several_buffers_is_concatenated():
    ring = FramedRing(1024)
    ring.put(2, [b"ab", memoryview(b"cde"), bytearray(b"f")])
    assert ring.get() == (2, b"abcdef")


def test_writable_kind_comes_back_as_bytearray():
    ring = FramedRing(1024)
    ring.put(3 | 0x100, b"xyz")
    kind, body = ring.get()
    assert kind == 3 and isinstance(body, bytearray) and body == b"xyz"


def test_non_contiguous_buffer_is_refused_before_anything_is_written():
    ring = FramedRing(1024)
    strided = memoryview(bytearray(16))[::2]
    with pytest.raises(BufferError):
        ring.put(2, [strided])
    assert ring.count == 0 and ring.used_bytes == 0


def test_get_times_out_with_none_and_nonblocking_returns_none():
    ring = FramedRing(1024)
    assert ring.get(block=False) is None
    assert ring.get(timeout=0.01) is None
    assert ring.get_many(10, timeout=0) == []


def test_wrap_around_preserves_every_message():
    ring = FramedRing(1000)  # not a power of two: records wrap at odd offsets
    for i in range(3000):
        body = _payload(i, i % 301)
        assert ring.put(1, body) == PUT_WRITTEN_
        assert ring.get() == (1, body)


def test_put_many_is_all_or_nothing_on_bytes():
    ring = FramedRing(256)
    assert ring.put_many([(1, b"a" * 100)]) == PUT_WRITTEN_
    # 2 x (16 + 104) = 240 > 256 - 120 free: the batch waits, then is admitted
    # (counted) but not written, and nothing of it is visible.
    status = ring.put_many([(1, b"b" * 100), (1, b"c" * 100)], timeout=0.01, room_wait=0.01)
    assert status == PUT_ADMITTED_
    assert ring.count == 1 and ring.pending == 2
    assert ring.get() == (1, b"a" * 100)
    ring.put_admitted([(1, b"b" * 100), (1, b"c" * 100)])
    assert ring.pending == 0
    assert ring.get_many(10) == [(1, b"b" * 100), (1, b"c" * 100)]


def test_batch_larger_than_ring_is_refused_at_once():
    ring = FramedRing(256)
    with pytest.raises(ValueError, match="capacity"):
        ring.put_many([(1, b"x" * 100)] * 3)
    assert ring.count == 0 and ring.used_bytes == 0


def test_maxsize_bounds_messages_and_reports_full():
    ring = FramedRing(4096, maxsize=2)
    assert ring.put_many([(1, b"a"), (1, b"b")]) == PUT_WRITTEN_
    assert ring.put(1, b"c", block=False) == PUT_FULL_
    assert ring.put(1, b"c", timeout=0.01) == PUT_FULL_
    with pytest.raises(ValueError, match="maxsize"):
        ring.put_many([(1, b"x")] * 3)
    assert ring.get_many(5) == [(1, b"a"), (1, b"b")]


def test_admit_counts_without_writing():
    ring = FramedRing(4096, maxsize=3)
    assert ring.admit([(1, b"a"), (1, b"b")]) == PUT_ADMITTED_
    assert ring.pending == 2 and ring.used_bytes == 0
    assert ring.admit([(1, b"c"), (1, b"d")], block=False) == PUT_FULL_
    ring.release_admitted(2)
    assert ring.pending == 0


def test_admit_refuses_a_batch_that_can_never_fit():
    ring = FramedRing(256, maxsize=3)
    with pytest.raises(ValueError, match="capacity"):
        ring.admit([(1, b"x" * 100)] * 3)
    with pytest.raises(ValueError, match="maxsize"):
        ring.admit([(1, b"x")] * 4)
    assert ring.pending == 0


def test_get_many_takes_at_most_max_and_rejects_zero():
    ring = FramedRing(4096)
    ring.put_many([(1, bytes([i])) for i in range(10)])
    assert [b for _, b in ring.get_many(4)] == [bytes([i]) for i in range(4)]
    with pytest.raises(ValueError):
        ring.get_many(0)
    assert len(ring.get_many(100)) == 6


@pytest.mark.parametrize("size", [257, 4096, 1 << 20, (1 << 20) + 3])
def test_message_larger_than_ring_streams_through(size):
    ring = FramedRing(256)
    body = _payload(size, size)
    results = []
    reader = threading.Thread(target=lambda: results.append(ring.get()))
    reader.start()
    assert ring.put(5, body) == PUT_WRITTEN_
    reader.join(30)
    assert results == [(5, body)]
    assert ring.count == 0 and ring.used_bytes == 0


def test_stream_between_ordinary_messages_keeps_order():
    ring = FramedRing(512)
    sent = [b"small-1", _payload(1, 5000), b"small-2", _payload(2, 1500), b"small-3"]
    received = []

    def consume():
        while len(received) < len(sent):
            received.extend(body for _, body in ring.get_many(10))

    reader = threading.Thread(target=consume)
    reader.start()
    for body in sent:
        assert ring.put(1, body) == PUT_WRITTEN_
    reader.join(30)
    assert received == sent


def test_unread_stream_is_taken_back_when_no_reader_comes():
    ring = FramedRing(256)
    status = ring.put(1, b"z" * 1000, room_wait=0.02)
    assert status == PUT_ADMITTED_
    assert ring.count == 0 and ring.pending == 1 and ring.used_bytes == 0
    reader = threading.Thread(target=lambda: ring.get())
    reader.start()
    ring.put_admitted([(1, b"z" * 1000)])
    reader.join(30)
    assert ring.pending == 0 and ring.count == 0


def test_spin_time_is_tunable_and_bounded():
    old = _ring.get_spin_seconds()
    try:
        _ring.set_spin_seconds(0)
        ring = FramedRing(1024)
        assert ring.get(timeout=0.01) is None
        with pytest.raises(ValueError):
            _ring.set_spin_seconds(1.0)
        with pytest.raises(ValueError):
            _ring.set_spin_seconds(-1e-6)
    finally:
        _ring.set_spin_seconds(old)


def test_attach_refuses_memory_that_is_not_a_ring():
    from fastmp._segment import Segment

    with pytest.raises(ValueError, match="does not hold a fastmp ring"):
        FramedRing._attach(Segment(4096))


@pytest.mark.parametrize("capacity", [0, 63, -5])
def test_capacity_too_small_is_refused(capacity):
    with pytest.raises(ValueError, match="at least 64"):
        FramedRing(capacity)


def _hang_up_while_holding_the_mutex(ring):
    # In a child: a robust mutex still held when its memory is unmapped would
    # corrupt this thread's robust-mutex list, so the test process must not
    # hold it.  The child exits holding it (the kernel marks it owner-dead).
    other = FramedRing._attach(ring.segment)
    ring._acquire_and_keep_lock()
    other.hang_up()     # returns (after its 50 ms patience) instead of hanging
    os._exit(0)


def test_hang_up_gives_up_rather_than_deadlock_on_a_held_mutex():
    # Connection.close() can run from a finaliser while this thread holds the
    # same ring's mutex through another ring object: hang_up must not wait
    # for it forever (the peers' 50 ms wait slices cover the missed wake-up).
    ring = FramedRing(4096)
    child = multiprocessing.get_context("fork").Process(
        target=_hang_up_while_holding_the_mutex, args=(ring,))
    child.start()
    child.join(30)
    if child.exitcode is None:
        child.kill()
        child.join()
    assert child.exitcode == 0


def test_capacity_beyond_the_machines_memory_is_refused_at_once():
    # Pre-faulting it would thrash or meet the OOM killer instead.
    too_big = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") + 4096
    with pytest.raises(ValueError, match="more than this machine's memory"):
        FramedRing(too_big)
