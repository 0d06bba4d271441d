"""How Python objects become ring records and back.

* exact `bytes` travel as they are (no pickle): KIND_BYTES;
* everything else is pickled with multiprocessing's ForkingPickler (so its
  reducers for Connections, sockets, methods and partials apply), protocol 5;
* protocol-5 out-of-band buffers (NumPy arrays, bytearrays, PickleBuffers)
  are not copied into the pickle: the record lists the pickle and each buffer
  as separate parts, and the ring copies each part straight from the object's
  memory (one copy on each side, none in between).  On the way out the
  buffers are slices of one writable bytearray, so arrays come back writable.

Layout of a KIND_PICKLE_OOB body (all offsets 8-byte aligned):

    [u64 n][u64 len(pickle)][u64 len(buffer 1)]...[u64 len(buffer n)]
    [pickle][pad][buffer 1][pad]...[buffer n]
"""

import io
import pickle
import struct
import threading

from multiprocessing.reduction import ForkingPickler

__all__ = ["KIND_BYTES", "KIND_PICKLE", "KIND_PICKLE_OOB", "encode", "decode", "detach"]

KIND_BYTES = 1
KIND_PICKLE = 2
KIND_PICKLE_OOB = 3
_WRITABLE = 0x100  # the ring hands such bodies back as a bytearray

_PADDING = [b"\0" * n for n in range(8)]


class _Pickler(ForkingPickler):
    """ForkingPickler (same reducer table) that also takes buffer_callback,
    which ForkingPickler.__init__ does not pass on."""

    def __init__(self, file, buffer_callback):
        pickle.Pickler.__init__(self, file, 5, buffer_callback=buffer_callback)
        self.dispatch_table = self._copyreg_dispatch_table.copy()
        self.dispatch_table.update(self._extra_reducers)


def _reducer_generation():
    return len(ForkingPickler._extra_reducers) + len(ForkingPickler._copyreg_dispatch_table)


class _Encoder:
    """A ForkingPickler kept per thread: building one costs ~1 us, more than
    pickling a small tuple, so it is reused (memo cleared between objects)."""

    def __init__(self):
        self.stream = io.BytesIO()
        self.buffers = []
        self.pickler = _Pickler(self.stream, self._take_buffer)
        # The reducer table is copied when the pickler is built: rebuild it
        # when somebody registers a new reducer.
        self.reducers = _reducer_generation()
        self.busy = False

    def _take_buffer(self, picklebuffer):
        try:
            raw = picklebuffer.raw()
        except BufferError:
            return True  # not contiguous: let pickle serialise it in-band
        self.buffers.append(raw)
        return False

    def encode(self, obj):
        stream = self.stream
        stream.seek(0)
        stream.truncate()
        self.pickler.clear_memo()
        self.buffers = []
        self.busy = True
        try:
            self.pickler.dump(obj)
        finally:
            self.busy = False
        data = stream.getvalue()
        if not self.buffers:
            return KIND_PICKLE, data
        buffers = self.buffers
        self.buffers = []
        lengths = [len(data)] + [raw.nbytes for raw in buffers]
        parts = [struct.pack(f"<{len(lengths) + 1}Q", len(buffers), *lengths), data,
                 _PADDING[-len(data) % 8]]
        for raw in buffers:
            parts.append(raw)
            parts.append(_PADDING[-raw.nbytes % 8])
        return KIND_PICKLE_OOB | _WRITABLE, parts


_local = threading.local()


def encode(obj):
    """Return (kind, body) for `obj`; body is bytes or a list of buffers."""
    if type(obj) is bytes:
        return KIND_BYTES, obj
    encoder = getattr(_local, "encoder", None)
    if encoder is None or encoder.reducers != _reducer_generation():
        encoder = _local.encoder = _Encoder()
    elif encoder.busy:
        # Re-entered: an object's __reduce__ is itself putting into a queue.
        encoder = _Encoder()
    try:
        return encoder.encode(obj)
    except BaseException:
        _local.encoder = None  # a failed dump can leave the pickler half-way
        raise


def detach(kind, body):
    """A body that no longer refers to the caller's objects: for messages
    buffered before they reach the ring, so a later change to an array the
    caller put does not change the message (one extra copy, off the fast path)."""
    if isinstance(body, list):
        return kind, b"".join(body)
    return kind, body


def decode(kind, body):
    if kind == KIND_BYTES:
        return body
    if kind == KIND_PICKLE:
        return pickle.loads(body)
    if kind == KIND_PICKLE_OOB:
        (n,) = struct.unpack_from("<Q", body, 0)
        lengths = struct.unpack_from(f"<{n + 1}Q", body, 8)
        view = memoryview(body)
        offset = 8 * (n + 2)
        slices = []
        for length in lengths:
            slices.append(view[offset:offset + length])
            offset += length + (-length % 8)
        return pickle.loads(slices[0], buffers=slices[1:])
    raise ValueError(f"unknown fastmp message kind {kind}: corrupted queue or version mismatch")
