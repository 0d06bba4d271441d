"""Stateful (hypothesis RuleBasedStateMachine) tests of fastmp.Ring and
fastmp.Broadcast, in one process.

RingMachine: a Ring against a deque of frames (one handle is both writer
and reader).

Every frame is filled with one serial number, so a lost, repeated,
reordered or torn frame shows up as a mismatch.  The rules mix every writer
call (send, reserve + commit / abort / an exception inside the block,
nowait or timeout=0) with every reader call (recv, recv_into, recv_view
held across other steps), and the one-open-reservation / one-open-view
rules.  qsize/empty/full are checked after every step: a frame held in
recv_view still occupies its slot, a reserved one is not yet published.

BroadcastMachine: a Broadcast ("block" or "skip") with up to three
subscribers against a model of the writer's tail and each cursor (see its
docstring).

derandomize=True: a CI run is reproducible.
"""
import collections
import itertools
import queue

import pytest

hypothesis = pytest.importorskip("hypothesis")
np = pytest.importorskip("numpy")
from hypothesis import HealthCheck, event, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine, initialize, invariant, precondition, rule)
from frames_support import frame_of, value_of  # noqa: E402  (needs NumPy)

try:
    from fastmp._broadcast import Broadcast
    from fastmp._frames import FrameOverwritten
    from fastmp._typed_ring import Ring
except ImportError:
    Ring = Broadcast = None

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(Ring is None or Broadcast is None,
                                 reason="fastmp._typed_ring or fastmp._broadcast is not built")]


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


# --------------------------------------------------------------------------- Broadcast

class _ModelSubscriber:
    def __init__(self, handle, position):
        self.handle = handle
        self.position = position      # next frame it takes
        self.skipped = 0
        self.view = None              # (Frame, view, position) while one is open


class BroadcastMachine(RuleBasedStateMachine):
    """Broadcast in one process against a model of the writer's tail and
    each subscriber's cursor.  Frame p is filled with p.

    block: the writer may take position t only if every subscriber has
    t - position < slots (a held view keeps its position); nothing is ever
    skipped.  skip: the writer never waits; frame p is whole while
    tail - slots <= p < tail, except that a reservation abandoned at the
    tail destroyed the frame whose slot it wrote (tail - slots); a cursor on
    a lost frame jumps to max(p + 1, tail - slots), counting what it passed;
    a view of frame p is torn once any position >= p + slots was reserved."""

    def __init__(self):
        super().__init__()
        self.bc = None
        self.tail = 0
        self.highest_reserved = -1
        self.dirty_tail = False       # skip: a reservation was abandoned at `tail`
        self.live = []

    @initialize(slots=st.integers(1, 4), policy=st.sampled_from(["block", "skip"]))
    def make(self, slots, policy):
        self.slots, self.policy = slots, policy
        self.bc = Broadcast(slots, (2, 3), "int64", max_readers=3, policy=policy)
        self._subscribe()

    def _subscribe(self):
        self.live.append(_ModelSubscriber(self.bc.subscribe(), self.tail))

    # -- writer ----------------------------------------------------------------------

    def _room(self):
        return self.policy == "skip" or all(self.tail - s.position < self.slots for s in self.live)

    @rule(how=st.sampled_from(["send", "commit", "abort", "exception"]),
          kw=st.sampled_from([dict(block=False), dict(timeout=0)]))
    def publish(self, how, kw):
        if not self._room():
            with pytest.raises(queue.Full):
                if how == "send":
                    self.bc.send(frame_of(self.bc, self.tail), **kw)
                else:
                    self.bc.reserve(**kw)
            return
        self.highest_reserved = max(self.highest_reserved, self.tail)
        if how == "send":
            self.bc.send(frame_of(self.bc, self.tail), **kw)
        elif how == "commit":
            with self.bc.reserve(**kw) as frame:
                frame[...] = self.tail
        elif how == "abort":
            res = self.bc.reserve(**kw)
            with res as frame:
                frame[...] = -1
                res.abort()
        else:
            try:
                with self.bc.reserve(**kw) as frame:
                    frame[...] = -1
                    raise _Abandon
            except _Abandon:
                pass
        if how in ("send", "commit"):
            self.tail += 1
            self.dirty_tail = False
        elif self.tail >= self.slots:
            self.dirty_tail = True

    @rule(n=st.integers(1, 6))
    def send_a_burst(self, n):
        """n frames as fast as the policy lets them go (laps views in skip mode)."""
        for _ in range(n):
            if not self._room():
                with pytest.raises(queue.Full):
                    self.bc.send(frame_of(self.bc, self.tail), block=False)
                return
            self.highest_reserved = max(self.highest_reserved, self.tail)
            self.bc.send(frame_of(self.bc, self.tail), block=False)
            self.tail += 1
            self.dirty_tail = False

    # -- subscribers -----------------------------------------------------------------

    @precondition(lambda self: len(self.live) < 3)
    @rule()
    def subscribe(self):
        self._subscribe()

    @precondition(lambda self: len(self.live) == 3)
    @rule()
    def a_fourth_subscriber_is_refused(self):
        with pytest.raises(RuntimeError):
            self.bc.subscribe()

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 2))
    def close(self, i):
        sub = self.live.pop(i % len(self.live))
        sub.handle.close()

    def _intact(self, p):
        if self.policy == "block":
            return True
        return (self.tail - self.slots <= p < self.tail
                and not (self.dirty_tail and p == self.tail - self.slots))

    def _take(self, sub):
        """The model's next frame for `sub` (None: nothing yet), skipping."""
        while sub.position < self.tail and not self._intact(sub.position):
            to = max(sub.position + 1, self.tail - self.slots)
            sub.skipped += to - sub.position
            sub.position = to
        return sub.position if sub.position < self.tail else None

    @precondition(lambda self: any(s.view is None for s in self.live))
    @rule(i=st.integers(0, 2), how=st.sampled_from(["recv", "recv_into", "view"]))
    def receive(self, i, how):
        ready = [s for s in self.live if s.view is None]
        sub = ready[i % len(ready)]
        want = self._take(sub)
        out = np.zeros((2, 3), np.int64)
        calls = {"recv": lambda: sub.handle.recv(block=False),
                 "recv_into": lambda: sub.handle.recv_into(out, block=False),
                 "view": lambda: sub.handle.recv_view(block=False)}
        if want is None:
            with pytest.raises(queue.Empty):
                calls[how]()
            assert sub.handle.skipped == sub.skipped
            return
        got = calls[how]()
        if how == "view":
            view = got.__enter__()
            assert value_of(view) == want
            sub.view = (got, view, want)
            return
        assert value_of(out if how == "recv_into" else got) == want
        sub.position += 1
        assert sub.handle.skipped == sub.skipped

    @precondition(lambda self: any(s.view is not None for s in self.live))
    @rule(i=st.integers(0, 2))
    def release_view(self, i):
        viewing = [s for s in self.live if s.view is not None]
        sub = viewing[i % len(viewing)]
        frame, view, p = sub.view
        sub.view = None
        torn = self.policy == "skip" and self.highest_reserved >= p + self.slots
        event(f"release_view: {self.policy}, {'torn' if torn else 'whole'}")
        if torn:
            with pytest.raises(FrameOverwritten):
                frame.release()
            sub.skipped += 1                   # the viewed frame counts as skipped; frames
            sub.position = p + 1               # lost after it are counted by the next receive
        else:
            assert value_of(view) == p           # nobody could have touched it
            frame.release()
            sub.position = p + 1

    @invariant()
    def cursors_match_the_model(self):
        for sub in self.live:
            if self.policy == "block":
                assert sub.handle.skipped == 0
                assert sub.handle.qsize() == self.tail - sub.position
            else:
                assert sub.handle.skipped >= sub.skipped
                assert sub.handle.qsize() <= self.slots

    def teardown(self):
        if self.bc is not None:
            if any(sub.skipped for sub in self.live):
                event(f"{self.policy}: a subscriber skipped frames")
            if self.dirty_tail:
                event(f"{self.policy}: ended on an abandoned reservation")
            for sub in self.live:
                sub.handle.close()
            self.bc.close()


BroadcastMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_broadcast_machine = BroadcastMachine.TestCase
