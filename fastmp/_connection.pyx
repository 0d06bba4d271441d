# cython: boundscheck=True, wraparound=True, cdivision=False
# (Python-object code: keep Python's indexing and modulo semantics here.)
"""The Connection core behind fastmp.Pipe (public module: fastmp.connection).

A cdef class so that a message costs one Python call: send() encodes and
writes into the ring, and recv() reads and decodes, through direct C calls.

Each direction of a pipe is a FramedRing (fastmp/_ring.pyx).  The kernel
still does two things a ring cannot do alone, each with a descriptor that
carries no data:

* **End of file.**  The two ends hold the two halves of a socketpair.  A
  socket reads EOF once every handle of the other half is closed, whether by
  close(), by garbage collection or by the death of every process holding
  it, and the kernel counts those handles across fork, spawn and forkserver
  exactly as it does for multiprocessing's own pipes.  So `recv()` raises
  EOFError once the peer end is gone and everything sent is read, and `send()`
  raises BrokenPipeError once the reading end is closed everywhere.  close()
  also wakes blocked peers so they look at once; a blocked peer notices a
  process that died without closing within one wait slice (50 ms).  A send
  that does not block looks only after some end was closed (a shared
  counter moves), so a reader that died without closing is noticed when the
  ring is full and the sender would block.
* **Readiness for select.**  `fileno()` returns an epoll descriptor that is
  readable while messages are waiting (an eventfd that the ring keeps
  signalled once a reader has asked for a descriptor, see FramedRing.arm) or
  once the peer end is gone (the socket).  That is what
  multiprocessing.connection.wait, select and selectors need.  Until some
  process calls fileno() on the reading end, sending costs no syscall at all.

Messages: `send(obj)` pickles as fastmp.Queue does (bytes as they are, out-of-
band buffers copied once); `send_bytes` sends raw bytes.  As with the standard
library, `recv()` of raw bytes unpickles them and `recv_bytes()` of an object
returns its pickle.
"""

import operator
import os
import select
import socket
from multiprocessing import context as _mp_context
from multiprocessing import reduction as _mp_reduction

from libc.stdint cimport int64_t

from fastmp._message cimport (
    _KIND_BYTES, _KIND_PICKLE, _KIND_PICKLE_OOB, _KIND_RAW, _KIND_SIDE, decode, encode,
)
from fastmp._ring cimport FramedRing

__all__ = ["Connection", "Pipe", "DEFAULT_CAPACITY", "DEFAULT_RECV_MANY"]

# Bytes of ring per direction.  A message larger than this still goes
# through, streamed in pieces while the receiver reads.
DEFAULT_CAPACITY = 1 << 20
# recv_many's default batch limit.
DEFAULT_RECV_MANY = 1024
# A maxlength at least this large limits nothing (and would not fit the
# ring's 64-bit length check).
_NO_LIMIT = 1 << 62


cdef class Connection:
    """One end of a fastmp.Pipe: multiprocessing.connection.Connection's API
    (send/recv, send_bytes/recv_bytes/recv_bytes_into, poll, fileno, close,
    closed/readable/writable, context manager) plus send_many/recv_many.

    Pass it to a child process as an argument (fork, spawn or forkserver);
    pickling it at any other time raises RuntimeError."""

    cdef FramedRing _read_ring      # None: not readable (or closed)
    cdef FramedRing _write_ring     # None: not writable (or closed)
    cdef bint _readable, _writable, _closed
    cdef object _socket             # this end's half of the socketpair
    cdef int _ready_in, _ready_out  # eventfds of the two directions, or -1
    cdef object _epoll              # made by the first fileno() on a reader
    cdef object __weakref__

    def __cinit__(self):
        self._ready_in = self._ready_out = -1

    def __init__(self, FramedRing read_ring, FramedRing write_ring, sock, int ready_in,
                 int ready_out):
        # read_ring/write_ring: this end's own FramedRing objects (None for a
        # direction it does not have); sock: its half of the socketpair;
        # ready_in/ready_out: descriptors of the eventfds of the direction it
        # reads and the one it writes (-1 when absent).  All owned by it.
        self._read_ring = read_ring
        self._write_ring = write_ring
        self._readable = read_ring is not None
        self._writable = write_ring is not None
        self._socket = sock
        self._ready_in = ready_in
        self._ready_out = ready_out
        self._epoll = None
        self._closed = False
        if read_ring is not None:
            read_ring.bind_connection(sock.fileno(), ready_in)
        if write_ring is not None:
            write_ring.bind_connection(sock.fileno(), ready_out)

    # -- state ------------------------------------------------------------

    @property
    def closed(self):
        """True if the connection is closed."""
        return self._closed

    @property
    def readable(self):
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self):
        """True if the connection is writable."""
        return self._writable

    def _check_closed(self):
        if self._closed:
            raise OSError("handle is closed")

    def _no_read_ring(self):
        self._check_closed()
        raise OSError("connection is write-only")

    def _no_write_ring(self):
        self._check_closed()
        raise OSError("connection is read-only")

    # -- sending ----------------------------------------------------------

    def send(self, obj):
        """Send a picklable object.  Blocks while the pipe is full."""
        cdef FramedRing ring = self._write_ring
        if ring is None:
            self._no_write_ring()
        kind, body = encode(obj)
        ring.send(kind, body)

    def send_bytes(self, buf, offset=0, size=None):
        """Send `size` bytes of a bytes-like object, from `offset`."""
        cdef FramedRing ring = self._write_ring
        if ring is None:
            self._no_write_ring()
        if type(buf) is bytes and offset == 0 and size is None:
            ring.send(_KIND_RAW, buf)
            return
        with memoryview(buf) as m:
            if m.itemsize > 1:
                m = m.cast("B")
            n = m.nbytes
            if offset < 0:
                raise ValueError("offset is negative")
            if n < offset:
                raise ValueError("buffer length < offset")
            if size is None:
                size = n - offset
            elif size < 0:
                raise ValueError("size is negative")
            elif offset + size > n:
                raise ValueError("buffer length < offset + size")
            # The ring copies straight from the caller's memory.
            ring.send(_KIND_RAW, [m[offset:offset + size]])

    def send_many(self, objs):
        """Send several objects under one lock, all or none; the receiver
        may take them one by one or with recv_many.  ValueError if the batch
        can never fit the ring (its messages together exceed capacity)."""
        cdef FramedRing ring = self._write_ring
        if ring is None:
            self._no_write_ring()
        ring.put_many([encode(obj) for obj in objs])

    # -- receiving --------------------------------------------------------

    def recv(self):
        """Receive an object sent with send() (or the unpickled bytes of a
        send_bytes()).  Blocks until one arrives; EOFError once the other
        end is closed and everything sent has been received."""
        cdef FramedRing ring = self._read_ring
        if ring is None:
            self._no_read_ring()
        kind, body = ring.receive(-1)
        if kind == _KIND_BYTES:
            return body
        return decode(kind, body)

    def recv_many(self, max_messages=DEFAULT_RECV_MANY):
        """Receive up to `max_messages` objects in one call: blocks until at
        least one is there (EOFError as recv), then returns all that are
        waiting, up to the limit, as a list."""
        cdef FramedRing ring = self._read_ring
        if ring is None:
            self._no_read_ring()
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        return [body if kind == _KIND_BYTES else decode(kind, body)
                for kind, body in ring.get_many(max_messages)]

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes: what send_bytes sent, or the pickle
        of what send() sent.  A message longer than `maxlength` raises
        OSError and stays in the pipe (the standard library closes the
        connection instead)."""
        cdef FramedRing ring = self._read_ring
        if ring is None:
            self._no_read_ring()
        if maxlength is None:
            kind, body = ring.receive(-1)
        else:
            if maxlength < 0:
                raise ValueError("negative maxlength")
            if maxlength >= _NO_LIMIT:
                kind, body = ring.receive(-1)   # no message is that long
            else:
                # The ring checks the length recv_bytes will return (the body
                # plus this kind's wrapping, _RECV_BYTES_EXTRA) before taking
                # the message, so a message that is too long stays in the pipe.
                kind, body = ring.receive(maxlength, _RECV_BYTES_EXTRA)
        if kind == _KIND_RAW or kind == _KIND_PICKLE:
            return body         # raw bytes, or already a pickle
        return _as_pickle(kind, body)

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into a writable buffer, at byte `offset`;
        returns its length.  If it does not fit, raises
        multiprocessing.BufferTooShort with the whole message as args[0]."""
        if self._read_ring is None:
            self._no_read_ring()
        # Everything that can be wrong with the arguments is checked before
        # a message is taken, so a bad call loses nothing.
        offset = operator.index(offset)
        with memoryview(buf) as m:
            if m.readonly:
                raise TypeError("recv_bytes_into needs a writable buffer")
            itemsize = m.itemsize
            bytesize = itemsize * len(m)
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            data = self.recv_bytes()
            size = len(data)
            if bytesize < offset + size:
                raise _mp_context.BufferTooShort(data)
            m.cast("B")[offset:offset + size] = data
            return size

    def poll(self, timeout=0.0):
        """Whether recv() would return without blocking: a message is
        waiting or the other end is gone.  Waits up to `timeout` seconds
        (None: as long as it takes)."""
        cdef FramedRing ring = self._read_ring
        if ring is None:
            self._no_read_ring()
        if timeout is not None and type(timeout) is not float:
            # As the standard library: a timeout must be a real number,
            # checked even when a message is already waiting.
            timeout = _mp_timeout(timeout)
        if timeout != timeout:
            raise ValueError("timeout must be a number, not NaN")
        if ring.count > 0:
            return True
        if timeout is None:
            return ring.wait_readable(True, None)
        if timeout <= 0:
            return ring.wait_readable(False, None)
        return ring.wait_readable(True, timeout)

    # -- descriptors --------------------------------------------------------

    def fileno(self):
        """A descriptor that select/poll/epoll and
        multiprocessing.connection.wait report readable when recv() would
        not block.  For a write-only end: readable once the reader is gone."""
        self._check_closed()
        if self._read_ring is None:
            return self._socket.fileno()
        if self._epoll is None:
            epoll = select.epoll()
            try:
                epoll.register(self._ready_in, select.EPOLLIN)
                epoll.register(self._socket.fileno(), select.EPOLLIN)
                self._read_ring.arm()
            except BaseException:
                epoll.close()
                raise
            self._epoll = epoll
        return self._epoll.fileno()

    def close(self):
        """Close this end.  The other end sees EOF (or BrokenPipeError) once
        every process holding this end has closed it or exited."""
        if self._closed:
            return
        self._closed = True
        rings = [r for r in (self._read_ring, self._write_ring) if r is not None]
        self._read_ring = self._write_ring = None
        for ring in rings:
            ring.unbind_connection()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        self._socket.close()
        for fd in (self._ready_in, self._ready_out):
            if fd >= 0:
                os.close(fd)
        self._ready_in = self._ready_out = -1
        # After the socket is closed: a woken peer that looks sees the EOF
        # if this was the last handle.
        for ring in rings:
            ring.hang_up()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else (
            "duplex" if self._readable and self._writable else
            "read-only" if self._readable else "write-only")
        return f"<fastmp.Connection {state}>"

    # -- passing to a child process ----------------------------------------

    def __reduce__(self):
        self._check_closed()
        _mp_context.assert_spawning(self)
        dup = _mp_reduction.DupFd
        return (_rebuild_connection,
                (self._read_ring, self._write_ring, dup(self._socket.fileno()),
                 dup(self._ready_in) if self._ready_in >= 0 else None,
                 dup(self._ready_out) if self._ready_out >= 0 else None))


# -- recv_bytes of an object sent with send() ---------------------------------
#
# On a standard-library pipe the bytes of such a message are its pickle, and
# recv_bytes returns them.  fastmp stores `bytes` as they are and arrays with
# out-of-band buffers, so recv_bytes wraps those two kinds in a pickle built
# here, whose length is the body's plus a constant: the ring can then check
# maxlength before taking the message (and leave it in place when too long).

# PROTO 5, BINBYTES8 <u64 length> ... STOP: loads() gives the bytes back.
_BYTES_PICKLE_HEAD = b"\x80\x05\x8e"
# PROTO 5, the global fastmp._message.decode, BININT1 kind, BYTEARRAY8
# <u64 length> ... TUPLE2 REDUCE STOP: loads() calls decode(kind, body) on a
# writable copy of the body, exactly as recv() does.
_OOB_PICKLE_HEAD = b"".join((
    b"\x80\x05",
    b"\x8c", bytes([len(b"fastmp._message")]), b"fastmp._message",
    b"\x8c", bytes([len(b"decode")]), b"decode", b"\x93",
    b"K", bytes([_KIND_PICKLE_OOB]), b"\x96"))
_OOB_PICKLE_TAIL = b"\x86R."

cdef int64_t _RECV_BYTES_EXTRA[8]
_RECV_BYTES_EXTRA[:] = [0, 0, 0, 0, 0, 0, 0, 0]
_RECV_BYTES_EXTRA[_KIND_BYTES] = len(_BYTES_PICKLE_HEAD) + 8 + 1
_RECV_BYTES_EXTRA[_KIND_PICKLE_OOB] = len(_OOB_PICKLE_HEAD) + 8 + len(_OOB_PICKLE_TAIL)


cdef bytes _as_pickle(int kind, body):
    """A pickle of the message (kind, body), len(body) + _RECV_BYTES_EXTRA[kind]
    bytes long."""
    if kind == _KIND_SIDE:
        # Arrays sent through the side arena: the bytes of the same message
        # as an ordinary out-of-band body (the ring measured it as one).
        kind, body = _KIND_PICKLE_OOB, body.oob_body()
    length = len(body).to_bytes(8, "little")
    if kind == _KIND_BYTES:
        return b"".join((_BYTES_PICKLE_HEAD, length, body, b"."))
    if kind == _KIND_PICKLE_OOB:
        return b"".join((_OOB_PICKLE_HEAD, length, body, _OOB_PICKLE_TAIL))
    raise ValueError(f"unknown fastmp message kind {kind}: corrupted pipe or version mismatch")


def _mp_timeout(timeout):
    if isinstance(timeout, (int, float)):
        return timeout
    try:
        return float(operator.index(timeout))
    except TypeError:
        pass
    raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")


def _attach(ring):
    """A second process-local object for the same ring (each Connection
    binds its own descriptors to its ring objects)."""
    return None if ring is None else FramedRing._attach(ring.segment, ring.side)


def _rebuild_connection(read_ring, write_ring, dup_socket, dup_ready_in, dup_ready_out):
    sock = socket.socket(fileno=dup_socket.detach())
    ready_in = dup_ready_in.detach() if dup_ready_in is not None else -1
    ready_out = dup_ready_out.detach() if dup_ready_out is not None else -1
    return Connection(read_ring, write_ring, sock, ready_in, ready_out)


def _new_eventfd():
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def Pipe(duplex=True, *, capacity=DEFAULT_CAPACITY):
    """Return a pair of Connections, as multiprocessing.Pipe does.

    duplex=True: both ends send and receive.  duplex=False: (reader, writer).
    `capacity`: bytes of shared ring per direction (1 MiB by default); a
    message larger than it still goes through, streamed while the receiver
    reads."""
    if not isinstance(capacity, int):
        raise TypeError(f"capacity must be an int (bytes), not {type(capacity).__name__}")
    fds = []
    sock1, sock2 = socket.socketpair()
    try:
        # Everything that can fail happens before the Connections exist:
        # once built, each owns (and on failure would close) its descriptors.
        if duplex:
            ring12 = FramedRing(capacity, 0)    # written by end 1, read by end 2
            ring21 = FramedRing(capacity, 0)
            rings2 = (_attach(ring12), _attach(ring21))
            for _ in range(2):
                fds.append(_new_eventfd())
            fds.append(os.dup(fds[0]))
            fds.append(os.dup(fds[1]))
        else:
            ring = FramedRing(capacity, 0)      # written by end 2, read by end 1
            ring_for_writer = _attach(ring)
            fds.append(_new_eventfd())
            fds.append(os.dup(fds[0]))
    except BaseException:
        for fd in fds:
            os.close(fd)
        sock1.close()
        sock2.close()
        raise
    if duplex:
        ready12, ready21, ready12_copy, ready21_copy = fds
        end1 = Connection(ring21, ring12, sock1, ready21, ready12)
        end2 = Connection(rings2[0], rings2[1], sock2, ready12_copy, ready21_copy)
    else:
        end1 = Connection(ring, None, sock1, fds[0], -1)
        end2 = Connection(None, ring_for_writer, sock2, -1, fds[1])
    return end1, end2
