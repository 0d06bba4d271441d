"""Stateful (hypothesis RuleBasedStateMachine) tests of fastmp.Queue and
fastmp.Pipe against simple models (a deque per direction).

test_queue.py already runs a flat list of nowait operations against a deque.
The machines here go further:

* QueueMachine: blocking calls with timeouts, qsize/empty/full after every
  step, mixed payloads (bytes of many sizes, tuples, strings, NumPy arrays),
  messages near and above the ring's capacity (streamed while a reader
  thread drains them), close() and then a fresh queue.
* FeederQueueMachine: a ring too small for what the queue holds, so nowait
  puts are admitted and written later by the feeder thread.
* PipeMachine: every send/receive method on both directions of a duplex pipe
  and on a one-way pipe, poll, recv_bytes(maxlength) and recv_bytes_into
  limits, large streamed messages, and EOF/BrokenPipeError after one end
  closes.
* CrossProcessMachine: the other side is a forked child that acts only on
  commands sent over a control pipe (the standard library's, so the channel
  under test never carries its own control traffic): it relays queue items,
  echoes pipe messages and moves one-way pipe messages into a queue, up to
  EOF; each step is checked against the model, in both processes.

Every machine runs with derandomize=True, so a CI run is reproducible.
Timeouts on "this must arrive" calls are safety nets only (WAIT); the short
timeouts (SHORT) are only used where the model says the call must time out.
"""

import collections
import itertools
import multiprocessing
import pickle
import queue
import threading
import time

import pytest

import fastmp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine, initialize, invariant, precondition, rule)

try:
    import numpy as np
except ImportError:  # the array payloads are skipped without NumPy
    np = None

WAIT = 10.0     # safety net for "this must arrive"
SHORT = 0.01    # a timeout the model says must expire
CLOSE_AFTER = 15  # steps before a machine may close (closing ends a run's variety)

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------- payloads

# A payload is described by a spec (drawn by hypothesis) and built with a
# serial number, so every message is distinct and a reordering or a
# duplicate shows up as a mismatch.
_BYTE_SIZES = [0, 1, 7, 8, 9, 15, 16, 17, 100, 255, 256, 257, 1000]
_specs = [st.tuples(st.just("bytes"), st.sampled_from(_BYTE_SIZES)),
          st.tuples(st.just("tuple"), st.integers(0, 3)),
          st.tuples(st.just("str"), st.sampled_from([0, 1, 50, 300]))]
if np is not None:
    _specs.append(st.tuples(st.just("array"),
                            st.sampled_from(["float32", "float64", "int8", "uint16"]),
                            st.sampled_from([0, 1, 5, 64])))
specs = st.one_of(*_specs)


def build(spec, serial):
    kind = spec[0]
    if kind == "bytes":
        size = spec[1]
        head = serial.to_bytes(4, "little")
        body = (head * (size // 4 + 1))[:size]
        return body
    if kind == "tuple":
        return (serial, serial / 7.0, "obs") + tuple(range(spec[1]))
    if kind == "str":
        return f"{serial}:" + "é" * spec[1]
    _, dtype, n = spec
    return (np.arange(n, dtype="float64") * 3 + serial).astype(dtype)


def settle(q):
    """Wait until this process's feeder thread of `q` has written everything
    it buffered.  A streamed put whose reader is slow to start (a loaded
    machine) is buffered after ROOM_WAIT; later puts then queue up behind
    it in the feeder, and "everything put is in the ring" would hold only
    eventually.  (Reads a private counter: test-only.)"""
    deadline = time.monotonic() + WAIT
    while q._unflushed:
        assert time.monotonic() < deadline, "feeder never flushed"
        time.sleep(0.001)


def same(a, b):
    """Exact equality, including NumPy arrays (dtype, shape and contents)."""
    if np is not None and isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b))
    if isinstance(a, tuple):
        return (isinstance(b, tuple) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    return type(a) is type(b) and a == b


def assert_same(got, want):
    assert same(got, want), f"got {got!r}, model says {want!r}"


def assert_same_list(got, want):
    assert isinstance(got, list)
    assert len(got) == len(want), f"got {len(got)} messages, model says {len(want)}"
    for g, w in zip(got, want):
        assert_same(g, w)


# --------------------------------------------------------------------------- Queue, one process

class QueueMachine(RuleBasedStateMachine):
    """fastmp.Queue against a deque in one process.

    The ring (CAPACITY bytes) is big enough for every message the model can
    hold at once (at most MAX_HELD small messages), so only maxsize bounds
    the queue: Full and Empty must be raised exactly when the model says.
    Messages larger than the ring are only put while a reader thread is
    waiting for them (a streamed put needs a reader).  Now and then the queue
    is closed (every call then raises ValueError) and replaced by a new one."""

    CAPACITY = 32 * 1024
    MAX_HELD = 12

    def __init__(self):
        super().__init__()
        self.q = None
        self.model = collections.deque()
        self.serial = itertools.count()
        self.steps = 0

    @initialize(maxsize=st.sampled_from([0, 1, 2, 3, 6]))
    def make(self, maxsize):
        self.maxsize = maxsize
        self.q = fastmp.Queue(maxsize, capacity=self.CAPACITY)

    def teardown(self):
        if self.q is not None:
            self.q.close()

    def new(self, spec):
        return build(spec, next(self.serial))

    def is_full(self, extra=1):
        return self.maxsize > 0 and len(self.model) + extra > self.maxsize

    def room_in_ring(self, n=1):
        return len(self.model) + n <= self.MAX_HELD

    # -- puts -------------------------------------------------------------------

    @rule(spec=specs, how=st.sampled_from(["put", "put_nowait", "put_timeout"]))
    def put(self, spec, how):
        if not self.room_in_ring() and not self.is_full():
            return  # the byte bound, not maxsize, would decide: not modelled
        obj = self.new(spec)
        call = {"put": lambda: self.q.put(obj, timeout=SHORT),
                "put_nowait": lambda: self.q.put_nowait(obj),
                "put_timeout": lambda: self.q.put(obj, True, SHORT)}[how]
        if self.is_full():
            event("queue: put Full")
            with pytest.raises(queue.Full):
                call()
        else:
            call()
            self.model.append(obj)

    @rule(batch=st.lists(specs, max_size=5), how=st.sampled_from(["nowait", "timeout"]))
    def put_many(self, batch, how):
        objs = [self.new(s) for s in batch]
        call = (lambda: self.q.put_many_nowait(objs)) if how == "nowait" else \
            (lambda: self.q.put_many(objs, timeout=SHORT))
        if not objs:
            call()
        elif self.maxsize and len(objs) > self.maxsize:
            event("queue: put_many ValueError")
            with pytest.raises(ValueError):  # can never fit: not Full
                call()
        elif self.is_full(len(objs)):
            event("queue: put_many Full")
            with pytest.raises(queue.Full):
                call()
        elif not self.room_in_ring(len(objs)):
            return
        else:
            call()
            self.model.extend(objs)

    @precondition(lambda self: not self.model)
    @rule(size=st.sampled_from([CAPACITY - 16, CAPACITY, 3 * CAPACITY + 5]),
          how=st.sampled_from(["put", "put_many", "array"]))
    def put_larger_than_ring(self, size, how):
        """A message near or above the ring's capacity, drained by a reader
        thread: it goes through whole (streamed when it does not fit)."""
        serial = next(self.serial)
        if how == "array" and np is not None:
            obj = np.arange(size // 8, dtype="float64") + serial
        else:
            obj = build(("bytes", size), serial)
        got = []
        reader = threading.Thread(target=lambda: got.append(self.q.get(timeout=WAIT)))
        reader.start()
        try:
            if how == "put_many":
                self.q.put_many([obj])
            else:
                self.q.put(obj)
        finally:
            reader.join(WAIT + 5)
        assert not reader.is_alive()
        assert len(got) == 1
        assert_same(got[0], obj)
        settle(self.q)

    # -- gets -------------------------------------------------------------------

    @rule(how=st.sampled_from(["get", "get_nowait", "get_timeout"]))
    def get(self, how):
        call = {"get": lambda: self.q.get(timeout=WAIT if self.model else SHORT),
                "get_nowait": self.q.get_nowait,
                "get_timeout": lambda: self.q.get(True, SHORT if not self.model else WAIT)}[how]
        if not self.model:
            event("queue: get Empty")
            with pytest.raises(queue.Empty):
                call()
        else:
            assert_same(call(), self.model.popleft())

    @rule(k=st.integers(1, 8), how=st.sampled_from(["nowait", "timeout", "default"]))
    def get_many(self, k, how):
        if how == "nowait":
            call = lambda: self.q.get_many_nowait(max_messages_to_get=k)  # noqa: E731
        elif how == "timeout":
            call = lambda: self.q.get_many(timeout=SHORT, max_messages_to_get=k)  # noqa: E731
        else:
            call = lambda: self.q.get_many(timeout=SHORT)  # noqa: E731
            k = len(self.model)
        if not self.model:
            event("queue: get_many Empty")
            with pytest.raises(queue.Empty):
                call()
            return
        # One process, nothing buffered: every message put is in the ring,
        # so get_many takes exactly min(k, held).
        want = [self.model.popleft() for _ in range(min(k, len(self.model)))]
        assert_same_list(call(), want)

    # -- close ------------------------------------------------------------------

    # Close, check that every call then raises ValueError, and carry on
    # with a fresh queue of the same maxsize (and an empty model).
    @precondition(lambda self: self.steps >= CLOSE_AFTER)
    @rule()
    def close_and_reopen(self):
        self.q.close()
        self.q.close()      # twice is allowed
        for call in (lambda: self.q.put(b"x"), self.q.get_nowait,
                     lambda: self.q.put_many([1]), self.q.get_many_nowait,
                     lambda: self.q.get(timeout=SHORT)):
            with pytest.raises(ValueError):
                call()
        self.q = fastmp.Queue(self.maxsize, capacity=self.CAPACITY)
        self.model.clear()
        self.steps = 0

    # -- invariants -------------------------------------------------------------

    @invariant()
    def sizes_match_the_model(self):
        self.steps += 1
        if self.q is None:
            return
        assert self.q.qsize() == len(self.model)
        assert self.q.empty() == (not self.model)
        assert self.q.full() == (self.maxsize > 0 and len(self.model) >= self.maxsize)


QueueMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, **_SETTINGS)
test_queue_machine = QueueMachine.TestCase


class FeederQueueMachine(RuleBasedStateMachine):
    """fastmp.Queue whose ring (RING bytes) is too small for what the model
    holds: nowait puts that find no room are admitted against maxsize and
    written later by this process's feeder thread, messages larger than the
    ring stream, and blocking gets must still see everything in order.

    Exact here: FIFO order and contents, qsize() and full() (admitted
    messages count), Full exactly at maxsize, ValueError for a batch that
    can never fit.  Not exact (the feeder runs concurrently): empty() and how
    many messages one get_many returns (at least one, at most the limit)."""

    RING = 256

    def __init__(self):
        super().__init__()
        self.q = None
        self.model = collections.deque()
        self.serial = itertools.count()

    @initialize(maxsize=st.sampled_from([0, 3, 8]))
    def make(self, maxsize):
        self.maxsize = maxsize
        self.q = fastmp.Queue(maxsize, capacity=self.RING)

    def teardown(self):
        if self.q is not None:
            # Drain so this process's feeder has nothing left to write.
            while self.model:
                assert_same(self.q.get(timeout=WAIT), self.model.popleft())
            self.q.close()
            self.q.join_thread()

    def new(self, size):
        return build(("bytes", size), next(self.serial))

    @staticmethod
    def record_bytes(n):
        return 16 + (n + 7) // 8 * 8   # header + body padded to 8

    @rule(size=st.sampled_from([0, 8, 100, 200, 240, 241, 300, 1000]))
    def put_nowait(self, size):
        if self.maxsize == 0 and len(self.model) >= 16:
            return
        obj = self.new(size)
        if self.maxsize and len(self.model) >= self.maxsize:
            event("feeder: put Full")
            with pytest.raises(queue.Full):
                self.q.put_nowait(obj)
        else:
            self.q.put_nowait(obj)
            self.model.append(obj)

    @rule(sizes=st.lists(st.sampled_from([0, 8, 60, 100, 200, 300]), max_size=4))
    def put_many_nowait(self, sizes):
        if self.maxsize == 0 and len(self.model) >= 16:
            return
        objs = [self.new(n) for n in sizes]
        too_many = self.maxsize and len(objs) > self.maxsize
        too_big = len(objs) > 1 and sum(self.record_bytes(len(o)) for o in objs) > self.RING
        if not objs:
            self.q.put_many_nowait(objs)
        elif too_many or too_big:
            event("feeder: put_many ValueError")
            with pytest.raises(ValueError):
                self.q.put_many_nowait(objs)
        elif self.maxsize and len(self.model) + len(objs) > self.maxsize:
            event("feeder: put_many Full")
            with pytest.raises(queue.Full):
                self.q.put_many_nowait(objs)
        else:
            self.q.put_many_nowait(objs)
            self.model.extend(objs)

    @rule()
    def get(self):
        if not self.model:
            with pytest.raises(queue.Empty):
                self.q.get(timeout=SHORT)
            return
        assert_same(self.q.get(timeout=WAIT), self.model.popleft())

    @rule(k=st.integers(1, 6))
    def get_many(self, k):
        if not self.model:
            with pytest.raises(queue.Empty):
                self.q.get_many(timeout=SHORT, max_messages_to_get=k)
            return
        got = self.q.get_many(timeout=WAIT, max_messages_to_get=k)
        assert 1 <= len(got) <= min(k, len(self.model))
        assert_same_list(got, [self.model.popleft() for _ in got])

    @invariant()
    def counts_match_the_model(self):
        """qsize() reads two shared counters (written, admitted) without the
        lock, so while the feeder moves messages from one to the other a
        reading can be off for an instant (documented as approximate, as the
        standard library's): it must settle on the model's count."""
        if self.q is None:
            return
        full = self.maxsize > 0 and len(self.model) >= self.maxsize
        deadline = time.monotonic() + WAIT
        while (self.q.qsize(), self.q.full()) != (len(self.model), full):
            assert time.monotonic() < deadline, (
                f"qsize() {self.q.qsize()} / full() {self.q.full()} never settled on the "
                f"model's {len(self.model)} / {full}")
            time.sleep(0.001)
        if not self.model:
            assert self.q.empty()


FeederQueueMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                                **_SETTINGS)
test_feeder_queue_machine = FeederQueueMachine.TestCase


# --------------------------------------------------------------------------- Pipe, one process

class PipeMachine(RuleBasedStateMachine):
    """fastmp.Pipe (duplex and one-way) against one deque per direction.

    Messages sent with send_bytes are pickles (framed by junk that offset and
    size cut off), so every message can be read by every receive method:
    recv() unpickles raw bytes, and recv_bytes() of a send() is its pickle.
    The model keeps, per message, the object and (for send_bytes) the exact
    bytes, which fixes recv_bytes' and recv_bytes_into's length limits.
    A send blocks while its ring is full, so the model keeps each direction
    well under the ring's capacity; larger messages are sent only while a
    reader thread receives them."""

    CAPACITY = 8192
    BUDGET = 3000   # estimated bytes a direction may hold

    def __init__(self):
        super().__init__()
        self.serial = itertools.count()
        self.ends = ()
        self.steps = 0

    @invariant()
    def count_steps(self):
        self.steps += 1

    @initialize(duplex=st.booleans())
    def make(self, duplex):
        self.duplex = duplex
        self.open(duplex)

    def open(self, duplex):
        self.steps = 0
        a, b = fastmp.Pipe(duplex, capacity=self.CAPACITY)
        self.ends = (a, b)
        if duplex:
            # direction: (sender, receiver, model)
            self.dirs = [(a, b, collections.deque()), (b, a, collections.deque())]
        else:
            self.dirs = [(b, a, collections.deque())]   # Pipe(False) is (reader, writer)

    def teardown(self):
        for end in self.ends:
            end.close()

    def new(self, spec):
        return build(spec, next(self.serial))

    @staticmethod
    def cost(entry):
        obj, raw = entry
        if raw is not None:
            return len(raw) + 32
        if np is not None and isinstance(obj, np.ndarray):
            return obj.nbytes + 300
        return len(pickle.dumps(obj, protocol=5)) + 64

    def fits(self, model, entries):
        return sum(map(self.cost, model)) + sum(map(self.cost, entries)) <= self.BUDGET

    def direction(self, d):
        return self.dirs[d % len(self.dirs)]

    # -- sends ------------------------------------------------------------------

    @rule(d=st.integers(0, 1), spec=specs)
    def send(self, d, spec):
        sender, _, model = self.direction(d)
        entry = (self.new(spec), None)
        if self.fits(model, [entry]):
            sender.send(entry[0])
            model.append(entry)

    @rule(d=st.integers(0, 1), spec=specs, pad=st.tuples(st.integers(0, 9), st.integers(0, 9)),
          form=st.sampled_from(["bytes", "bytearray", "memoryview", "array"]))
    def send_bytes(self, d, spec, pad, form):
        sender, _, model = self.direction(d)
        obj = self.new(spec)
        raw = pickle.dumps(obj, protocol=5)
        entry = (obj, raw)
        if not self.fits(model, [entry]):
            return
        before, after = pad
        buf = b"\xee" * before + raw + b"\xdd" * after
        if form == "bytearray":
            buf = bytearray(buf)
        elif form == "memoryview":
            buf = memoryview(buf)
        elif form == "array" and np is not None:
            buf = np.frombuffer(buf, dtype="uint8").copy()
        if before == 0 and after == 0 and d % 2:
            sender.send_bytes(buf)
        elif after == 0 and d % 2:
            sender.send_bytes(buf, before)
        else:
            sender.send_bytes(buf, before, len(raw))
        model.append(entry)

    @rule(d=st.integers(0, 1), batch=st.lists(specs, max_size=6))
    def send_many(self, d, batch):
        sender, _, model = self.direction(d)
        entries = [(self.new(s), None) for s in batch]
        if self.fits(model, entries):
            sender.send_many([obj for obj, _ in entries])
            model.extend(entries)

    @rule(d=st.integers(0, 1), size=st.sampled_from([CAPACITY - 16, CAPACITY, 4 * CAPACITY + 3]),
          how=st.sampled_from(["send", "send_bytes", "array"]))
    def send_larger_than_ring(self, d, size, how):
        """Near or above the ring's capacity, with a reader thread draining
        the direction (it must be empty: the reader takes the first message)."""
        sender, receiver, model = self.direction(d)
        if model:
            return
        serial = next(self.serial)
        if how == "array" and np is not None:
            obj = np.arange(size // 8, dtype="float64") + serial
        else:
            obj = build(("bytes", size), serial)
        got = []
        recv = receiver.recv_bytes if how == "send_bytes" else receiver.recv
        reader = threading.Thread(target=lambda: got.append(recv()), daemon=True)
        reader.start()
        try:
            if how == "send_bytes":
                sender.send_bytes(obj)
            else:
                sender.send(obj)
        finally:
            reader.join(WAIT)
        assert not reader.is_alive(), "reader of a large message never returned"
        assert len(got) == 1
        assert_same(got[0], obj)

    # -- receives ---------------------------------------------------------------

    @rule(d=st.integers(0, 1))
    def recv(self, d):
        _, receiver, model = self.direction(d)
        if not model:
            assert receiver.poll() is False
            assert receiver.poll(SHORT) is False
            return
        assert receiver.poll() is True
        assert_same(receiver.recv(), model.popleft()[0])

    @rule(d=st.integers(0, 1), slack=st.sampled_from([None, -1, 0, 1, 1000, "zero"]))
    def recv_bytes(self, d, slack):
        _, receiver, model = self.direction(d)
        if not model:
            return
        obj, raw = model[0]
        if slack == "zero":
            # Every message is at least one byte (a pickle): too long for 0,
            # whatever it is; it stays in the pipe for the next receive.
            event("pipe: recv_bytes(0)")
            with pytest.raises(OSError):
                receiver.recv_bytes(0)
            assert receiver.poll() is True
            return
        if slack is None or raw is None:
            data = receiver.recv_bytes() if slack is None else receiver.recv_bytes(1 << 20)
        else:
            limit = len(raw) + slack
            if limit < 0:
                return
            if slack < 0:
                # Too long: OSError, and the message stays in the pipe.
                event("pipe: recv_bytes too long")
                with pytest.raises(OSError):
                    receiver.recv_bytes(limit)
                assert receiver.poll() is True
                return
            data = receiver.recv_bytes(limit)
            assert data == raw
        model.popleft()
        assert type(data) is bytes
        assert_same(pickle.loads(data), obj)

    @rule(d=st.integers(0, 1), offset=st.integers(0, 5), slack=st.sampled_from([-1, 0, 3]),
          form=st.sampled_from(["bytearray", "array"]))
    def recv_bytes_into(self, d, offset, slack, form):
        _, receiver, model = self.direction(d)
        if not model:
            return
        obj, raw = model[0]
        size = offset + (len(raw) + slack if raw is not None else 1 << 16)
        if size < offset:
            return
        if form == "array" and np is not None:
            buf = np.full(size, 0xAB, dtype="uint8")
        else:
            buf = bytearray(b"\xab" * size)
        if raw is not None and slack < 0:
            # Does not fit: BufferTooShort carries the whole message (taken).
            event("pipe: BufferTooShort")
            with pytest.raises(multiprocessing.BufferTooShort) as info:
                receiver.recv_bytes_into(buf, offset)
            assert info.value.args[0] == raw
            model.popleft()
            return
        n = receiver.recv_bytes_into(buf, offset)
        data = bytes(memoryview(buf)[offset:offset + n])
        assert bytes(memoryview(buf)[:offset]) == b"\xab" * offset
        assert bytes(memoryview(buf)[offset + n:]) == b"\xab" * (size - offset - n)
        if raw is not None:
            assert data == raw
        assert_same(pickle.loads(data), model.popleft()[0])

    @rule(d=st.integers(0, 1), k=st.integers(1, 8))
    def recv_many(self, d, k):
        _, receiver, model = self.direction(d)
        if not model:
            return  # recv_many blocks for the first message
        want = [model.popleft()[0] for _ in range(min(k, len(model)))]
        assert_same_list(receiver.recv_many(k), want)

    # -- close and EOF ----------------------------------------------------------

    @precondition(lambda self: self.steps >= CLOSE_AFTER)
    @rule(which=st.integers(0, 1), again=st.booleans())
    def close_one_end(self, which, again):
        """Close one end.  Its peer still receives what was sent to it, then
        EOFError (every time); a send towards the closed end raises
        BrokenPipeError; the closed end raises OSError for everything.  Then
        carry on with a fresh pipe of the same kind (empty models)."""
        closed = self.ends[which]
        peer = self.ends[1 - which]
        closed.close()
        assert closed.closed
        for call in (closed.poll, lambda: closed.send(1), closed.recv,
                     lambda: closed.send_bytes(b"x"), closed.recv_bytes):
            with pytest.raises(OSError):
                call()
        closed.close()      # twice is allowed
        for sender, receiver, model in self.dirs:
            if receiver is peer:
                while model:
                    assert receiver.poll() is True
                    assert_same(receiver.recv(), model.popleft()[0])
                for _ in range(2 if again else 1):
                    assert receiver.poll() is True   # EOF is readiness
                    with pytest.raises(EOFError):
                        receiver.recv()
                    with pytest.raises(EOFError):
                        receiver.recv_bytes()
                    with pytest.raises(EOFError):
                        receiver.recv_many()
            if sender is peer:
                for _ in range(2 if again else 1):
                    with pytest.raises(BrokenPipeError):
                        sender.send(b"into the void")
                    with pytest.raises(BrokenPipeError):
                        sender.send_bytes(b"into the void")
                    with pytest.raises(BrokenPipeError):
                        sender.send_many([1, 2])
        peer.close()
        self.open(self.duplex)


PipeMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, **_SETTINGS)
test_pipe_machine = PipeMachine.TestCase


# --------------------------------------------------------------------------- across processes

def _relay_child(control, q_in, q_out, conn, oneway, oneway_writer):
    """The other side of CrossProcessMachine: acts only on commands from
    `control` (a standard-library pipe) and answers each with ("ok", value)
    or ("err", text)."""
    # A forked child holds a copy of every parent handle: as with
    # multiprocessing's pipes, close the writer it must not keep alive.
    oneway_writer.close()
    while True:
        try:
            command, arg = control.recv()
        except EOFError:
            return
        try:
            if command == "stop":
                control.send(("ok", None))
                return
            if command == "relay":        # k items q_in -> q_out, one by one
                for _ in range(arg):
                    q_out.put(q_in.get(timeout=WAIT))
                value = None
            elif command == "relay_many":  # k items q_in -> q_out, in batches
                items = []
                while len(items) < arg:
                    items += q_in.get_many(timeout=WAIT, max_messages_to_get=arg - len(items))
                q_out.put_many(items)
                value = None
            elif command == "echo":       # k pipe messages back, one by one
                for _ in range(arg):
                    conn.send(conn.recv())
                value = None
            elif command == "echo_bytes":
                for _ in range(arg):
                    conn.send_bytes(conn.recv_bytes())
                value = None
            elif command == "echo_many":
                objs = []
                while len(objs) < arg:
                    objs += conn.recv_many(arg - len(objs))
                conn.send_many(objs)
                value = None
            elif command == "pipe_to_queue":  # k one-way pipe messages -> q_out
                for _ in range(arg):
                    q_out.put(oneway.recv())
                value = None
            elif command == "drain_to_eof":   # the writer hung up: all, then EOF
                n = 0
                while True:
                    try:
                        obj = oneway.recv()
                    except EOFError:
                        break
                    q_out.put(obj)
                    n += 1
                value = (n, oneway.poll())
            elif command == "sizes":      # what this process sees
                value = (q_in.qsize(), q_out.qsize(), conn.poll())
            else:
                raise ValueError(f"unknown command {command!r}")
            settle(q_out)
            control.send(("ok", value))
        except Exception as exc:  # reported to the parent, which fails the test
            control.send(("err", f"{type(exc).__name__}: {exc}"))


class CrossProcessMachine(RuleBasedStateMachine):
    """A forked child relays q_in -> q_out, echoes a duplex Pipe and moves
    a one-way Pipe's messages into q_out, on command only, so each step's
    effect is known: the models are the items waiting in q_in, in q_out, sent
    on the duplex pipe but not yet echoed (to_child) or echoed but not yet
    received (to_parent), and sent on the one-way pipe but not yet read
    (oneway).  Closing the one-way pipe's
    writer (the parent's only handle) shows the child EOF after the rest.

    q_in is bounded (maxsize), so the parent's nowait puts must raise Full
    exactly when the model says, while the child holds none.  Large messages
    cross through a ring much smaller than them (streamed) in both directions:
    the parent starts the relay first, so the child is there to read."""

    CAPACITY = 4096
    MAX_IN = 6
    PIPE_BUDGET = 1500

    def __init__(self):
        super().__init__()
        self.serial = itertools.count()
        self.model_in = collections.deque()
        self.model_out = collections.deque()
        self.to_child = collections.deque()
        self.to_parent = collections.deque()
        self.oneway = collections.deque()    # sent on the one-way pipe, not yet read
        self.oneway_open = True
        self.child = None

    @initialize()
    def start_child(self):
        ctx = multiprocessing.get_context("fork")
        # q_in holds MAX_IN of the largest small messages without its ring
        # filling (which would leave nowait puts to the feeder).
        self.q_in = fastmp.Queue(self.MAX_IN, capacity=2 * self.CAPACITY)
        self.q_out = fastmp.Queue(capacity=self.CAPACITY)
        self.conn, child_conn = fastmp.Pipe(capacity=self.CAPACITY)
        oneway_reader, self.oneway_writer = fastmp.Pipe(False, capacity=self.CAPACITY)
        self.control, child_control = ctx.Pipe()
        self.child = ctx.Process(target=_relay_child,
                                 args=(child_control, self.q_in, self.q_out, child_conn,
                                       oneway_reader, self.oneway_writer),
                                 daemon=True)
        self.child.start()
        child_control.close()
        child_conn.close()
        oneway_reader.close()   # the child's handle is now the only one

    def teardown(self):
        if self.child is None:
            return
        try:
            self.control.send(("stop", None))
            if self.control.poll(WAIT):
                self.control.recv()
        except OSError:
            pass
        self.child.join(WAIT)
        if self.child.is_alive():
            self.child.kill()
            self.child.join()
        exitcode = self.child.exitcode
        self.child.close()
        self.control.close()
        self.conn.close()
        self.oneway_writer.close()
        self.q_in.close()
        self.q_out.close()
        assert exitcode == 0

    def command(self, command, arg=None):
        self.control.send((command, arg))
        assert self.control.poll(WAIT), f"child did not answer {command!r}"
        status, value = self.control.recv()
        assert status == "ok", f"child failed {command}({arg}): {value}"
        return value

    def new(self, spec):
        return build(spec, next(self.serial))

    # -- queues -----------------------------------------------------------------

    @rule(batch=st.lists(specs, min_size=1, max_size=4), how=st.sampled_from(["put", "put_many"]))
    def put_in(self, batch, how):
        objs = [self.new(s) for s in batch]
        full = len(self.model_in) + len(objs) > self.MAX_IN
        if how == "put":
            for obj in objs:
                if len(self.model_in) >= self.MAX_IN:
                    event("cross: put Full")
                    with pytest.raises(queue.Full):
                        self.q_in.put_nowait(obj)
                else:
                    self.q_in.put_nowait(obj)
                    self.model_in.append(obj)
        elif full:
            event("cross: put_many Full")
            with pytest.raises(queue.Full):
                self.q_in.put_many(objs, timeout=SHORT)
        else:
            self.q_in.put_many_nowait(objs)
            self.model_in.extend(objs)

    OUT_BUDGET = 2500   # bytes q_out may hold: its ring never fills

    @precondition(lambda self: self.model_in)
    @rule(data=st.data(), how=st.sampled_from(["relay", "relay_many"]))
    def relay(self, data, how):
        k = data.draw(st.integers(1, len(self.model_in)), label="k")
        if not self.out_fits(itertools.chain(itertools.islice(self.model_in, k), self.oneway)):
            return
        self.command(how, k)
        for _ in range(k):
            self.model_out.append(self.model_in.popleft())

    @rule(k=st.integers(1, 5), how=st.sampled_from(["get", "get_many"]))
    def get_out(self, k, how):
        if not self.model_out:
            event("cross: get Empty")
            with pytest.raises(queue.Empty):
                if how == "get":
                    self.q_out.get(timeout=SHORT)
                else:
                    self.q_out.get_many_nowait(max_messages_to_get=k)
            return
        if how == "get":
            assert_same(self.q_out.get(timeout=WAIT), self.model_out.popleft())
            return
        # The child's put returned before its ack: every message is there.
        want = [self.model_out.popleft() for _ in range(min(k, len(self.model_out)))]
        assert_same_list(self.q_out.get_many(timeout=WAIT, max_messages_to_get=k), want)

    @precondition(lambda self: not self.model_in and not self.model_out)
    @rule(size=st.sampled_from([2 * CAPACITY, 5 * CAPACITY + 1]),
          array=st.booleans() if np is not None else st.just(False))
    def relay_larger_than_ring(self, size, array):
        """A message bigger than both queues' rings goes to the child and
        back: streamed while the child reads, and again while we read."""
        serial = next(self.serial)
        obj = (np.arange(size // 8, dtype="float64") + serial) if array else \
            build(("bytes", size), serial)
        self.control.send(("relay", 1))     # the child now waits in q_in.get
        self.q_in.put(obj)
        assert_same(self.q_out.get(timeout=WAIT), obj)
        assert self.control.poll(WAIT)
        assert self.control.recv() == ("ok", None)
        settle(self.q_in)

    # -- pipe -------------------------------------------------------------------

    def pipe_fits(self, objs):
        size = sum(len(pickle.dumps(o, protocol=5)) + 64 for o in
                   itertools.chain(self.to_child, self.to_parent, objs))
        return size <= self.PIPE_BUDGET

    @rule(batch=st.lists(specs, min_size=1, max_size=4),
          how=st.sampled_from(["send", "send_many", "send_bytes"]))
    def send(self, batch, how):
        objs = [self.new(s) for s in batch]
        if not self.pipe_fits(objs):
            return
        if how == "send":
            for obj in objs:
                self.conn.send(obj)
        elif how == "send_many":
            self.conn.send_many(objs)
        else:
            for obj in objs:
                self.conn.send_bytes(pickle.dumps(obj, protocol=5))
        self.to_child.extend(objs)

    @precondition(lambda self: self.to_child)
    @rule(data=st.data(), how=st.sampled_from(["echo", "echo_bytes", "echo_many"]))
    def echo(self, data, how):
        k = data.draw(st.integers(1, len(self.to_child)), label="k")
        self.command(how, k)
        for _ in range(k):
            self.to_parent.append(self.to_child.popleft())

    @rule(k=st.integers(1, 5), how=st.sampled_from(["recv", "recv_bytes", "recv_many"]))
    def recv(self, k, how):
        if not self.to_parent:
            assert self.conn.poll() is False
            return
        assert self.conn.poll(WAIT) is True
        if how == "recv":
            assert_same(self.conn.recv(), self.to_parent.popleft())
        elif how == "recv_bytes":
            assert_same(pickle.loads(self.conn.recv_bytes()), self.to_parent.popleft())
        else:
            want = [self.to_parent.popleft() for _ in range(min(k, len(self.to_parent)))]
            assert_same_list(self.conn.recv_many(k), want)

    # -- one-way pipe into q_out, and its EOF --------------------------------

    def out_fits(self, objs):
        held = itertools.chain(self.model_out, objs)
        return sum(len(pickle.dumps(o, protocol=5)) + 64 for o in held) <= self.OUT_BUDGET

    @precondition(lambda self: self.oneway_open)
    @rule(batch=st.lists(specs, min_size=1, max_size=3), many=st.booleans())
    def send_oneway(self, batch, many):
        objs = [self.new(s) for s in batch]
        if not self.out_fits(itertools.chain(self.oneway, objs)):
            return
        if many:
            self.oneway_writer.send_many(objs)
        else:
            for obj in objs:
                self.oneway_writer.send(obj)
        self.oneway.extend(objs)

    @precondition(lambda self: self.oneway)
    @rule(data=st.data())
    def pipe_to_queue(self, data):
        k = data.draw(st.integers(1, len(self.oneway)), label="k")
        self.command("pipe_to_queue", k)
        for _ in range(k):
            self.model_out.append(self.oneway.popleft())

    @precondition(lambda self: self.oneway_open)
    @rule()
    def hang_up_oneway(self):
        """The parent closes its (only) writing end: the child still reads
        everything sent, then EOFError, and poll() stays True (EOF)."""
        self.oneway_writer.close()
        self.oneway_open = False
        n, readable = self.command("drain_to_eof")
        assert n == len(self.oneway)
        assert readable is True
        self.model_out.extend(self.oneway)
        self.oneway.clear()

    # -- invariants -------------------------------------------------------------

    @invariant()
    def both_processes_see_the_model(self):
        if self.child is None:
            return
        assert self.q_in.qsize() == len(self.model_in)
        assert self.q_out.qsize() == len(self.model_out)
        assert self.q_in.full() == (len(self.model_in) >= self.MAX_IN)
        assert self.q_out.empty() == (not self.model_out)
        assert self.command("sizes") == (len(self.model_in), len(self.model_out),
                                         bool(self.to_child))


CrossProcessMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30,
                                                 **_SETTINGS)
test_cross_process_machine = CrossProcessMachine.TestCase
