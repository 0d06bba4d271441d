"""Stateful (hypothesis RuleBasedStateMachine) test of fastmp.Ring against a
deque of frames, in one process (one handle is both writer and reader).

Every frame is filled with one serial number, so a lost, repeated,
reordered or torn frame shows up as a mismatch.  The rules mix every writer
call (send, reserve + commit / abort / an exception inside the block,
nowait or timeout=0) with every reader call (recv, recv_into, recv_view
held across other steps), and the one-open-reservation / one-open-view
rules.  qsize/empty/full are checked after every step: a frame held in
recv_view still occupies its slot, a reserved one is not yet published.

derandomize=True: a CI run is reproducible.
"""
import collections
import itertools
import queue

import pytest

hypothesis = pytest.importorskip("hypothesis")
np = pytest.importorskip("numpy")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine, initialize, invariant, precondition, rule)

try:
    from fastmp._typed_ring import Ring
except ImportError:
    Ring = None

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(Ring is None, reason="fastmp._typed_ring is not built")]


class _Abandon(Exception):
    """Raised inside a reserve block to abandon the frame."""


def nowait():
    """The two ways of asking not to wait."""
    return st.sampled_from([dict(block=False), dict(timeout=0)])


class RingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.ring = None
        self.model = collections.deque()     # values of published, unreleased frames
        self.serial = itertools.count(1)
        self.reservation = None               # (Reservation, view, value)
        self.viewed = None                    # (Frame, view, value): model[0]

    @initialize(slots=st.integers(1, 4),
                shape=st.sampled_from([(1,), (3,), (2, 3), (5, 7), (2, 1, 2)]),
                dtype=st.sampled_from(["int64", "float32", "int16", "float64"]))
    def make(self, slots, shape, dtype):
        self.ring = Ring(slots, shape, dtype)
        self.slots = slots

    # -- helpers ---------------------------------------------------------------------

    def frame(self, value):
        return np.full(self.ring.shape, value, self.ring.dtype)

    def check(self, got, value):
        assert got.shape == self.ring.shape and got.dtype == self.ring.dtype
        assert (np.asarray(got) == value).all(), f"want all {value}, got {np.asarray(got).ravel()}"

    def room(self):
        return len(self.model) < self.slots

    # -- writer ---------------------------------------------------------------------

    @precondition(lambda self: self.reservation is None)
    @rule(kw=nowait(), strided=st.booleans())
    def send(self, kw, strided):
        value = next(self.serial)
        frame = self.frame(value)
        if strided:
            frame = np.repeat(frame[..., None], 2, axis=-1)[..., 0]   # not contiguous
        if self.room():
            self.ring.send(frame, **kw)
            self.model.append(value)
        else:
            with pytest.raises(queue.Full):
                self.ring.send(frame, **kw)

    @precondition(lambda self: self.reservation is None)
    @rule(kw=nowait(), ending=st.sampled_from(["exit", "exception"]))
    def reserve_in_a_with_block(self, kw, ending):
        value = next(self.serial)
        if not self.room():
            with pytest.raises(queue.Full):
                self.ring.reserve(**kw)
            return
        try:
            with self.ring.reserve(**kw) as view:
                view[...] = value
                if ending == "exception":
                    raise _Abandon
        except _Abandon:
            pass
        else:
            self.model.append(value)
        assert not view.flags.writeable

    @precondition(lambda self: self.reservation is None)
    @rule(kw=nowait())
    def reserve_and_keep_open(self, kw):
        value = next(self.serial)
        if not self.room():
            with pytest.raises(queue.Full):
                self.ring.reserve(**kw)
            return
        res = self.ring.reserve(**kw)
        view = res.__enter__()
        assert view.flags.writeable
        view[...] = value
        self.reservation = (res, view, value)

    @precondition(lambda self: self.reservation is not None)
    @rule()
    def a_second_reservation_is_refused(self):
        with pytest.raises(RuntimeError):
            self.ring.reserve(block=False)

    @precondition(lambda self: self.reservation is not None)
    @rule(commit=st.booleans())
    def finish_the_reservation(self, commit):
        res, view, value = self.reservation
        self.reservation = None
        if commit:
            res.commit()
            self.model.append(value)
        else:
            res.abort()
        assert not view.flags.writeable
        with pytest.raises(RuntimeError):
            res.commit()

    # -- reader ---------------------------------------------------------------------

    @precondition(lambda self: self.viewed is None)
    @rule(kw=nowait())
    def recv(self, kw):
        if self.model:
            self.check(self.ring.recv(**kw), self.model.popleft())
        else:
            with pytest.raises(queue.Empty):
                self.ring.recv(**kw)

    @precondition(lambda self: self.viewed is None)
    @rule(kw=nowait(), strided=st.booleans())
    def recv_into(self, kw, strided):
        if strided:
            out = np.zeros(self.ring.shape + (2,), self.ring.dtype)[..., 1]
        else:
            out = np.zeros(self.ring.shape, self.ring.dtype)
        if self.model:
            self.ring.recv_into(out, **kw)
            self.check(out, self.model.popleft())
        else:
            with pytest.raises(queue.Empty):
                self.ring.recv_into(out, **kw)

    @precondition(lambda self: self.viewed is None)
    @rule(kw=nowait(), keep_open=st.booleans())
    def recv_view(self, kw, keep_open):
        if not self.model:
            with pytest.raises(queue.Empty):
                self.ring.recv_view(**kw)
            return
        frame = self.ring.recv_view(**kw)
        if keep_open:
            view = frame.__enter__()
            self.check(view, self.model[0])
            self.viewed = (frame, view, self.model[0])
        else:
            with frame as view:
                self.check(view, self.model[0])
                assert not view.flags.writeable
            self.model.popleft()

    @precondition(lambda self: self.viewed is not None)
    @rule()
    def a_second_view_is_refused(self):
        with pytest.raises(RuntimeError):
            self.ring.recv_view(block=False)

    @precondition(lambda self: self.viewed is not None)
    @rule()
    def release_the_view(self):
        frame, view, value = self.viewed
        self.check(view, value)               # the writer cannot have touched it
        self.viewed = None
        frame.release()
        assert self.model.popleft() == value
        frame.release()                       # again: nothing more

    # -- always ---------------------------------------------------------------------

    @invariant()
    def counts_match_the_model(self):
        if self.ring is None:
            return
        n = len(self.model)
        assert self.ring.qsize() == n
        assert self.ring.empty() == (n == 0)
        assert self.ring.full() == (n == self.slots)

    def teardown(self):
        if self.ring is not None:
            self.ring.close()


RingMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=50, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
test_ring_machine = RingMachine.TestCase
