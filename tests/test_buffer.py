"""fastmp._buffer: large receive buffers recycled within a process."""
import threading

import pytest

import fastmp
from fastmp import _buffer
from fastmp._message import detach, encode

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20


@pytest.fixture(autouse=True)
def empty_cache():
    _buffer.clear_cache()
    yield
    _buffer.clear_cache()


def test_buffer_is_writable_bytes_like_of_the_asked_size():
    buffer = _buffer._new(5 * MB + 3)
    view = memoryview(buffer)
    assert len(buffer) == view.nbytes == 5 * MB + 3
    assert not view.readonly
    view[-1] = 7
    assert view[-1] == 7


def test_freed_buffer_is_reused_for_a_similar_size():
    first = _buffer._new(8 * MB)
    memoryview(first)[0] = 42
    del first
    assert _buffer.cached_bytes() == 8 * MB
    second = _buffer._new(8 * MB - 100)  # fits the cached mapping
    assert _buffer.cached_bytes() == 0
    assert memoryview(second)[0] == 42  # the same pages, not fresh ones
    del second


def test_much_smaller_request_does_not_take_a_huge_cached_mapping():
    big = _buffer._new(64 * MB)
    del big
    small = _buffer._new(5 * MB)
    assert _buffer.cached_bytes() == 64 * MB
    del small


def test_cache_is_bounded_and_clearable():
    buffers = [_buffer._new(100 * MB) for _ in range(4)]
    del buffers
    assert 0 < _buffer.cached_bytes() <= 256 * MB
    _buffer.clear_cache()
    assert _buffer.cached_bytes() == 0


def test_array_keeps_its_buffer_alive_and_returns_it_when_dropped():
    np = pytest.importorskip("numpy")
    q = fastmp.Queue()
    sent = np.arange(2_000_000, dtype=np.float64)  # 16 MB: a large message
    # A put normally sends an array this large through the side arena
    # (test_side.py); a message a producer had to buffer travels as one
    # joined body through the ring instead, and is received into a LargeBuffer.
    kind, body = detach(*encode(sent))
    writer = threading.Thread(target=q._ring.put, args=(kind, body))
    writer.start()
    received = q.get(timeout=30)
    writer.join()
    assert _buffer.cached_bytes() == 0  # in use by `received`
    assert np.array_equal(received, sent) and received.flags.writeable
    received[:] = -1  # writable, and the sender's array is untouched
    assert sent[1] == 1.0
    del received
    assert _buffer.cached_bytes() >= sent.nbytes
