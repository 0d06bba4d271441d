# cython: boundscheck=True, wraparound=True, cdivision=False
# (Python-object code: keep Python's indexing and modulo semantics here.)
"""How Python objects become ring records and back.

* exact `bytes` travel as they are (no pickle): KIND_BYTES;
* everything else is pickled with multiprocessing's ForkingPickler (so its
  reducers for Connections, sockets, methods and partials apply), protocol 5;
* protocol-5 out-of-band buffers (NumPy arrays, pickle.PickleBuffer objects;
  plain bytearrays are pickled in-band by pickle itself)
  are not copied into the pickle: the record lists the pickle and each buffer
  as separate parts, and the ring copies each part straight from the object's
  memory (one copy on each side, none in between).  On the way out the
  buffers are slices of one writable bytearray, so arrays come back writable.
  When those buffers are large, the ring sends them through its side arena
  instead (_side.pyx: KIND_SIDE, one copy); decode() then gets a SideMessage
  and unpickles over the shared region.

Layout of a KIND_PICKLE_OOB body (all offsets 8-byte aligned):

    [u64 n (high bit: a buffer was read-only)][u64 len(pickle)][u64 len(buffer 1)]...[u64 len(buffer n)]
    [pickle][pad][buffer 1][pad]...[buffer n]
"""

from cpython.pythread cimport PyThread_get_thread_ident

import io
import pickle
import struct
import threading

from multiprocessing.reduction import ForkingPickler

__all__ = ["KIND_BYTES", "KIND_PICKLE", "KIND_PICKLE_OOB", "KIND_RAW", "KIND_SIDE", "encode", "decode",
           "detach"]

# The kinds (cdef enum) are declared in _message.pxd.

# High bit of the buffer count: some buffer was read-only in the sender.
cdef unsigned long long _HAS_READONLY = 1ULL << 63

KIND_BYTES = _KIND_BYTES
KIND_PICKLE = _KIND_PICKLE
KIND_PICKLE_OOB = _KIND_PICKLE_OOB
KIND_RAW = _KIND_RAW
KIND_SIDE = _KIND_SIDE

_PADDING = [b"\0" * n for n in range(8)]


def _new_pickler(file, buffer_callback):
    """A pickler that pickles as ForkingPickler does (the same reducer
    table), and also takes buffer_callback, which ForkingPickler.__init__
    does not pass on.  The C Pickler itself, not a Python subclass: ~25 ns
    less per dump."""
    pickler = pickle.Pickler(file, 5, buffer_callback=buffer_callback)
    table = _COPYREG_TABLE.copy()
    table.update(_EXTRA_REDUCERS)
    pickler.dispatch_table = table
    return pickler


class _Sink:
    """The pickler's output file: it collects what the pickler writes (a
    small object arrives in one write at the end of dump), with none of
    BytesIO's seek/truncate/getvalue calls per message."""

    __slots__ = ("write",)


cdef class _Encoder:
    """A pickler kept per thread: building one costs ~1 us, more than
    pickling a small tuple, so it is reused (memo cleared between objects)."""

    cdef list chunks
    cdef list buffers
    cdef object dump
    cdef object clear_memo
    cdef Py_ssize_t generation
    cdef bint busy
    cdef bint saw_readonly

    def __init__(self):
        self.chunks = []
        self.buffers = []
        sink = _Sink()
        sink.write = self.chunks.append
        pickler = _new_pickler(sink, self._take_buffer)
        self.dump = pickler.dump
        self.clear_memo = pickler.clear_memo
        # The reducer table is copied when the pickler is built: rebuild it
        # when somebody registers a new reducer.
        self.generation = _reducer_generation()
        self.busy = False

    def _take_buffer(self, picklebuffer):
        try:
            raw = picklebuffer.raw()
        except BufferError:
            return True  # not contiguous: let pickle serialise it in-band
        self.buffers.append(raw)
        if raw.readonly:
            self.saw_readonly = True
        return False

    cdef tuple encode(self, obj):
        cdef list chunks = self.chunks
        cdef list buffers = self.buffers
        self.busy = True
        try:
            self.dump(obj)
        except BaseException:
            del chunks[:]
            del buffers[:]
            self.saw_readonly = False
            raise
        finally:
            self.busy = False
            self.clear_memo()
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del chunks[:]
        if not buffers:
            return (_KIND_PICKLE, data)
        raws = buffers[:]
        del buffers[:]
        flags = 0
        if self.saw_readonly:
            flags = _HAS_READONLY
            self.saw_readonly = False
        lengths = [len(data)] + [raw.nbytes for raw in raws]
        parts = [struct.pack(f"<{len(lengths) + 1}Q", len(raws) | flags, *lengths), data,
                 _PADDING[(8 - len(data) % 8) % 8]]
        for raw in raws:
            parts.append(raw)
            parts.append(_PADDING[(8 - raw.nbytes % 8) % 8])
        return (_KIND_PICKLE_OOB | _WRITABLE, parts)


cdef dict _EXTRA_REDUCERS = ForkingPickler._extra_reducers
cdef dict _COPYREG_TABLE = ForkingPickler._copyreg_dispatch_table


cdef inline Py_ssize_t _reducer_generation():
    return len(_EXTRA_REDUCERS) + len(_COPYREG_TABLE)


_local = threading.local()

# The last thread's encoder, found by thread id without the threading.local
# lookup (~40 ns, a sixth of pickling a small tuple).  Ids are unique among
# live threads; a new thread that inherits a dead one's id may inherit its
# encoder too, which is harmless: one thread uses it at a time.
cdef unsigned long _cached_thread = 0
cdef _Encoder _cached_encoder = None


cdef _Encoder _thread_encoder():
    global _cached_thread, _cached_encoder
    cdef unsigned long me = PyThread_get_thread_ident()
    cdef _Encoder encoder
    if me == _cached_thread and _cached_encoder is not None:
        encoder = _cached_encoder
    else:
        try:
            encoder = _local.encoder
        except AttributeError:
            encoder = _local.encoder = _Encoder()
    if encoder.generation != _reducer_generation():
        encoder = _local.encoder = _Encoder()
    _cached_thread = me
    _cached_encoder = encoder
    return encoder


cpdef tuple encode(obj):
    """Return (kind, body) for `obj`; body is bytes or a list of buffers."""
    cdef _Encoder encoder
    if type(obj) is bytes:
        return (_KIND_BYTES, obj)
    encoder = _thread_encoder()
    if encoder.busy:
        # Re-entered: an object's __reduce__ is itself putting into a queue.
        encoder = _Encoder()
    return encoder.encode(obj)


def detach(kind, body):
    """A body that no longer refers to the caller's objects: for messages
    buffered before they reach the ring, so a later change to an array the
    caller put does not change the message (one extra copy, off the fast path)."""
    if isinstance(body, list):
        return kind, b"".join(body)
    return kind, body


cpdef object decode(int kind, object body):
    if kind == _KIND_BYTES:
        return body
    if kind == _KIND_PICKLE or kind == _KIND_RAW:
        return pickle.loads(body)
    if kind == _KIND_SIDE:
        return body.load()      # a _side.SideMessage: arrays over shared memory
    if kind == _KIND_PICKLE_OOB:
        (n,) = struct.unpack_from("<Q", body, 0)
        flags = n & _HAS_READONLY
        n &= ~_HAS_READONLY
        lengths = struct.unpack_from(f"<{n + 1}Q", body, 8)
        view = memoryview(body)
        offset = 8 * (n + 2)
        slices = []
        for length in lengths:
            slices.append(view[offset:offset + length])
            offset += length + (8 - length % 8) % 8
        if flags:
            return _WritableBuffersUnpickler(io.BytesIO(slices[0]), buffers=slices[1:]).load()
        return pickle.loads(slices[0], buffers=slices[1:])
    raise ValueError(f"unknown fastmp message kind {kind}: corrupted queue or version mismatch")


class _WritableBuffersUnpickler(pickle._Unpickler):
    """Protocol 5 marks a read-only buffer (an array made from bytes, say)
    READONLY_BUFFER, and pickle.loads then hands back a read-only view, so the
    array would arrive read-only.  multiprocessing.Queue (protocol 4) always
    delivers a writable copy, and so does fastmp: the buffers here are this
    process's own fresh copy, so the mark is ignored.  The pure-Python
    unpickler is used only for messages that carry such a buffer."""

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.READONLY_BUFFER[0]] = lambda self: None
