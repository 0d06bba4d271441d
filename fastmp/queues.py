"""fastmp.Queue: multiprocessing.Queue's API over a shared-memory ring.

Where multiprocessing.Queue pickles in a feeder thread and pushes bytes
through a pipe, fastmp.Queue pickles in the caller and copies the bytes
straight into a ring in shared memory (fastmp._ring.FramedRing).  A put is
visible to getters the moment it returns.

The feeder thread survives only as a safety valve for the standard library's
promise that put() on a queue that is not full never blocks: if the ring has
no room for ROOM_WAIT seconds (nobody is reading), the message is admitted
against maxsize and buffered in this process, and a feeder thread moves it
into the ring when room appears.  Later puts from this process queue up
behind it, so each producer's messages stay in order.  As in the standard
library, a process joins its feeder at exit until its buffer is flushed,
unless cancel_join_thread() was called.
"""

import collections
import multiprocessing
import threading
import traceback
import types
import weakref
from multiprocessing import context as _mp_context
from multiprocessing.util import Finalize, register_after_fork
from queue import Empty, Full

from fastmp._message import KIND_BYTES, decode, detach, encode
from fastmp._ring import PUT_ADMITTED_ as _ADMITTED
from fastmp._ring import PUT_FULL_ as _FULL
from fastmp._ring import FramedRing
from fastmp.connection import Pipe

__all__ = ["Queue", "JoinableQueue", "SimpleQueue", "DEFAULT_CAPACITY"]

#: Default ring size in bytes.  A message larger than the ring still goes
#: through (it streams, in chunks, while a reader drains it).
DEFAULT_CAPACITY = 1 << 20

#: How long a blocking put waits for room in the ring before it buffers the
#: message in this process instead (see the module docstring).
ROOM_WAIT = 0.1

#: faster-fifo's default for max_messages_to_get.
_MANY = 1_000_000_000


def _check_maxsize(maxsize):
    if not isinstance(maxsize, int):
        raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")


class Queue:
    """A process-shared FIFO queue, API-compatible with multiprocessing.Queue.

    ``maxsize`` bounds the number of messages (<= 0: unbounded, as in the
    standard library).  ``capacity`` is the size in bytes of the shared ring
    that carries them (default 1 MiB); bigger messages still travel, streamed
    through the ring while a consumer reads them.

    Extras, compatible with faster-fifo: ``put_many``, ``get_many``,
    ``put_many_nowait``, ``get_many_nowait``.  Unlike faster-fifo,
    ``timeout=None`` blocks forever, as in the standard library.
    """

    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, maxsize=0, *, capacity=DEFAULT_CAPACITY, ctx=None):
        _check_maxsize(maxsize)
        if not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int (bytes), not {type(capacity).__name__}")
        self._maxsize = maxsize if maxsize > 0 else 0
        self._ring = FramedRing(capacity, self._maxsize)
        self._reset()
        register_after_fork(self, Queue._after_fork)

    # -- sharing with child processes ------------------------------------

    def __getstate__(self):
        _mp_context.assert_spawning(self)
        return (self._ring, self._maxsize)

    def __setstate__(self, state):
        self._ring, self._maxsize = state
        self._reset()

    def _after_fork(self):
        # The parent's buffered messages belong to the parent's feeder.
        self._reset()

    def _reset(self):
        self._notempty = threading.Condition(threading.Lock())
        self._buffer = collections.deque()
        self._unflushed = 0  # messages buffered or being written by the feeder
        self._thread = None
        self._jointhread = None
        self._joincancelled = False
        self._closed = False
        self._close = None

    # -- the standard library's API -----------------------------------------

    def put(self, obj, block=True, timeout=None):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        kind, body = encode(obj)
        if self._unflushed:
            return self._put_encoded([(kind, body)], block, timeout)
        status = self._ring.put(kind, body, block, timeout, ROOM_WAIT if block else 0.0)
        if status:
            self._after_put(status, [(kind, body)])

    def get(self, block=True, timeout=None):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        record = self._ring.get(block, timeout)
        if record is None:
            raise Empty
        kind, body = record
        if kind == KIND_BYTES:
            return body
        return decode(kind, body)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        """Approximate number of messages in the queue, including those a
        producer admitted but still buffers."""
        return self._ring.count + self._ring.pending

    def empty(self):
        return self._ring.count <= 0

    def full(self):
        return self._maxsize > 0 and self._ring.count + self._ring.pending >= self._maxsize

    def close(self):
        """No more put/get from this process.  Messages already put are not
        lost: buffered ones are still flushed by the feeder thread."""
        self._closed = True
        close = self._close
        if close:
            self._close = None
            close()

    def join_thread(self):
        assert self._closed, f"Queue {self!r} not closed"
        if self._jointhread:
            self._jointhread()

    def cancel_join_thread(self):
        self._joincancelled = True
        try:
            self._jointhread.cancel()
        except AttributeError:
            pass

    # -- batches (faster-fifo compatible) -----------------------------------

    def put_many(self, xs, block=True, timeout=None):
        """Put every object of `xs`, all or nothing, under one lock.
        Raises Full (nothing put) if the batch does not fit before the
        timeout, ValueError if it can never fit (more than maxsize messages,
        or more bytes than the ring's capacity)."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        records = [encode(obj) for obj in xs]
        if records:
            self._put_encoded(records, block, timeout)

    def put_many_nowait(self, xs):
        return self.put_many(xs, False)

    def get_many(self, block=True, timeout=None, max_messages_to_get=_MANY):
        """Up to `max_messages_to_get` messages taken under one lock, as a
        list; raises Empty if there are none before the timeout."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        records = self._ring.get_many(max_messages_to_get, block, timeout)
        if not records:
            raise Empty
        return [decode(kind, body) for kind, body in records]

    def get_many_nowait(self, max_messages_to_get=_MANY):
        return self.get_many(False, max_messages_to_get=max_messages_to_get)

    # -- internals ------------------------------------------------------------

    def _put_encoded(self, records, block, timeout):
        ring = self._ring
        if self._unflushed:
            # Earlier messages of this process are still buffered: stay behind them.
            status = ring.admit(records, block, timeout, ROOM_WAIT if block else 0.0)
        else:
            status = ring.put_many(records, block, timeout, ROOM_WAIT if block else 0.0)
        if status:
            self._after_put(status, records)

    def _after_put(self, status, records):
        if status == _FULL:
            raise Full
        # Admitted: counted in the ring's `pending`, written with
        # put_admitted.  Uncounted (the lock was unavailable): written with
        # an ordinary blocking put_many.
        counted = status == _ADMITTED
        with self._notempty:
            if self._thread is None:
                self._start_thread()
            self._buffer.extend((kind, body, counted) for kind, body in
                                (detach(kind, body) for kind, body in records))
            self._unflushed += len(records)
            self._notempty.notify()

    def _start_thread(self):
        self._thread = threading.Thread(
            target=Queue._feed, args=(weakref.ref(self), self._ring, self._buffer, self._notempty),
            name="fastmp-QueueFeederThread", daemon=True)
        self._thread.start()
        if not self._joincancelled:
            self._jointhread = Finalize(self._thread, Queue._finalize_join,
                                        [weakref.ref(self._thread)], exitpriority=-5)
        self._close = Finalize(self, Queue._finalize_close, [self._buffer, self._notempty],
                               exitpriority=10)

    @staticmethod
    def _finalize_join(twr):
        thread = twr()
        if thread is not None:
            thread.join()

    @staticmethod
    def _finalize_close(buffer, notempty):
        with notempty:
            buffer.append(_SENTINEL)
            notempty.notify()

    @staticmethod
    def _feed(queue_ref, ring, buffer, notempty):
        stopping = False
        while True:
            with notempty:
                while not buffer and not stopping:
                    notempty.wait()
                batch = []
                while buffer and len(batch) < 4096:
                    record = buffer.popleft()
                    if record is _SENTINEL:
                        stopping = True  # close(): flush what is left, then end
                        continue
                    batch.append(record)
            if batch:
                Queue._write_buffered(ring, batch)
                queue = queue_ref()
                if queue is not None:
                    with notempty:
                        queue._unflushed -= len(batch)
                del queue
            if stopping and not buffer:
                return

    @staticmethod
    def _write_buffered(ring, batch):
        """Write (kind, body, counted) records in order: runs of counted ones
        (already in the ring's `pending`) with put_admitted, uncounted ones
        (buffered while the lock was unavailable) with a blocking put_many."""
        start = 0
        while start < len(batch):
            counted = batch[start][2]
            end = start
            while end < len(batch) and batch[end][2] == counted:
                end += 1
            run = [(kind, body) for kind, body, _ in batch[start:end]]
            try:
                if counted:
                    ring.put_admitted(run)
                else:
                    for record in run:
                        ring.put_many([record])
            except Exception:
                # As multiprocessing's feeder does: report and keep going, so
                # one failure does not silently stop this producer's queue.
                # The run is lost; give back the slots it held against maxsize.
                traceback.print_exc()
                if counted:
                    ring.release_admitted(len(run))
            start = end


_SENTINEL = object()


class JoinableQueue(Queue):
    """fastmp.Queue plus task_done() and join(), as multiprocessing.JoinableQueue.

    The count of unfinished tasks is the standard library's: a process-shared
    semaphore and condition from `ctx` (the default context if None).  A put
    counts its task before the message becomes visible, so a consumer's
    task_done() can never overtake it.
    """

    def __init__(self, maxsize=0, *, capacity=DEFAULT_CAPACITY, ctx=None):
        Queue.__init__(self, maxsize, capacity=capacity, ctx=ctx)
        ctx = ctx if ctx is not None else multiprocessing.get_context()
        self._unfinished_tasks = ctx.Semaphore(0)
        self._cond = ctx.Condition()

    def __getstate__(self):
        return Queue.__getstate__(self) + (self._cond, self._unfinished_tasks)

    def __setstate__(self, state):
        Queue.__setstate__(self, state[:-2])
        self._cond, self._unfinished_tasks = state[-2:]

    def put(self, obj, block=True, timeout=None):
        self._counted_put(Queue.put, obj, 1, block, timeout)

    def put_many(self, xs, block=True, timeout=None):
        xs = list(xs)
        self._counted_put(Queue.put_many, xs, len(xs), block, timeout)

    def _counted_put(self, put, payload, tasks, block, timeout):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        with self._cond:
            for _ in range(tasks):
                self._unfinished_tasks.release()
        try:
            put(self, payload, block, timeout)
        except BaseException:
            # Nothing was put (put and put_many are all or nothing): uncount.
            with self._cond:
                for _ in range(tasks):
                    self._unfinished_tasks.acquire(False)
                if self._unfinished_tasks._semlock._is_zero():
                    self._cond.notify_all()
            raise

    def task_done(self):
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError('task_done() called too many times')
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self):
        with self._cond:
            while not self._unfinished_tasks._semlock._is_zero():
                self._cond.wait()


class SimpleQueue:
    """multiprocessing.SimpleQueue over a one-way fastmp.Pipe: get(), put(obj),
    empty(), close().

    As with the standard library's (a locked pipe), put blocks while the pipe
    is full and get blocks until a message arrives; there is no feeder thread.
    After close(), every call raises OSError("handle is closed").

    The standard library's Pool and ProcessPoolExecutor reach into a
    SimpleQueue, and find here what they use: ``_reader`` and ``_writer`` are
    the pipe's Connections (recv/send/poll/close, and a fileno() that
    multiprocessing.connection.wait can wait on) and ``_poll`` is the
    reader's poll.  The standard library's get() and put() take the locks
    ``_rlock`` and ``_wlock`` because a pipe read or write of a whole message
    is not atomic; a ring's is, so fastmp's take no lock, and ``_rlock`` and
    ``_wlock`` are plain locks of this process made on first use (Pool
    acquires ``_rlock`` while it terminates; holding it guards nothing here).
    ``ctx`` is accepted for the standard library's signature and not needed.
    """

    __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, *, capacity=DEFAULT_CAPACITY, ctx=None):
        self._reader, self._writer = Pipe(duplex=False, capacity=capacity)
        self._bind()

    def _bind(self):
        self._poll = self._reader.poll
        self._locks = None
        # get and put are the Connections' own methods: a message costs one
        # Python call, not two (the methods below say what they do).
        self.get = self._reader.recv
        self.put = self._writer.send

    def __getstate__(self):
        _mp_context.assert_spawning(self)
        return (self._reader, self._writer)

    def __setstate__(self, state):
        (self._reader, self._writer) = state
        self._bind()

    @property
    def _rlock(self):
        return self._process_locks()[0]

    @property
    def _wlock(self):
        return self._process_locks()[1]

    def _process_locks(self):
        if self._locks is None:
            self._locks = (threading.Lock(), threading.Lock())
        return self._locks

    def close(self):
        self._reader.close()
        self._writer.close()

    def empty(self):
        return not self._poll()

    def get(self):
        """Remove and return an object (blocks until there is one)."""
        return self._reader.recv()

    def put(self, obj):
        """Put an object (blocks while the pipe is full)."""
        self._writer.send(obj)
