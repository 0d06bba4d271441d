"""fastmp.Ring: typed fixed-size frames between one writer and one reader.

Construction and its errors, NumPy views (and the memoryview path in a fresh
interpreter where NumPy cannot be imported), reserve/commit/abort, recv,
recv_into and recv_view, timeouts, claims, close, dead peers (a reader killed
holding a view, a writer killed inside reserve), Ctrl-C, pickling, streams
between processes under every start method, and leaks.

Deterministic: processes hand over with Events and queues; timeouts only
guard against hangs.  Child targets live at module level (spawn pickles them).
"""
import array
import multiprocessing
import os
import pickle
import queue
import re
import threading
import time

import numpy as np
import pytest
from conftest import (Call, assert_ctrl_c_interrupts_promptly, assert_spins_freely,
                      wait_until_sleeping)
from frames_support import (ASLEEP_IN_A_FUTEX, PATIENCE, assert_futex_calls_do_not_grow, frame_of,
                            fresh_python, put_how_recv_ended, run_in_thread, sigkill,
                            wait_for)

try:
    from fastmp._typed_ring import Ring
except ImportError:          # not built yet (the forkserver preloads this module too)
    Ring = None

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(Ring is None, reason="fastmp._typed_ring is not built")]

FORK = multiprocessing.get_context("fork")


def _assert_frame(frame, ring, value):
    assert isinstance(frame, np.ndarray)
    assert frame.shape == ring.shape and frame.dtype == ring.dtype
    assert (frame == value).all(), f"frame should be all {value}: {frame.ravel()[:8]}..."


# -- construction ---------------------------------------------------------------------------------

def test_properties():
    ring = Ring(4, (2, 3), "float32")
    assert ring.slots == 4
    assert ring.shape == (2, 3) and isinstance(ring.shape, tuple)
    assert ring.dtype == np.dtype("float32") and isinstance(ring.dtype, np.dtype)
    assert ring.frame_bytes == 24
    assert not ring.closed
    assert ring.qsize() == 0 and ring.empty() and not ring.full()


def test_defaults_and_an_int_shape():
    ring = Ring(2, 5)
    assert ring.shape == (5,)
    assert ring.dtype == np.dtype("float32")
    assert ring.frame_bytes == 20


@pytest.mark.parametrize("dtype, itemsize", [
    ("float64", 8), ("f8", 8), (np.int16, 2), (np.dtype("uint8"), 1), ("?", 1),
    ("complex128", 16), (">i4", 4), ("e", 2),
    (np.dtype([("x", "f4"), ("y", "i2")]), 6),          # structured, no objects
    (np.dtype(("f4", (2,))), None),                       # subarray dtype: see below
], ids=lambda v: str(v))
def test_any_numpy_dtype_without_objects(dtype, itemsize):
    ring = Ring(2, (3,), dtype)
    want = np.dtype(dtype)
    if want.subdtype is not None:
        # numpy.dtype(("f4", (2,))) is a float32 dtype with a (2,) subarray;
        # either it is kept as such or folded into the frame's shape, but the
        # frame's bytes are the same.
        assert ring.frame_bytes == 3 * want.itemsize
        return
    assert ring.dtype == want
    assert ring.frame_bytes == 3 * itemsize
    frame = np.zeros(3, dtype=want)
    frame.view(np.uint8)[:] = np.arange(frame.nbytes, dtype=np.uint8)
    ring.send(frame)
    got = ring.recv()
    assert got.dtype == want
    assert got.tobytes() == frame.tobytes()


@pytest.mark.parametrize("dtype", ["M8[ns]", "m8[s]", np.dtype([("t", "M8[us]"), ("v", "f8")])],
                         ids=["datetime64", "timedelta64", "record-with-datetime"])
def test_datetime_dtypes_travel_like_any_other(dtype):
    ring = Ring(2, 3, dtype)
    frame = np.zeros(3, ring.dtype)
    frame.view(np.uint8)[:] = np.arange(frame.nbytes, dtype=np.uint8)
    ring.send(frame)
    with ring.reserve() as view:
        view[...] = frame
    assert ring.recv().tobytes() == frame.tobytes()
    out = np.zeros(3, ring.dtype)
    ring.recv_into(out)
    assert out.tobytes() == frame.tobytes()


@pytest.mark.parametrize("dtype", [object, "O", np.dtype([("a", "f8"), ("b", "O")]),
                                   np.dtype([("a", [("inner", "O")])]),
                                   np.dtype(("O", (2,)))],
                         ids=["object", "O", "field", "nested-field", "subarray"])
def test_dtypes_holding_objects_are_refused(dtype):
    with pytest.raises(TypeError):
        Ring(2, 3, dtype)


@pytest.mark.parametrize("dtype", ["not-a-dtype", 3.5, "float33"])
def test_what_numpy_cannot_read_as_a_dtype_is_a_type_error(dtype):
    with pytest.raises(TypeError):
        Ring(2, 3, dtype)


@pytest.mark.parametrize("slots", [0, -1, -100])
def test_slots_below_one_are_refused(slots):
    with pytest.raises(ValueError):
        Ring(slots, 3)


@pytest.mark.parametrize("slots", [2.0, "4", None, [4]])
def test_slots_of_the_wrong_type_are_refused(slots):
    with pytest.raises(TypeError):
        Ring(slots, 3)


@pytest.mark.parametrize("shape", [-1, (-1,), (2, -3), (1,) * 9, (2,) * 10])
def test_bad_shapes_are_refused(shape):
    with pytest.raises(ValueError):
        Ring(2, shape)


@pytest.mark.parametrize("shape", [(2.0,), ("3",), "3", None, (None,)])
def test_shapes_that_are_not_ints_are_refused(shape):
    with pytest.raises((TypeError, ValueError)):
        Ring(2, shape)


def test_eight_dimensions_are_allowed():
    ring = Ring(1, (1, 2, 1, 2, 1, 2, 1, 2), "int8")
    assert ring.shape == (1, 2, 1, 2, 1, 2, 1, 2) and ring.frame_bytes == 16


def test_a_zero_dimensional_frame_holds_one_item():
    ring = Ring(2, (), "int64")
    assert ring.shape == () and ring.frame_bytes == 8
    ring.send(np.array(7, dtype=np.int64))
    got = ring.recv()
    assert got.shape == () and got == 7


@pytest.mark.parametrize("shape", [0, (0,), (4, 0), (0, 3, 3)])
def test_empty_frames_are_refused(shape):
    with pytest.raises(ValueError, match="empty frame"):
        Ring(2, shape)


@pytest.mark.parametrize("slots, shape, dtype", [
    (2, (1 << 44,), "uint8"),                  # one frame is 16 TiB
    (1 << 40, 1, "uint8"),                     # 2**40 slots of 64 bytes
    (1 << 20, (1 << 20,), "float64"),          # 8 TiB in total
    (2, ((1 << 63) - 1,), "float64"),          # the bytes beyond 64 bits
    (1, (1 << 31, 1 << 31, 1 << 31), "uint8"), # 2**93 would wrap to 0 in 64 bits
    (1, (4, (1 << 62) + 1), "uint8"),          # ... and this one to 4
    (2, (1 << 64,), "uint8"),                  # one dimension beyond 64 bits
])
def test_more_than_the_machine_has_is_refused(slots, shape, dtype):
    with pytest.raises(ValueError) as info:
        Ring(slots, shape, dtype)
    assert "empty frame" not in str(info.value)


def test_frames_are_64_byte_aligned_and_zero_copy():
    ring = Ring(3, 5, "uint8")               # 5-byte frames, stride rounded up to 64
    addresses = []
    for i in range(3):
        with ring.reserve() as frame:
            addresses.append(frame.ctypes.data)
            frame[:] = i
    assert all(a % 64 == 0 for a in addresses)
    assert len(set(addresses)) == 3
    for i in range(3):
        with ring.recv_view() as view:
            # the reader sees the very memory the writer filled
            assert view.ctypes.data == addresses[i]
            _assert_frame(view, ring, i)


# -- reserve / commit / abort ---------------------------------------------------------------------

def test_reserve_gives_a_writable_view_that_commit_publishes():
    ring = Ring(2, (2, 3), "float64")
    with ring.reserve() as frame:
        assert isinstance(frame, np.ndarray)
        assert frame.shape == (2, 3) and frame.dtype == np.float64
        assert frame.flags.writeable and frame.flags.c_contiguous
        assert ring.qsize() == 0            # nothing published yet
        frame[:] = [[1, 2, 3], [4, 5, 6]]
    assert ring.qsize() == 1
    got = ring.recv()
    assert got.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_the_view_is_dead_after_commit():
    ring = Ring(2, 4, "int32")
    with ring.reserve() as frame:
        frame[:] = 1
    assert not frame.flags.writeable
    with pytest.raises(ValueError):
        frame[0] = 2
    with pytest.raises(ValueError):
        frame.fill(3)
    assert ring.recv().tolist() == [1, 1, 1, 1]


def test_an_exception_inside_reserve_abandons_the_frame():
    ring = Ring(2, 4, "int32")
    with pytest.raises(ZeroDivisionError):
        with ring.reserve() as frame:
            frame[:] = 7
            1 / 0
    assert ring.qsize() == 0 and ring.empty()
    assert not frame.flags.writeable
    with pytest.raises(queue.Empty):
        ring.recv(block=False)
    # The slot is free again and nothing of the abandoned frame shows.
    ring.send(np.full(4, 3, dtype=np.int32))
    assert ring.recv().tolist() == [3, 3, 3, 3]
    assert ring.empty()


def test_a_keyboard_interrupt_inside_reserve_abandons_the_frame():
    ring = Ring(1, 4, "int32")
    with pytest.raises(KeyboardInterrupt):
        with ring.reserve() as frame:
            frame[:] = 7
            raise KeyboardInterrupt
    assert ring.empty()
    with ring.reserve() as frame:       # the one slot is free again
        frame[:] = 1
    assert ring.recv().tolist() == [1, 1, 1, 1]


def test_explicit_commit_and_abort():
    ring = Ring(4, 3, "int16")
    res = ring.reserve()
    with res as frame:
        frame[:] = 5
        res.commit()
        assert ring.qsize() == 1
    assert ring.qsize() == 1            # the with block's exit does not publish twice
    res = ring.reserve()
    with res as frame:
        frame[:] = 6
        res.abort()
    assert ring.qsize() == 1
    assert ring.recv().tolist() == [5, 5, 5]
    assert ring.empty()


def test_a_second_commit_or_abort_is_refused():
    ring = Ring(4, 3, "int16")
    res = ring.reserve()
    res.commit()
    for call in (res.commit, res.abort):
        with pytest.raises(RuntimeError):
            call()
    res = ring.reserve()
    res.abort()
    for call in (res.commit, res.abort):
        with pytest.raises(RuntimeError):
            call()
    assert ring.qsize() == 1


def test_only_one_open_reservation_per_handle():
    ring = Ring(4, 3, "int16")
    res = ring.reserve()
    with pytest.raises(RuntimeError):
        ring.reserve()
    res.abort()
    with ring.reserve() as frame:       # the slot is free again
        frame[:] = 2
    res = ring.reserve()
    with pytest.raises(RuntimeError):
        ring.reserve(block=False)
    with res as frame:
        frame[:] = 3
    assert [ring.recv().tolist() for _ in range(2)] == [[2, 2, 2], [3, 3, 3]]


def test_reserve_on_a_full_ring_times_out():
    ring = Ring(2, 3, "float32")
    ring.send(frame_of(ring, 1))
    ring.send(frame_of(ring, 2))
    assert ring.full() and ring.qsize() == 2
    with pytest.raises(queue.Full):
        ring.reserve(block=False)
    with pytest.raises(queue.Full):
        ring.reserve(timeout=0)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        ring.reserve(timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 1.0
    # a timed-out reserve holds nothing open
    _assert_frame(ring.recv(), ring, 1)
    with ring.reserve(block=False) as frame:
        frame[:] = 3
    _assert_frame(ring.recv(), ring, 2)
    _assert_frame(ring.recv(), ring, 3)


def test_a_view_kept_after_commit_never_writes_into_a_later_frame():
    ring = Ring(1, 4, "int32")                 # one slot: every frame reuses it
    with ring.reserve() as first:
        first[:] = 1
    assert ring.recv().tolist() == [1, 1, 1, 1]
    with ring.reserve() as second:
        assert second.flags.writeable
        assert not first.flags.writeable       # the old view stays dead
        with pytest.raises(ValueError):
            first[0] = 9
        second[:] = 2
    assert ring.recv().tolist() == [2, 2, 2, 2]


def test_a_recv_view_cannot_be_made_writable():
    ring = Ring(2, 4, "int32")
    ring.send(frame_of(ring, 1))
    with ring.recv_view() as view:
        with pytest.raises(ValueError):
            view.flags.writeable = True
        with pytest.raises(ValueError):
            np.copyto(view, 5)
    ring.send(frame_of(ring, 2))
    with ring.recv_view() as again:
        _assert_frame(again, ring, 2)


def test_stale_reservation_and_frame_objects_do_not_touch_newer_ones():
    ring = Ring(4, 2, "int32")
    first = ring.reserve()
    first.commit()
    second = ring.reserve()                    # open
    with pytest.raises(RuntimeError):
        first.abort()                          # the old one is finished: refused...
    assert ring.qsize() == 1                   # ...and the new one still open
    with second as frame:
        frame[:] = 2
    assert ring.qsize() == 2
    old = ring.recv_view()
    old.release()
    new = ring.recv_view()
    old.release()                              # idempotent, and not the new frame's
    assert ring.qsize() == 1
    with pytest.raises(RuntimeError):
        ring.recv_view(block=False)            # the new one is still open
    with new as view:
        _assert_frame(view, ring, 2)
    assert ring.empty()


def test_views_outlive_the_ring_handle_safely():
    import gc
    ring = Ring(2, 1024, "float64")
    with ring.reserve() as written:
        written[:] = 1.5
    kept = ring.recv_view()
    with kept as view:
        pass
    del ring, kept
    gc.collect()
    # The memory stays mapped while a view refers to it (reads only: the
    # views are dead, not dangling).
    assert float(written.sum()) == 1536.0 and float(view.sum()) == 1536.0


# -- send -----------------------------------------------------------------------------------------

def test_send_takes_any_strides():
    ring = Ring(8, (3, 4), "int64")
    base = np.arange(48, dtype=np.int64).reshape(6, 8)
    frames = [base[::2, ::2],                       # strided
              np.asfortranarray(base[:3, :4]),      # Fortran order
              base[:4, :3].T,                       # transposed
              base[3:, 4:],                         # offset, row stride 8
              np.arange(12, dtype=np.int64).reshape(3, 4)]
    for frame in frames:
        ring.send(frame)
    for frame in frames:
        got = ring.recv()
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, frame)


def test_send_takes_any_buffer_of_the_right_shape_and_format():
    ring = Ring(4, (2, 3), "float32")
    raw = array.array("f", [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    ring.send(memoryview(raw).cast("B").cast("f", (2, 3)))
    assert ring.recv().tolist() == [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]]
    flat = Ring(4, 6, "float64")
    flat.send(array.array("d", range(6)))
    assert flat.recv().tolist() == [0, 1, 2, 3, 4, 5]
    raw_bytes = Ring(2, 4, "uint8")
    raw_bytes.send(b"\x01\x02\x03\x04")
    raw_bytes.send(bytearray(b"abcd"))
    assert raw_bytes.recv().tobytes() == b"\x01\x02\x03\x04"
    assert raw_bytes.recv().tobytes() == b"abcd"


@pytest.mark.parametrize("frame", [np.zeros((3, 2), "f4"), np.zeros(6, "f4"),
                                   np.zeros((2, 3, 1), "f4"), np.zeros((2, 4), "f4"),
                                   np.float32(1.0)],
                         ids=["transposed", "flat", "extra-dim", "longer", "scalar"])
def test_send_of_the_wrong_shape_is_a_value_error_naming_both(frame):
    ring = Ring(2, (2, 3), "float32")
    with pytest.raises(ValueError, match=re.escape("(2, 3)")) as info:
        ring.send(frame)
    assert str(np.shape(frame)) in str(info.value)
    assert ring.empty()


@pytest.mark.parametrize("dtype", ["float64", "int32", "float16", ">f4", "uint32"])
def test_send_of_the_wrong_dtype_is_a_type_error_naming_both(dtype):
    ring = Ring(2, (2, 3), "float32")
    frame = np.ones((2, 3), dtype=dtype)
    with pytest.raises(TypeError) as info:
        ring.send(frame)
    text = str(info.value)
    assert "float32" in text or "<f4" in text or "'f'" in text
    named = np.dtype(dtype)
    assert str(named) in text or named.str in text or named.char in text
    assert ring.empty()


def test_send_of_a_buffer_of_another_format_is_a_type_error():
    ring = Ring(2, 6, "float32")
    with pytest.raises(TypeError):
        ring.send(array.array("d", range(6)))        # float64, no casting
    with pytest.raises(TypeError):
        ring.send(array.array("i", range(6)))        # same size, other type
    assert ring.empty()


def test_send_of_something_that_is_no_buffer_is_a_type_error():
    ring = Ring(2, 3, "float64")
    for bad in (None, 3.0, object(), "abc"):
        with pytest.raises(TypeError):
            ring.send(bad)
    assert ring.empty()


def test_send_on_a_full_ring_times_out():
    ring = Ring(1, 3, "float64")
    ring.send(frame_of(ring, 1))
    with pytest.raises(queue.Full):
        ring.send(frame_of(ring, 2), block=False)
    with pytest.raises(queue.Full):
        ring.send(frame_of(ring, 2), True, -1)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        ring.send(frame_of(ring, 2), timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 1.0
    _assert_frame(ring.recv(), ring, 1)
    assert ring.empty()


def test_bad_timeouts_are_refused():
    ring = Ring(2, 3, "float64")
    ring.send(frame_of(ring, 1))
    with pytest.raises(TypeError):
        ring.recv(timeout="soon")
    with pytest.raises(ValueError):
        ring.send(frame_of(ring, 2), timeout=float("nan"))
    with pytest.raises(ValueError):
        ring.reserve(timeout=float("nan"))
    _assert_frame(ring.recv(), ring, 1)
    assert ring.empty()


# -- recv / recv_into / recv_view -----------------------------------------------------------------

def test_recv_returns_a_new_array_each_time():
    ring = Ring(1, (2, 2), "int32")
    ring.send(frame_of(ring, 1))
    first = ring.recv()
    assert first.flags.writeable and first.flags.c_contiguous
    first[:] = 99                      # it is the caller's: no effect on the ring
    ring.send(frame_of(ring, 2))         # the one slot is reused
    _assert_frame(first, ring, 99)
    second = ring.recv()
    _assert_frame(second, ring, 2)
    assert not np.shares_memory(first, second)


def test_recv_on_an_empty_ring_times_out():
    ring = Ring(2, 3, "float64")
    out = np.zeros(3)
    for call in (lambda **kw: ring.recv(**kw), lambda **kw: ring.recv_into(out, **kw),
                 lambda **kw: ring.recv_view(**kw)):
        with pytest.raises(queue.Empty):
            call(block=False)
        with pytest.raises(queue.Empty):
            call(timeout=0)
        started = time.monotonic()
        with pytest.raises(queue.Empty):
            call(timeout=0.05)
        assert 0.05 <= time.monotonic() - started < 1.0


def test_recv_into_fills_any_writable_array_of_the_right_shape():
    ring = Ring(4, (2, 3), "int64")
    for i in range(3):
        ring.send(frame_of(ring, i))
    out = np.full((2, 3), -1, dtype=np.int64)
    assert ring.recv_into(out) is None
    _assert_frame(out, ring, 0)
    big = np.full((4, 6), -1, dtype=np.int64)
    ring.recv_into(big[::2, ::2])                     # strided: "same checks as send"
    assert (big[::2, ::2] == 1).all() and (big[1::2] == -1).all()
    raw = bytearray(48)
    ring.recv_into(memoryview(raw).cast("q", (2, 3)))
    assert array.array("q", raw).tolist() == [2] * 6
    assert ring.empty()


@pytest.mark.parametrize("out, error", [
    (np.zeros((3, 2), np.int64), ValueError),
    (np.zeros(6, np.int64), ValueError),
    (np.zeros((2, 3), np.int32), TypeError),
    (np.zeros((2, 3), np.float64), TypeError),
    (np.zeros((2, 3), np.uint64), TypeError),
    (bytearray(48), (TypeError, ValueError)),          # format B, not q
], ids=["transposed", "flat", "int32", "float64", "uint64", "bytearray"])
def test_recv_into_a_mismatched_buffer_takes_nothing(out, error):
    ring = Ring(2, (2, 3), "int64")
    ring.send(frame_of(ring, 4))
    with pytest.raises(error):
        ring.recv_into(out)
    assert ring.qsize() == 1
    _assert_frame(ring.recv(), ring, 4)


def test_recv_into_a_read_only_buffer_takes_nothing():
    ring = Ring(2, 3, "uint8")
    ring.send(np.array([1, 2, 3], np.uint8))
    readonly = np.zeros(3, np.uint8)
    readonly.flags.writeable = False
    for out in (readonly, b"\0\0\0"):
        with pytest.raises((TypeError, ValueError)):
            ring.recv_into(out)
    assert ring.qsize() == 1
    assert ring.recv().tolist() == [1, 2, 3]


def test_recv_view_is_read_only_and_releases_the_slot_on_exit():
    ring = Ring(1, 4, "float32")
    ring.send(frame_of(ring, 2.5))
    with ring.recv_view() as view:
        assert isinstance(view, np.ndarray)
        assert view.shape == (4,) and view.dtype == np.float32
        assert not view.flags.writeable
        with pytest.raises(ValueError):
            view[0] = 1
        assert (view == 2.5).all()
        # still held: the writer cannot have the slot yet
        with pytest.raises(queue.Full):
            ring.send(frame_of(ring, 3), block=False)
    assert ring.empty()
    assert not view.flags.writeable                 # stays read-only after release
    ring.send(frame_of(ring, 3), block=False)
    _assert_frame(ring.recv(), ring, 3)


def test_explicit_release_and_one_open_view_per_handle():
    ring = Ring(4, 2, "int8")
    for i in range(3):
        ring.send(frame_of(ring, i))
    frame = ring.recv_view()
    with pytest.raises(RuntimeError):
        ring.recv_view()
    with frame as view:
        _assert_frame(view, ring, 0)
        frame.release()
        assert ring.qsize() == 2
    assert ring.qsize() == 2             # exiting after release frees nothing more
    with ring.recv_view() as view:
        _assert_frame(view, ring, 1)
    _assert_frame(ring.recv(), ring, 2)


def test_an_exception_inside_recv_view_still_releases_the_slot():
    ring = Ring(2, 2, "int8")
    ring.send(frame_of(ring, 1))
    ring.send(frame_of(ring, 2))
    with pytest.raises(ZeroDivisionError):
        with ring.recv_view() as view:
            _assert_frame(view, ring, 1)
            1 / 0
    assert ring.qsize() == 1
    _assert_frame(ring.recv(), ring, 2)


def test_queries_follow_the_frames():
    ring = Ring(3, 2, "int16")
    states = []
    for i in range(3):
        states.append((ring.qsize(), ring.empty(), ring.full()))
        ring.send(frame_of(ring, i))
    states.append((ring.qsize(), ring.empty(), ring.full()))
    assert states == [(0, True, False), (1, False, False), (2, False, False), (3, False, True)]
    res = ring.recv_view()
    assert ring.qsize() == 3           # a held view still occupies its slot
    res.release()
    assert ring.qsize() == 2


def test_wrap_around_keeps_every_frame_in_order():
    ring = Ring(3, (2, 5), "int64")
    out = np.zeros((2, 5), np.int64)
    sizes = [1, 2, 3, 2, 1, 3, 3, 1]
    sent = received = 0
    for round_ in range(300):
        for _ in range(sizes[round_ % len(sizes)]):
            if sent % 3 == 0:
                ring.send(frame_of(ring, sent))
            else:
                with ring.reserve() as frame:
                    frame[:] = sent
            sent += 1
        while received < sent:
            kind = (received + round_) % 3
            if kind == 0:
                _assert_frame(ring.recv(), ring, received)
            elif kind == 1:
                ring.recv_into(out)
                _assert_frame(out, ring, received)
            else:
                with ring.recv_view() as view:
                    _assert_frame(view, ring, received)
            received += 1
        assert ring.empty()
    assert sent == received > 500


def _every_call(ring, out, rounds):
    frame = np.zeros(ring.shape, ring.dtype)
    for i in range(rounds):
        ring.send(frame)
        with ring.reserve() as view:
            view[0] = i
        res = ring.reserve()
        res.commit()
        ring.recv()
        ring.recv_into(out)
        with ring.recv_view():
            pass


def test_no_python_memory_grows_per_frame():
    import gc
    import tracemalloc
    ring, out = Ring(4, 8, "int64"), np.zeros(8, np.int64)
    _every_call(ring, out, 100)                # caches warm
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _every_call(ring, out, 5000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024, f"{grown} bytes more after 5000 rounds"


# -- one writer, one reader -----------------------------------------------------------------------

def test_a_second_writer_thread_is_refused_naming_the_holder():
    ring = Ring(4, 2, "float64")
    ring.send(frame_of(ring, 1))
    for call in (lambda: ring.send(frame_of(ring, 2)), ring.reserve):
        _, error = run_in_thread(call)
        assert isinstance(error, RuntimeError), error
        assert str(os.getpid()) in str(error)
    assert ring.qsize() == 1


def test_a_second_reader_thread_is_refused_naming_the_holder():
    ring = Ring(4, 2, "float64")
    ring.send(frame_of(ring, 1))
    ring.send(frame_of(ring, 2))
    _assert_frame(ring.recv(), ring, 1)
    out = np.zeros(2)
    for call in (ring.recv, ring.recv_view, lambda: ring.recv_into(out)):
        _, error = run_in_thread(call)
        assert isinstance(error, RuntimeError), error
        assert str(os.getpid()) in str(error)
    _assert_frame(ring.recv(), ring, 2)


def _in_thread_that_ends(fn):
    """Run fn in a thread and return once that kernel thread is gone."""
    tids = []

    def run():
        tids.append(threading.get_native_id())
        fn()

    _, error = run_in_thread(run)
    assert error is None, error
    deadline = time.monotonic() + PATIENCE
    while os.path.exists(f"/proc/self/task/{tids[0]}"):
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_claim_whose_thread_has_ended_is_taken_over():
    ring = Ring(4, 2, "float64")
    _in_thread_that_ends(lambda: ring.send(frame_of(ring, 1)))
    _in_thread_that_ends(lambda: _assert_frame(ring.recv(), ring, 1))
    ring.send(frame_of(ring, 2))           # this thread takes both roles over
    _assert_frame(ring.recv(), ring, 2)


def _try_to_write(ring, results):
    try:
        ring.send(np.zeros(ring.shape, ring.dtype))
    except RuntimeError as exc:
        results.put(("refused", str(exc)))
    else:
        results.put(("sent", None))


def test_a_second_writer_process_is_refused(procs):
    ring = Ring(4, 2, "float64")
    ring.send(frame_of(ring, 1))           # the parent is the writer
    results = FORK.SimpleQueue()
    child = procs.start(FORK, _try_to_write, ring, results)
    outcome, text = results.get()
    procs.join(child)
    assert outcome == "refused"
    assert str(os.getpid()) in text
    assert ring.qsize() == 1


def _write_close_and_wait(ring, values, closed, finish):
    for value in values:
        ring.send(np.full(ring.shape, value, ring.dtype))
    ring.close()
    closed.set()
    wait_for(finish)


def test_a_closed_writer_is_replaced_and_its_frames_read_first(procs):
    ring = Ring(4, 2, "int32")
    closed, finish = FORK.Event(), FORK.Event()
    child = procs.start(FORK, _write_close_and_wait, ring, [1, 2], closed, finish)
    wait_for(closed)                        # alive, but closed
    _assert_frame(ring.recv(), ring, 1)
    ring.send(frame_of(ring, 3))           # the parent takes the writer role over
    _assert_frame(ring.recv(), ring, 2)
    _assert_frame(ring.recv(), ring, 3)
    finish.set()
    procs.join(child)


def _read_close_then_wait(ring, count, closed, finish):
    for _ in range(count):
        ring.recv()
    ring.close()
    closed.set()
    wait_for(finish)


def test_a_closed_reader_is_replaced_and_nothing_is_lost(procs):
    ring = Ring(4, 2, "int32")
    for i in range(3):
        ring.send(frame_of(ring, i))
    closed, finish = FORK.Event(), FORK.Event()
    child = procs.start(FORK, _read_close_then_wait, ring, 1, closed, finish)
    wait_for(closed)                              # alive, but closed
    _assert_frame(ring.recv(), ring, 1)         # the parent takes the reader role over
    _assert_frame(ring.recv(), ring, 2)
    finish.set()
    procs.join(child)


def _drop_inherited(box, close=False):
    import gc
    ring = box.pop()
    if close:
        ring.close()
    del ring
    gc.collect()


@pytest.mark.parametrize("close", [False, True], ids=["dropped", "closed"])
def test_a_child_dropping_an_inherited_handle_leaves_the_parents_claims(procs, close):
    ring = Ring(4, 2, "int32")
    ring.send(frame_of(ring, 1))                 # the parent is writer and reader
    _assert_frame(ring.recv(), ring, 1)
    procs.join(procs.start(FORK, _drop_inherited, [ring], close))
    with pytest.raises(queue.Empty):           # not EOF: the writer is still here
        ring.recv(timeout=0.01)
    _, error = run_in_thread(lambda: ring.send(frame_of(ring, 2)))
    assert isinstance(error, RuntimeError)      # and still holds its role


def _send_then_drop(box, values, dropped, finish):
    import gc
    ring = box.pop()            # the only reference left in this process
    for value in values:
        ring.send(np.full(ring.shape, value, ring.dtype))
    del ring
    gc.collect()
    dropped.set()
    wait_for(finish)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])   # a fork child keeps the
def test_dropping_the_writers_last_handle_is_eof(method, procs):    # parent's references
    ctx = multiprocessing.get_context(method)
    ring = Ring(4, 2, "int32")
    dropped, finish = ctx.Event(), ctx.Event()
    child = procs.start(ctx, _send_then_drop, [ring], [1, 2], dropped, finish)
    wait_for(dropped)                             # alive, but its handle is gone
    _assert_frame(ring.recv(), ring, 1)
    _assert_frame(ring.recv(), ring, 2)
    with pytest.raises(EOFError):
        ring.recv(timeout=PATIENCE)
    finish.set()
    procs.join(child)


def test_waiting_releases_the_gil():
    ring = Ring(2, 2, "int32")
    ring.send(frame_of(ring, 0))                 # this thread: writer
    waiter = Call(lambda: (ring.recv(), ring.recv(timeout=PATIENCE)))
    waiter.start()
    assert_spins_freely()                       # the waiter sleeps without the GIL
    ring.send(frame_of(ring, 1))
    result, error = waiter.outcome(PATIENCE)
    assert error is None
    _assert_frame(result[1], ring, 1)


def test_a_blocked_call_sleeps_instead_of_spinning():
    # A wait spins a few microseconds, then sleeps: 0.3 s of waiting costs
    # this thread almost no CPU (a spinning wait would cost ~0.3 s).
    ring = Ring(1, 4, "int64")
    ring.send(frame_of(ring, 0))
    reader = Ring(1, 4, "int64")
    for call in (lambda: ring.send(frame_of(ring, 1), timeout=0.3),
                 lambda: ring.reserve(timeout=0.3),
                 lambda: reader.recv(timeout=0.3)):
        started, cpu = time.monotonic(), time.thread_time()
        with pytest.raises((queue.Full, queue.Empty)):
            call()
        assert time.monotonic() - started >= 0.3
        assert time.thread_time() - cpu < 0.1


def _slow_echo(requests, replies, rounds):
    for _ in range(rounds):
        with requests.recv_view() as view:
            value = int(view[0])
        time.sleep(0.0002)          # longer than the spin: the parent goes to sleep
        replies.send(np.full(replies.shape, value + 1, replies.dtype))


def test_sleeping_waiters_are_always_woken(procs):
    # Each round trip makes the parent sleep in the futex (the echo answers
    # after its spin gave up): a lost wake-up would cost a whole 50 ms slice.
    requests, replies = Ring(2, 4, "int64"), Ring(2, 4, "int64")
    rounds = 200
    child = procs.start(FORK, _slow_echo, requests, replies, rounds)
    started = time.monotonic()
    for i in range(rounds):
        requests.send(frame_of(requests, i))
        _assert_frame(replies.recv(timeout=PATIENCE), replies, i + 1)
    elapsed = time.monotonic() - started
    procs.join(child)
    assert elapsed < rounds * 0.05 / 4, f"{rounds} round trips took {elapsed:.2f} s"


def _slow_reader(ring, n, results):
    bad = None
    for i in range(n):
        if i % 50 == 0:
            time.sleep(0.0005)      # lets the writer fill up and go to sleep
        frame = ring.recv()
        if not (frame == i).all():
            bad = f"frame {i}"
            break
    results.put(bad or "ok")


def test_a_writer_sleeping_on_a_full_ring_is_woken(procs):
    ring = Ring(4, 8, "int64")
    n = 4000
    results = FORK.SimpleQueue()
    child = procs.start(FORK, _slow_reader, ring, n, results)
    started = time.monotonic()
    for i in range(n):
        ring.send(frame_of(ring, i), timeout=PATIENCE)
    assert results.get() == "ok"
    assert time.monotonic() - started < 5
    procs.join(child)


def _stream_n(ring, n):
    for i in range(n):
        ring.send(np.full(ring.shape, i, ring.dtype))


def test_releasing_a_view_wakes_a_sleeping_writer(procs):
    # The writer finds the one slot held by a view for longer than its spin
    # and sleeps; each release must wake it (a lost wake-up costs 50 ms).
    ring = Ring(1, 8, "int64")
    rounds = 150
    child = procs.start(FORK, _stream_n, ring, rounds)
    started = time.monotonic()
    for i in range(rounds):
        with ring.recv_view(timeout=PATIENCE) as view:
            _assert_frame(view, ring, i)
            time.sleep(0.0002)
    elapsed = time.monotonic() - started
    procs.join(child)
    assert elapsed < rounds * 0.05 / 4, f"{rounds} frames took {elapsed:.2f} s"


# -- close ----------------------------------------------------------------------------------------

def test_a_closed_handle_refuses_everything():
    ring = Ring(4, 2, "float64")
    ring.send(frame_of(ring, 1))
    ring.close()
    ring.close()                          # twice is fine
    assert ring.closed
    out = np.zeros(2)
    for call in (lambda: ring.send(out), ring.reserve, ring.recv, ring.recv_view,
                 lambda: ring.recv_into(out), ring.qsize, ring.empty, ring.full,
                 lambda: pickle.dumps(ring)):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert ring.slots == 4 and ring.shape == (2,)


def test_writer_close_is_eof_after_the_committed_frames(procs):
    ring = Ring(4, 3, "int32")
    closed, finish = FORK.Event(), FORK.Event()
    child = procs.start(FORK, _write_close_and_wait, ring, [1, 2, 3], closed, finish)
    wait_for(closed)
    out = np.zeros(3, np.int32)
    _assert_frame(ring.recv(), ring, 1)
    ring.recv_into(out)
    _assert_frame(out, ring, 2)
    with ring.recv_view() as view:
        _assert_frame(view, ring, 3)
    started = time.monotonic()
    for call in (lambda: ring.recv(timeout=PATIENCE), lambda: ring.recv_into(out, block=False),
                 lambda: ring.recv_view(timeout=PATIENCE)):
        with pytest.raises(EOFError):
            call()
    assert time.monotonic() - started < 1.0
    finish.set()
    procs.join(child)


def _assert_writing_is_a_broken_pipe(ring, within):
    """The ring, its one frame 0 already read, has lost its reader: the two
    frames it still has room for may go in or be refused, but a send or
    reserve that would wait for room is a BrokenPipeError within `within` s."""
    try:                                  # room: either outcome is fine
        ring.send(frame_of(ring, 1))
        ring.send(frame_of(ring, 2))
    except BrokenPipeError:
        pass
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        ring.send(frame_of(ring, 3), timeout=PATIENCE)
    with pytest.raises(BrokenPipeError):
        ring.reserve(timeout=PATIENCE)
    assert time.monotonic() - started < within


def test_reader_close_is_a_broken_pipe_for_a_writer_finding_the_ring_full(procs):
    ring = Ring(2, 3, "int32")
    closed, finish = FORK.Event(), FORK.Event()
    ring.send(frame_of(ring, 0))
    child = procs.start(FORK, _read_close_then_wait, ring, 1, closed, finish)
    wait_for(closed)
    _assert_writing_is_a_broken_pipe(ring, within=1.0)
    finish.set()
    procs.join(child)


def _recv_one_then_until_eof(ring, ready, results):
    ring.recv()
    ready.set()
    put_how_recv_ended(ring.recv, results)


def test_close_wakes_a_blocked_reader(procs):
    ring = Ring(2, 3, "int32")
    ring.send(frame_of(ring, 0))            # the parent is the writer
    ready, results = FORK.Event(), FORK.SimpleQueue()
    child = procs.start(FORK, _recv_one_then_until_eof, ring, ready, results)
    wait_for(ready)
    wait_until_sleeping(child.pid)        # asleep in its second recv
    started = time.monotonic()
    ring.close()
    assert results.get() == "eof"
    assert time.monotonic() - started < 1.0
    procs.join(child)


# -- dead peers -----------------------------------------------------------------------------------

def _write_then_hang(ring, values, ready, never):
    for value in values:
        ring.send(np.full(ring.shape, value, ring.dtype))
    ready.set()
    never.wait(PATIENCE)


def _read_then_hang(ring, count, ready, never):
    for _ in range(count):
        ring.recv()
    ready.set()
    never.wait(PATIENCE)


def test_a_dead_writer_is_eof_once_its_frames_are_read(start_method, procs):
    ring = Ring(4, 3, "int64")
    ready, never = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _write_then_hang, ring, [1, 2], ready, never)
    wait_for(ready)
    _assert_frame(ring.recv(), ring, 1)
    sigkill(child)
    _assert_frame(ring.recv(), ring, 2)    # sent before the death: still delivered
    started = time.monotonic()
    with pytest.raises(EOFError):
        ring.recv(timeout=PATIENCE)
    with pytest.raises(EOFError):
        ring.recv_view(timeout=PATIENCE)
    assert time.monotonic() - started < 2.0
    ring.send(frame_of(ring, 3))              # the dead writer's claim is taken over
    _assert_frame(ring.recv(), ring, 3)


def test_a_reader_blocked_before_the_writer_dies_gets_eof(procs):
    ring = Ring(4, 3, "int64")
    ready, never = FORK.Event(), FORK.Event()
    child = procs.start(FORK, _write_then_hang, ring, [1], ready, never)
    wait_for(ready)
    _assert_frame(ring.recv(), ring, 1)
    killer = Call(sigkill, child)          # while this thread waits in recv
    killer.start()
    with pytest.raises(EOFError):
        ring.recv(timeout=PATIENCE)
    assert killer.outcome(PATIENCE) == (None, None)


def test_a_dead_reader_is_a_broken_pipe_for_a_blocked_writer(start_method, procs):
    ring = Ring(2, 3, "int64")
    ready, never = start_method.Event(), start_method.Event()
    ring.send(frame_of(ring, 0))
    child = procs.start(start_method, _read_then_hang, ring, 1, ready, never)
    wait_for(ready)
    sigkill(child)
    _assert_writing_is_a_broken_pipe(ring, within=2.0)


def test_a_writer_blocked_before_the_reader_dies_gets_a_broken_pipe(procs):
    ring = Ring(1, 3, "int64")
    ready, never = FORK.Event(), FORK.Event()
    ring.send(frame_of(ring, 0))
    child = procs.start(FORK, _read_then_hang, ring, 1, ready, never)
    wait_for(ready)
    ring.send(frame_of(ring, 1))              # full again
    killer = Call(sigkill, child)          # while this thread waits in send
    killer.start()
    with pytest.raises(BrokenPipeError):
        ring.send(frame_of(ring, 2), timeout=PATIENCE)
    assert killer.outcome(PATIENCE) == (None, None)


def _hold_a_view(ring, skip, ready, seen, never):
    for _ in range(skip):
        ring.recv()
    view = ring.recv_view().__enter__()
    seen.put(int(np.asarray(view).ravel()[0]))
    ready.set()
    never.wait(PATIENCE)


def test_a_reader_killed_holding_a_view_leaves_that_frame_to_the_next_reader(start_method, procs):
    ring = Ring(3, (4, 4), "int32")
    for i in range(3):
        ring.send(frame_of(ring, i))
    ready, never = start_method.Event(), start_method.Event()
    seen = start_method.SimpleQueue()
    child = procs.start(start_method, _hold_a_view, ring, 1, ready, seen, never)
    wait_for(ready)
    assert seen.get() == 1
    assert ring.qsize() == 2              # the viewed frame still occupies its slot
    _, error = run_in_thread(ring.recv)    # its claim is live: refused
    assert isinstance(error, RuntimeError) and str(child.pid) in str(error)
    sigkill(child)
    _assert_frame(ring.recv(timeout=PATIENCE), ring, 1)   # the viewed frame, again
    _assert_frame(ring.recv(), ring, 2)
    ring.send(frame_of(ring, 3))
    _assert_frame(ring.recv(), ring, 3)
    assert ring.empty()


def _die_inside_reserve(ring, committed, ready, never):
    for value in committed:
        with ring.reserve() as frame:
            frame[...] = value
    res = ring.reserve()
    with res as frame:
        frame[...] = -1                     # half written and never committed
        ready.set()
        never.wait(PATIENCE)


def test_a_writer_killed_inside_reserve_published_nothing(start_method, procs):
    ring = Ring(3, (8, 8), "int64")
    ready, never = start_method.Event(), start_method.Event()
    child = procs.start(start_method, _die_inside_reserve, ring, [1, 2], ready, never)
    wait_for(ready)
    sigkill(child)
    _assert_frame(ring.recv(timeout=PATIENCE), ring, 1)
    _assert_frame(ring.recv(timeout=PATIENCE), ring, 2)
    with pytest.raises(EOFError):
        ring.recv(timeout=PATIENCE)
    # A new writer claims the ring and goes on, in every slot.
    for i in range(3, 9):
        with ring.reserve(timeout=PATIENCE) as frame:
            frame[...] = i
        _assert_frame(ring.recv(), ring, i)
    assert ring.empty()


_BUSY_BUT_NEVER_WAITING = """
    import sys
    import numpy as np
    from fastmp._typed_ring import Ring
    ring = Ring(4, 8, "int64")
    frame = np.zeros(8, np.int64)
    for i in range(int(sys.argv[1])):
        ring.send(frame)
        with ring.reserve() as f:
            f[0] = i
        ring.recv()
        with ring.recv_view():
            pass
    """


def test_no_futex_calls_while_nobody_sleeps(tmp_path):
    # Thousands of frames through the ring with nobody ever waiting: the
    # number of futex system calls must not grow with them (no FUTEX_WAKE
    # when nobody sleeps); a few come from the interpreter and NumPy.
    assert_futex_calls_do_not_grow(tmp_path, _BUSY_BUT_NEVER_WAITING)


_AFTER_A_SLEEPER_DIED = """
    import multiprocessing, os, queue, signal, sys, time
    import numpy as np
    from fastmp._typed_ring import Ring
    """ + ASLEEP_IN_A_FUTEX + """

    def reader(ring, w):
        os.write(w, b"s")
        ring.recv()                          # empty: sleeps until killed

    def writer(ring, w):
        for _ in range(ring.slots):
            ring.send(np.zeros(ring.shape, ring.dtype))
        os.write(w, b"s")
        ring.send(np.zeros(ring.shape, ring.dtype))   # full: sleeps until killed

    ring = Ring(4, 8, "int64")
    r, w = os.pipe()
    role = sys.argv[2]
    child = multiprocessing.get_context("fork").Process(
        target=reader if role == "reader" else writer, args=(ring, w))
    child.start()
    os.read(r, 1)
    asleep(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    try:
        while True:
            ring.recv(block=False)           # (role "writer": its frames, then EOF)
    except (queue.Empty, EOFError):
        pass
    frame = np.zeros(8, np.int64)
    for i in range(int(sys.argv[1])):        # this process takes the dead role over
        ring.send(frame)
        ring.recv()
    """


@pytest.mark.parametrize("role", ["reader", "writer"])
def test_a_peer_killed_asleep_does_not_cost_every_later_frame_a_wake(tmp_path, role):
    assert_futex_calls_do_not_grow(tmp_path, _AFTER_A_SLEEPER_DIED, role)


# -- Ctrl-C ---------------------------------------------------------------------------------------

_BLOCKED_CALLS = {
    "recv": "ring = Ring(2, 3); print('ready', flush=True); ring.recv()",
    "recv_into": ("import numpy\nring = Ring(2, 3); out = numpy.zeros(3, 'f4')\n"
                  "print('ready', flush=True); ring.recv_into(out)"),
    "recv_view": "ring = Ring(2, 3); print('ready', flush=True); ring.recv_view()",
    "send_full": ("import numpy\nring = Ring(1, 3); ring.send(numpy.zeros(3, 'f4'))\n"
                  "print('ready', flush=True); ring.send(numpy.zeros(3, 'f4'))"),
    "reserve_full": ("import numpy\nring = Ring(1, 3); ring.send(numpy.zeros(3, 'f4'))\n"
                     "print('ready', flush=True); ring.reserve()"),
}


@pytest.mark.parametrize("call", sorted(_BLOCKED_CALLS))
def test_ctrl_c_interrupts_a_blocked_call_promptly(call, tmp_path):
    code = "from fastmp._typed_ring import Ring\n" + _BLOCKED_CALLS[call]
    assert_ctrl_c_interrupts_promptly(code, tmp_path)


# -- pickling -------------------------------------------------------------------------------------

def _report_properties(ring, results):
    results.put((ring.slots, ring.shape, str(ring.dtype), ring.frame_bytes, ring.closed))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_child_sees_the_same_ring(method, procs):
    ctx = multiprocessing.get_context(method)
    ring = Ring(3, (2, 5), ">i2")
    results = ctx.SimpleQueue()
    procs.join(procs.start(ctx, _report_properties, ring, results))
    assert results.get() == (3, (2, 5), str(np.dtype(">i2")), 20, False)


def test_pickling_outside_process_start_is_refused():
    ring = Ring(2, 3)
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(ring)


# -- between processes ----------------------------------------------------------------------------

STREAM_SHAPE = (3, 7)        # 168 bytes: a stride of 192, frames not a power of two apart
STREAM_FRAMES = 3000


def _stream_out(ring, n):
    """Frame i is filled with i; reserve and send by turns."""
    for i in range(n):
        if i % 2:
            with ring.reserve() as frame:
                frame[...] = i
        else:
            ring.send(np.full(ring.shape, i, ring.dtype))
    ring.close()


def test_frames_from_a_child_arrive_whole_in_order_then_eof(start_method, procs):
    ring = Ring(5, STREAM_SHAPE, "int64")     # positions wrap at odd places
    child = procs.start(start_method, _stream_out, ring, STREAM_FRAMES)
    out = np.zeros(STREAM_SHAPE, np.int64)
    for i in range(STREAM_FRAMES):
        kind = i % 3
        if kind == 0:
            frame = ring.recv(timeout=PATIENCE)
            _assert_frame(frame, ring, i)
        elif kind == 1:
            ring.recv_into(out, timeout=PATIENCE)
            _assert_frame(out, ring, i)
        else:
            with ring.recv_view(timeout=PATIENCE) as view:
                _assert_frame(view, ring, i)
    with pytest.raises(EOFError):
        ring.recv(timeout=PATIENCE)
    procs.join(child)


def _stream_in(ring, n, results):
    out = np.zeros(ring.shape, ring.dtype)
    bad = None
    for i in range(n):
        if i % 2:
            with ring.recv_view() as view:
                ok = (view == i).all()
        else:
            ring.recv_into(out)
            ok = (out == i).all()
        if not ok:
            bad = f"frame {i} is not all {i}"
            break
    results.put(bad or "ok")


def test_frames_to_a_child_arrive_whole_in_order(start_method, procs):
    ring = Ring(2, STREAM_SHAPE, "int64")     # small: both sides block often
    results = start_method.SimpleQueue()
    child = procs.start(start_method, _stream_in, ring, STREAM_FRAMES, results)
    for i in range(STREAM_FRAMES):
        if i % 3:
            ring.send(frame_of(ring, i), timeout=PATIENCE)
        else:
            with ring.reserve(timeout=PATIENCE) as frame:
                frame[...] = i
    assert results.get() == "ok"
    assert ring.empty()
    procs.join(child)


def _count_up(ring, n):
    frame = np.zeros(1, np.int64)
    for i in range(n):
        frame[0] = i
        ring.send(frame)


def test_a_fast_stream_of_tiny_frames_keeps_order(procs):
    # Both sides rarely sleep: head and tail race each other constantly.
    ring = Ring(7, 1, "int64")
    n = 100_000
    child = procs.start(FORK, _count_up, ring, n)
    out = np.zeros(1, np.int64)
    for i in range(n):
        ring.recv_into(out, timeout=PATIENCE)
        if out[0] != i:
            pytest.fail(f"frame {i} holds {out[0]}")
    procs.join(child)


def test_large_frames_cross_intact(procs):
    ring = Ring(3, (256, 1024), "int32")      # 1 MiB frames
    child = procs.start(FORK, _stream_out, ring, 24)
    for i in range(24):
        with ring.recv_view(timeout=PATIENCE) as view:
            _assert_frame(view, ring, i)
    procs.join(child)


def _stream_forever(ring):
    i = 0
    while True:
        if i % 2:
            ring.send(np.full(ring.shape, i, ring.dtype))
        else:
            with ring.reserve() as frame:
                frame[...] = i
        i += 1


@pytest.mark.parametrize("kill_after", [1, 5, 17])
def test_a_writer_killed_mid_stream_leaves_only_whole_frames(procs, kill_after):
    # Wherever the SIGKILL lands (between frames, inside a copy or a
    # reservation), the reader gets whole consecutive frames, then EOF.
    ring = Ring(3, (256, 512), "int32")        # 512 KiB frames: long copies
    child = procs.start(FORK, _stream_forever, ring)
    for i in range(kill_after):
        _assert_frame(ring.recv(timeout=PATIENCE), ring, i)
    sigkill(child)
    i = kill_after
    while True:
        try:
            frame = ring.recv(timeout=PATIENCE)
        except EOFError:
            break
        _assert_frame(frame, ring, i)
        i += 1
    assert i <= kill_after + 3 + 1              # at most what the ring held, and one in flight


def test_no_descriptor_or_segment_outlives_the_ring(start_method, procs, leak_guard):
    ring = Ring(4, STREAM_SHAPE, "int64")
    results = start_method.SimpleQueue()
    child = procs.start(start_method, _stream_in, ring, 200, results)
    for i in range(200):
        ring.send(frame_of(ring, i), timeout=PATIENCE)
    assert results.get() == "ok"
    procs.join(child)
    results.close()
    ring.close()
    del ring, child
    leak_guard.check()


RECORD = np.dtype([("x", "<f4"), ("y", ">i2"), ("tag", "S3")])


def _send_records(ring, n):
    for i in range(n):
        frame = np.zeros(ring.shape, ring.dtype)
        frame["x"], frame["y"], frame["tag"] = i + 0.5, -i, b"ab%d" % (i % 10)
        ring.send(frame)
    ring.close()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_structured_dtype_travels_to_a_child_intact(method, procs):
    ring = Ring(2, (2, 3), RECORD)
    assert ring.dtype == RECORD and ring.frame_bytes == 6 * RECORD.itemsize
    child = procs.start(multiprocessing.get_context(method), _send_records, ring, 20)
    for i in range(20):
        frame = ring.recv(timeout=PATIENCE)
        assert frame.dtype == RECORD
        assert (frame["x"] == i + 0.5).all() and (frame["y"] == -i).all()
        assert (frame["tag"] == b"ab%d" % (i % 10)).all()
    with pytest.raises(EOFError):
        ring.recv(timeout=PATIENCE)
    procs.join(child)


def test_exported_by_fastmp():
    import fastmp
    assert fastmp.Ring is Ring
    assert "Ring" in fastmp.__all__


# -- NumPy: lazy, and optional --------------------------------------------------------------------

def test_importing_fastmp_does_not_import_numpy(tmp_path):
    out = fresh_python("""
        import sys
        import fastmp
        from fastmp import _typed_ring, _broadcast, _frames
        print("after import", "numpy" in sys.modules)
        ring = _typed_ring.Ring(2, 3)
        print("after use", "numpy" in sys.modules)
        """, tmp_path)
    assert out.split("\n")[:2] == ["after import False", "after use True"]


_WITHOUT_NUMPY = """
    import array, pickle, queue, sys
    sys.modules["numpy"] = None          # import numpy now raises ImportError
    from fastmp._typed_ring import Ring

    def expect(error, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except error:
            return
        raise AssertionError(f"{fn} did not raise {error}")

    ring = Ring(3, (2, 3), "d")
    assert ring.dtype == "d" and isinstance(ring.dtype, str), ring.dtype
    assert ring.shape == (2, 3) and ring.frame_bytes == 48
    for typecode in "bBhHiIlLqQefd?":
        assert Ring(1, 2, typecode).dtype == typecode
    # NumPy's names of the same types are read as their typecodes, so the
    # default dtype="float32" works without NumPy too
    assert Ring(1, 2).dtype == "f" and Ring(1, 2, "int64").dtype == "q"
    for bad in ("x", "O", "dd", "<d", "float128", 5, None):
        expect(TypeError, Ring, 1, 2, bad)
    expect(ValueError, Ring, 0, 2, "d")
    expect(ValueError, Ring, 1, 0, "d")

    # reserve: a writable memoryview cast to the typecode and shape
    with ring.reserve() as frame:
        assert isinstance(frame, memoryview) and not frame.readonly
        assert frame.format == "d" and frame.shape == (2, 3), (frame.format, frame.shape)
        for r in range(2):
            for c in range(3):
                frame[r, c] = r * 3 + c
    expect(ValueError, frame.tolist)             # released after commit
    expect(ValueError, lambda: frame[0, 0])

    res = ring.reserve()
    with res as frame:
        frame[0, 0] = 99.0
        res.abort()
    expect(ValueError, frame.tolist)

    # send: a buffer with the same format and shape, or flat of frame_bytes
    ring.send(memoryview(array.array("d", range(10, 16))).cast("B").cast("d", (2, 3)))
    ring.send(array.array("d", range(20, 26)))
    expect(ValueError, ring.send, array.array("d", range(5)))
    expect(TypeError, ring.send, array.array("f", range(6)))
    expect(TypeError, ring.send, array.array("q", range(6)))
    assert ring.qsize() == 3 and ring.full()
    expect(queue.Full, ring.send, array.array("d", range(6)), block=False)

    # recv: a memoryview over a new bytearray, cast to the typecode and shape
    got = ring.recv()
    assert isinstance(got, memoryview) and got.format == "d" and got.shape == (2, 3)
    assert isinstance(got.obj, bytearray)
    assert got.tolist() == [[0, 1, 2], [3, 4, 5]], got.tolist()
    got[0, 0] = -1.0                             # the caller's own copy

    # recv_view: read-only, released on exit
    with ring.recv_view() as view:
        assert isinstance(view, memoryview) and view.readonly
        assert view.tolist() == [[10, 11, 12], [13, 14, 15]]
    expect(ValueError, view.tolist)

    # recv_into: checked like send
    out = bytearray(48)
    expect(TypeError, ring.recv_into, memoryview(bytearray(24)).cast("f", (2, 3)))
    expect(ValueError, ring.recv_into, memoryview(bytearray(40)).cast("d"))
    ring.recv_into(memoryview(out).cast("d", (2, 3)))
    assert array.array("d", out).tolist() == [20, 21, 22, 23, 24, 25]
    expect(queue.Empty, ring.recv, block=False)

    # a child process gets the ring as a Process argument
    import multiprocessing
    def child(r):
        with r.reserve() as f:
            f[1, 2] = 42.0
        r.close()
    ring = Ring(2, (2, 3), "d")                  # this process is only its reader
    p = multiprocessing.get_context("fork").Process(target=child, args=(ring,))
    p.start(); p.join()
    assert p.exitcode == 0
    assert ring.recv(timeout=5).tolist()[1][2] == 42.0
    expect(EOFError, ring.recv, timeout=5)
    assert "numpy" not in sys.modules or sys.modules["numpy"] is None
    print("ok")
    """


def test_without_numpy_frames_are_memoryviews(tmp_path):
    assert fresh_python(_WITHOUT_NUMPY, tmp_path).strip() == "ok"
