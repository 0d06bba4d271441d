"""fastmp._segment.Segment: anonymous shared memory that cannot leak."""
import os
import pickle

import pytest

from fastmp._segment import Segment

pytestmark = pytest.mark.timeout(30)


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_segment_is_zeroed_and_sized():
    segment = Segment(4096)
    assert segment.size == 4096
    assert segment.address != 0


@pytest.mark.parametrize("size", [0, -1])
def test_segment_rejects_non_positive_size(size):
    with pytest.raises(ValueError, match="must be positive"):
        Segment(size)


def test_segment_rejects_absurd_size():
    with pytest.raises((OSError, MemoryError, OverflowError)):
        Segment(1 << 62)


def test_segment_leaves_nothing_in_dev_shm():
    before = set(os.listdir("/dev/shm"))
    segments = [Segment(1 << 16) for _ in range(8)]
    assert set(os.listdir("/dev/shm")) == before
    del segments


def test_segment_closes_its_descriptor_when_dropped():
    before = _open_fds()
    segment = Segment(1 << 16)
    assert len(_open_fds() - before) == 1
    del segment
    assert _open_fds() == before


def test_pickling_outside_process_start_is_refused():
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(Segment(4096))
