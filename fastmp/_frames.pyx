"""Typed frames in shared memory, shared by fastmp.Ring and fastmp.Broadcast.

A frame is one fixed-shape, fixed-dtype array stored in a slot of a shared
segment.  This module knows how to describe one (FrameSpec: shape and dtype,
parsed once), how to look at a slot without copying (ndarray views, or
memoryviews when NumPy is missing), how to copy a frame in and out with the
shape and dtype checks every channel applies, and the two context managers
the zero-copy calls return (Reservation on the writer side, Frame on the
reader side).  The channels own the slots and the protocol; see
_frames.pxd for the C-level API.

NumPy is optional and imported lazily: importing fastmp never imports it,
the first FrameSpec does (if it can).  Without NumPy a dtype is a struct
typecode among "bBhHiIlLqQefd?" and views are memoryviews.

Zero-copy costs: a NumPy view of a slot is built once per slot and handed
out again (ViewCache) as long as nobody else still holds it, so a
`with ring.recv_view() as v` allocates nothing; the Reservation / Frame
objects are reused the same way.
"""

cimport cython
from cpython.buffer cimport (
    PyBuffer_FillInfo,
    PyBUF_FORMAT, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_FromContiguous,
    PyBuffer_IsContiguous, PyBuffer_Release, PyBuffer_ToContiguous, PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport _Py_REFCNT
from libc.string cimport memcpy, strcmp

import struct as _struct
import sys
from multiprocessing import context as _mp_context

from fastmp._args cimport int_arg
from fastmp._segment cimport Segment

__all__ = ["FrameOverwritten", "FrameSpec", "Frame", "Reservation"]

# Frames of at least this many bytes are copied with the GIL released.
cdef enum:
    BIG_COPY = 65536


class FrameOverwritten(BufferError):
    """Broadcast (policy="skip"): the writer overwrote the slot of a frame
    while it was viewed with recv_view(); the data read from the view may be
    torn.  Raised when the view is released; the frame counts as skipped."""


# -- lazy NumPy ------------------------------------------------------------------

cdef object _numpy = None
cdef bint _numpy_tried = False


cdef object _get_numpy():
    global _numpy, _numpy_tried
    if not _numpy_tried:
        try:
            import numpy
            _numpy = numpy
        except ImportError:
            _numpy = None
        _numpy_tried = True
    return _numpy


def _forget_numpy():
    """Tests: look for NumPy again on the next FrameSpec (e.g. after
    sys.modules["numpy"] = None)."""
    global _numpy, _numpy_tried
    _numpy = None
    _numpy_tried = False


# Without NumPy: the struct typecodes a frame may hold, and the NumPy names
# of the common ones (so that the default dtype="float32" works anywhere).
_TYPECODES = "bBhHiIlLqQefd?"
_NAMES = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float16": "e", "float32": "f", "float64": "d",
    "bool": "?", "single": "f", "double": "d", "half": "e",
}


# 2**62 bytes: beyond any address space, and far from Py_ssize_t overflow
# (a channel then multiplies by its slot count in Python ints too).
_MAX_FRAME_BYTES = 1 << 62


cdef inline Py_ssize_t _round_up(Py_ssize_t n) noexcept:
    return (n + FRAME_ALIGN - 1) & ~(<Py_ssize_t>FRAME_ALIGN - 1)


cdef tuple _parse_shape(object shape):
    cdef list dims
    if isinstance(shape, (tuple, list)):
        items = shape
    else:
        items = (int_arg(shape, "shape must be an int or a tuple of ints"),)
    dims = []
    for d in items:
        d = int_arg(d, "shape entries must be ints")
        if d < 0:
            raise ValueError(f"shape entries must be >= 0, got {tuple(items)!r}")
        dims.append(d)
    if len(dims) > MAX_NDIM:
        raise ValueError(f"a frame has at most {MAX_NDIM} dimensions, got {len(dims)}")
    return tuple(dims)


cpdef FrameSpec frame_spec(object shape, object dtype):
    """Parse (shape, dtype): ValueError for a bad or empty shape, TypeError
    for a dtype NumPy (or, without it, the typecode list) refuses."""
    cdef FrameSpec spec = FrameSpec.__new__(FrameSpec)
    cdef tuple dims = _parse_shape(shape)
    cdef Py_ssize_t count = 1, i
    np = _get_numpy()
    spec.np = np
    spec.numpy = np is not None
    if np is not None:
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise TypeError(f"dtype {dtype!r} is not a NumPy dtype: {exc}") from None
        except ValueError as exc:
            raise TypeError(f"dtype {dtype!r} is not a NumPy dtype: {exc}") from None
        if dt.hasobject:
            raise TypeError(f"dtype {dt} holds Python objects, which cannot live in "
                            f"shared memory")
        if dt.subdtype is not None:
            # ('f4', (3,)): a frame of shape + (3,) of float32, as NumPy does.
            dims = dims + dt.shape
            dt = dt.base
            if len(dims) > MAX_NDIM:
                raise ValueError(f"a frame has at most {MAX_NDIM} dimensions, got "
                                 f"{len(dims)} (with the dtype's own)")
        spec.dtype = dt
        spec.itemsize = dt.itemsize
        try:
            spec.fmt = memoryview(np.empty(0, dt)).format.encode("ascii")
        except (ValueError, TypeError, BufferError):
            # datetime64 / timedelta64 (alone or in records): NumPy has no
            # buffer format for them.  Buffers are then asked for without
            # one, and dtypes compared as NumPy dtypes.
            spec.fmt = b""
    else:
        if not isinstance(dtype, str):
            raise TypeError(f"without NumPy, dtype must be a struct typecode among "
                            f"{_TYPECODES!r}, not {dtype!r}")
        code = _NAMES.get(dtype, dtype)
        if len(code) != 1 or code not in _TYPECODES:
            raise TypeError(f"without NumPy, dtype must be a struct typecode among "
                            f"{_TYPECODES!r}, not {dtype!r}")
        spec.dtype = code
        spec.itemsize = _struct.calcsize(code)
        spec.fmt = code.encode("ascii")
        try:                # memoryview.cast refuses 'e' before Python 3.12
            memoryview(bytearray(spec.itemsize)).cast(code)
            spec.castable = True
        except (ValueError, TypeError):
            spec.castable = False
    # The product in Python ints first: dimensions beyond 64 bits, or whose
    # product is, must be refused, not wrapped.
    total = 1
    for d in dims:
        total *= d
    if total == 0 or spec.itemsize == 0:
        raise ValueError(f"empty frame: shape {dims} of {spec.dtype} holds no bytes")
    if total * spec.itemsize > _MAX_FRAME_BYTES:
        raise ValueError(f"a frame of shape {dims} and dtype {spec.dtype} needs "
                         f"{total * spec.itemsize} bytes, more than any machine has")
    spec.shape = dims
    spec.ndim = len(dims)
    for i in range(spec.ndim):
        spec.dims[i] = dims[i]
    count = total
    spec.count = count
    spec.frame_bytes = count * spec.itemsize
    spec.stride = _round_up(spec.frame_bytes)
    if spec.ndim:
        spec.strides[spec.ndim - 1] = spec.itemsize
        for i in range(spec.ndim - 2, -1, -1):
            spec.strides[i] = spec.strides[i + 1] * spec.dims[i + 1]
    return spec


cdef str _shape_of(const Py_buffer* view):
    cdef int i
    if view.ndim == 1 and view.shape == NULL:
        return f"({view.len // (view.itemsize or 1)},)"
    return str(tuple([view.shape[i] for i in range(view.ndim)]))


cdef str _format_of(const Py_buffer* view):
    return view.format.decode("ascii", "replace") if view.format != NULL else "B"


cdef bint _LITTLE_ENDIAN = sys.byteorder == "little"


cdef bint _same_native_code(const char* fmt, const char* code) noexcept:
    """Without NumPy: is buffer format `fmt` the single typecode `code`?
    '@' (native) or nothing; '=' / '<' / '>' only where the standard size
    and byte order are the native ones ('l' is 8 bytes native, 4 standard)."""
    if fmt == NULL:
        return code[0] == b"B" and code[1] == 0
    if fmt[0] == b"@":
        fmt += 1
    elif fmt[0] == b"=" or fmt[0] == b"<" or fmt[0] == b">":
        if (fmt[0] == b"<") != _LITTLE_ENDIAN and fmt[0] != b"=":
            return False
        if code[0] in b"lL" and sizeof(long) != 4:
            return False
        fmt += 1
    return fmt[0] == code[0] and fmt[1] == 0


@cython.final
cdef class FrameSpec:
    """A frame's shape and dtype (see frame_spec())."""

    def __repr__(self):
        return f"FrameSpec({self.shape}, {self.dtype!r})"

    def __reduce__(self):
        return (frame_spec, (self.shape, self.dtype))

    cdef str describe(self):
        return f"shape {self.shape} and dtype {self.dtype}"

    cdef object new_view(self, Segment segment, Py_ssize_t offset, bint writable):
        cdef _FrameBuffer exporter
        if self.numpy:
            mv = memoryview(segment) if writable else _read_only(segment)
            return self.np.ndarray(self.shape, self.dtype, mv, offset)
        exporter = _FrameBuffer.__new__(_FrameBuffer)
        exporter.spec = self
        exporter.keep = segment
        exporter.addr = segment.addr + offset
        exporter.readonly = not writable
        return memoryview(exporter)

    # -- checks ------------------------------------------------------------

    cdef int _check(self, object obj, Py_buffer* view, str what, bint out) except -1:
        """`view` holds a buffer of obj of the frame's shape and dtype, or an
        exception is raised (and no buffer held)."""
        cdef int i, flags
        cdef bint shape_ok
        if not PyObject_CheckBuffer(obj):
            raise TypeError(f"{what} needs a {'writable ' if out else ''}"
                            f"{'NumPy array or ' if self.numpy else ''}buffer of "
                            f"{self.describe()}, not {type(obj).__name__}")
        flags = PyBUF_STRIDES
        if out:
            flags |= PyBUF_WRITABLE
        if self.fmt:
            flags |= PyBUF_FORMAT
        try:
            PyObject_GetBuffer(obj, view, flags)
        except (BufferError, ValueError, TypeError) as exc:
            if out:
                raise ValueError(f"{what} needs a writable buffer of {self.describe()}: "
                                 f"{exc}") from None
            raise TypeError(f"{what} cannot read {type(obj).__name__}: {exc}") from None
        try:
            shape_ok = view.ndim == self.ndim
            if shape_ok:
                for i in range(view.ndim):
                    if view.shape[i] != self.dims[i]:
                        shape_ok = False
                        break
            if not shape_ok and not self.numpy and view.ndim == 1 \
                    and view.shape[0] == self.count:
                shape_ok = True         # a flat buffer of the frame's items
            if not shape_ok:
                raise ValueError(f"{what}: the frame has shape {_shape_of(view)}, but this "
                                 f"channel's frames have shape {self.shape}")
            if view.format == NULL or strcmp(view.format, self.fmt) != 0:
                self._check_dtype(obj, view, what)
            if view.len != self.frame_bytes:    # same format, so never, but cheap
                raise TypeError(f"{what}: the frame holds {view.len} bytes, this "
                                f"channel's frames {self.frame_bytes}")
        except BaseException:
            PyBuffer_Release(view)
            raise
        return 0

    cdef int _check_dtype(self, object obj, const Py_buffer* view, str what) except -1:
        if self.numpy:
            got = getattr(obj, "dtype", None)
            if not isinstance(got, self.np.dtype):
                try:
                    got = self.np.asarray(obj).dtype
                except Exception:
                    got = _format_of(view)
            if isinstance(got, self.np.dtype) and got == self.dtype:
                return 0
        else:
            if _same_native_code(view.format, self.fmt):
                return 0
            got = f"format {_format_of(view)!r}"
        raise TypeError(f"{what}: the frame has dtype {got}, but this channel's frames "
                        f"have dtype {self.dtype} (no implicit casting: convert it first)")

    # -- copies --------------------------------------------------------------

    cdef int copy_in(self, char* dst, object src, str what) except -1:
        cdef Py_buffer view
        self._check(src, &view, what, False)
        try:
            frame_from_buffer(dst, &view, self.frame_bytes)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef int copy_out(self, object dst, const char* src, str what) except -1:
        cdef Py_buffer view
        self._check(dst, &view, what, True)
        try:
            frame_to_buffer(&view, src, self.frame_bytes)
        finally:
            PyBuffer_Release(&view)
        return 0

    cdef object copy_new(self, const char* src):
        cdef Py_buffer view
        cdef Py_ssize_t n = self.frame_bytes
        cdef bytearray data
        cdef _FrameBuffer exporter
        if self.numpy:
            arr = self.np.empty(self.shape, self.dtype)
            PyObject_GetBuffer(arr, &view, 0)
            try:
                if n >= BIG_COPY:
                    with nogil:
                        memcpy(view.buf, src, n)
                else:
                    memcpy(view.buf, src, n)
            finally:
                PyBuffer_Release(&view)
            return arr
        data = bytearray(n)
        memcpy(<char*>data, src, n)
        if self.castable:
            # memoryview.cast: the view's .obj is the bytearray itself.
            return memoryview(data).cast(self.dtype, self.shape)
        exporter = _FrameBuffer.__new__(_FrameBuffer)
        exporter.spec = self
        exporter.keep = data
        exporter.addr = <char*>data
        exporter.readonly = False
        return memoryview(exporter)


cdef int frame_from_buffer(char* dst, Py_buffer* view, Py_ssize_t n) except -1:
    if PyBuffer_IsContiguous(view, b"C"):
        if n >= BIG_COPY:
            with nogil:
                memcpy(dst, view.buf, n)
        else:
            memcpy(dst, view.buf, n)
        return 0
    return PyBuffer_ToContiguous(dst, view, n, b"C")


cdef int frame_to_buffer(Py_buffer* view, const char* src, Py_ssize_t n) except -1:
    if PyBuffer_IsContiguous(view, b"C"):
        if n >= BIG_COPY:
            with nogil:
                memcpy(view.buf, src, n)
        else:
            memcpy(view.buf, src, n)
        return 0
    return PyBuffer_FromContiguous(view, <void*>src, n, b"C")


@cython.final
cdef class _FrameBuffer:
    """Exports one frame (format, shape, strides of the spec) for a
    memoryview when NumPy is missing.  `keep` owns the memory (a Segment or
    a bytearray nobody else can resize)."""
    cdef FrameSpec spec
    cdef object keep
    cdef char* addr
    cdef bint readonly

    def __getbuffer__(self, Py_buffer* view, int flags):
        if (flags & PyBUF_WRITABLE) and self.readonly:
            raise BufferError("this frame view is read-only")
        view.buf = self.addr
        view.obj = self
        view.len = self.spec.frame_bytes
        view.readonly = self.readonly
        view.itemsize = self.spec.itemsize
        view.format = self.spec.fmt
        view.ndim = self.spec.ndim
        view.shape = self.spec.dims
        view.strides = self.spec.strides
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view):
        pass


# -- toggling an ndarray's WRITEABLE flag --------------------------------------
#
# `arr.flags.writeable = x` costs ~200 ns (a flags object, a setattr), twice
# per reservation.  NumPy's own compiled extensions read and write the flags
# through the public struct below (PyArray_FLAGS / PyArray_ENABLEFLAGS are
# macros over it), so its layout is part of NumPy's ABI (1.x and 2.x alike).
# We still check it on every array we build (data pointer, ndim, descr and
# flags must read back as NumPy reports them) and fall back to the Python
# attribute otherwise.

cdef extern from *:
    """
    typedef struct {
        PyObject_HEAD
        char *data;
        int nd;
        Py_ssize_t *dimensions;
        Py_ssize_t *strides;
        PyObject *base;
        PyObject *descr;
        int flags;
    } fastmp_ndarray_head;
    #define FASTMP_NPY_WRITEABLE 0x0400
    static inline char *fastmp_nd_data(PyObject *a) { return ((fastmp_ndarray_head *)a)->data; }
    static inline int fastmp_nd_ndim(PyObject *a) { return ((fastmp_ndarray_head *)a)->nd; }
    static inline PyObject *fastmp_nd_descr(PyObject *a) { return ((fastmp_ndarray_head *)a)->descr; }
    static inline int fastmp_nd_flags(PyObject *a) { return ((fastmp_ndarray_head *)a)->flags; }
    static inline void fastmp_nd_set_writeable(PyObject *a, int on) {
        if (on) ((fastmp_ndarray_head *)a)->flags |= FASTMP_NPY_WRITEABLE;
        else ((fastmp_ndarray_head *)a)->flags &= ~FASTMP_NPY_WRITEABLE;
    }
    """
    char* fastmp_nd_data(PyObject* a)
    int fastmp_nd_ndim(PyObject* a)
    PyObject* fastmp_nd_descr(PyObject* a)
    int fastmp_nd_flags(PyObject* a)
    void fastmp_nd_set_writeable(PyObject* a, int on)


cdef bint _layout_checked = False
cdef bint _layout_ok = False


cdef bint _ndarray_layout_ok(object arr, char* data, int ndim) except -1:
    """Does `arr` (just built by us over `data`) read back as NumPy says?"""
    global _layout_checked, _layout_ok
    cdef PyObject* p = <PyObject*>arr
    cdef bint ok = (fastmp_nd_data(p) == data and fastmp_nd_ndim(p) == ndim
                    and fastmp_nd_descr(p) == <PyObject*>arr.dtype
                    and fastmp_nd_flags(p) == arr.flags.num)
    if not _layout_checked:
        _layout_ok = ok
        _layout_checked = True
    return ok and _layout_ok


@cython.final
cdef class _ReadOnlySegment:
    """A segment's memory as a buffer that refuses writable requests: the
    base of read-only ndarrays, which then cannot be made writable."""
    cdef Segment segment

    def __getbuffer__(self, Py_buffer* view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("a received frame is read-only")
        PyBuffer_FillInfo(view, self, self.segment.addr, self.segment.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass


cdef object _read_only(Segment segment):
    cdef _ReadOnlySegment ro = _ReadOnlySegment.__new__(_ReadOnlySegment)
    ro.segment = segment
    return ro


# -- a view per slot --------------------------------------------------------------

@cython.final
cdef class ViewCache:
    """Views over the `nslots` slots at segment offset base + i * stride."""

    def __init__(self, FrameSpec spec, Segment segment, Py_ssize_t base, Py_ssize_t nslots,
                 bint writable):
        self.spec = spec
        self.segment = segment
        self.base = base
        self.nslots = nslots
        self.writable = writable
        self.views = [None] * nslots
        self.mv = None
        self.poke = False
        if spec.numpy:
            # The ndarrays' base.  NumPy lets anyone set writeable=True on
            # an array whose base exports a writable buffer (and unwraps a
            # memoryview to the object under it), so read-only views get a
            # base that refuses writable buffers.
            self.mv = memoryview(segment) if writable else _read_only(segment)

    cdef object take(self, Py_ssize_t slot):
        cdef PyObject* cached
        cdef FrameSpec spec = self.spec
        cdef Py_ssize_t offset
        if not spec.numpy:
            return spec.new_view(self.segment, self.base + slot * spec.stride, self.writable)
        cached = PyList_GET_ITEM(self.views, slot)
        if <object>cached is not None:
            if not self.writable:
                # Read-only views are never handed out writable: anyone may
                # go on holding one.
                return <object>cached
            if _Py_REFCNT(cached) == 1:
                # Nobody else holds it: hand it out again, writable.  (A
                # view someone kept after its commit is never made writable
                # again: that holder would write into a later frame.)
                if self.poke:
                    fastmp_nd_set_writeable(cached, 1)
                else:
                    (<object>cached).flags.writeable = True
                return <object>cached
        offset = self.base + slot * spec.stride
        # (None cached, or someone still holds the old one - e.g. the name a
        # `with ... as frame:` left bound: a new ndarray over the slot; the
        # old one stays dead.  Not old.view(): its base would be the old
        # array, and a loop would build an ever longer chain.)
        view = spec.np.ndarray(spec.shape, spec.dtype, self.mv, offset)
        if self.writable:
            self.poke = _ndarray_layout_ok(view, self.segment.addr + offset, spec.ndim)
        self.views[slot] = view
        return view

    cdef int retire(self, object view) except -1:
        if not self.spec.numpy:
            view.release()
        elif self.writable:
            if self.poke:
                fastmp_nd_set_writeable(<PyObject*>view, 0)
            else:
                view.flags.writeable = False
        return 0


# -- context managers --------------------------------------------------------------

cdef class FrameOwner:
    """Base of Ring, Broadcast and Subscriber (see _frames.pxd)."""

    cdef int _finish_reservation(self, Reservation r, bint commit) except -1:
        done_handle(r)
        return 0

    cdef int _finish_frame(self, Frame f) except -1:
        done_handle(f)
        return 0


# no_gc_clear: the collector must not drop `segment` (unmapping the memory)
# before a subclass's __dealloc__ has given its claims back in it.
@cython.no_gc_clear
cdef class FrameStore(FrameOwner):
    """Base of Ring and Broadcast (see _frames.pxd)."""

    cdef str _repr_extra(self):
        return ""

    cdef object _closed_exc(self):
        return ValueError(f"{self!r} is closed")

    def __reduce__(self):
        if self.closed:
            raise self._closed_exc()
        # Checked here too so that the message names Ring / Broadcast; the
        # segment's own reduction passes the descriptor with DupFd.
        _mp_context.assert_spawning(self)
        return (type(self)._attach, (self.segment, self.spec.shape, self.spec.dtype))

    def __repr__(self):
        state = " closed" if self.closed else ""
        return (f"<fastmp.{type(self).__name__} slots={self.nslots} shape={self.spec.shape} "
                f"dtype={self.spec.dtype}{self._repr_extra()}{state}>")

    @property
    def slots(self):
        """Number of frame slots."""
        return self.nslots

    @property
    def shape(self):
        """Shape of one frame (a tuple)."""
        return self.spec.shape

    @property
    def dtype(self):
        """numpy.dtype of the frames (the struct typecode str without NumPy)."""
        return self.spec.dtype

    @property
    def frame_bytes(self):
        """Bytes of one frame."""
        return self.spec.frame_bytes


cdef class SlotHandle:
    """Base of Reservation and Frame (see _frames.pxd)."""


@cython.final
cdef class Reservation(SlotHandle):
    """A writable frame in a slot, not yet published (``ring.reserve()``).

    ``with ring.reserve() as view:`` fills ``view`` in place; leaving the
    block normally commits (publishes) the frame, an exception abandons it.
    ``commit()`` / ``abort()`` do it explicitly (a second call raises
    RuntimeError).  Afterwards the view is dead: a NumPy view is no longer
    writeable (writes raise ValueError), a memoryview is released."""

    def __enter__(self):
        if not self.active:
            raise RuntimeError("this reservation was already committed or aborted")
        return self.view

    def __exit__(self, exc_type, exc, tb):
        if self.active:
            self.owner._finish_reservation(self, exc_type is None)
        return False

    def commit(self):
        """Publish the frame."""
        if not self.active:
            raise RuntimeError("this reservation was already committed or aborted")
        self.owner._finish_reservation(self, True)

    def abort(self):
        """Give the slot back unpublished."""
        if not self.active:
            raise RuntimeError("this reservation was already committed or aborted")
        self.owner._finish_reservation(self, False)

    def __repr__(self):
        return f"<fastmp.Reservation {'open' if self.active else 'finished'}>"

    def __reduce__(self):
        raise TypeError("a Reservation cannot be pickled")


@cython.final
cdef class Frame(SlotHandle):
    """A read-only, zero-copy view of a received frame (``ring.recv_view()``).

    ``with ring.recv_view() as view:`` reads ``view`` in place; leaving the
    block (or ``release()``, which may be called more than once) gives the
    slot back to the writer.  Afterwards a memoryview is released (using it
    raises ValueError); a NumPy view stays read-only but is NOT invalidated:
    reading it after the release is not detected and may see a later frame
    the writer put in the slot.  Copy what you need to keep."""

    def __enter__(self):
        if not self.active:
            raise RuntimeError("this frame was already released")
        return self.view

    def __exit__(self, exc_type, exc, tb):
        if self.active:
            self.owner._finish_frame(self)
        return False

    def release(self):
        """Give the slot back to the writer (idempotent)."""
        if self.active:
            self.owner._finish_frame(self)

    def __repr__(self):
        return f"<fastmp.Frame {'open' if self.active else 'released'}>"

    def __reduce__(self):
        raise TypeError("a Frame cannot be pickled")


cdef inline bint _reusable(PyObject* cached, type cls) noexcept:
    # An idle `cls` that only the caller's attribute references.
    return (cached != NULL and _Py_REFCNT(cached) == 1 and type(<object>cached) is cls
            and not (<SlotHandle>cached).active)


cdef inline SlotHandle _lend(SlotHandle h, FrameOwner owner, object view):
    h.owner = owner
    h.view = view
    h.active = True
    return h


cdef Reservation new_reservation(FrameOwner owner, PyObject* cached, object view):
    if _reusable(cached, Reservation):
        return <Reservation>_lend(<Reservation>cached, owner, view)
    return <Reservation>_lend(Reservation.__new__(Reservation), owner, view)


cdef Frame new_frame(FrameOwner owner, PyObject* cached, object view):
    if _reusable(cached, Frame):
        return <Frame>_lend(<Frame>cached, owner, view)
    return <Frame>_lend(Frame.__new__(Frame), owner, view)


cdef void done_handle(SlotHandle h) noexcept:
    h.active = False
    h.owner = None
    h.view = None


cdef void abandon_handle(ViewCache views, object h) noexcept:
    cdef SlotHandle held
    if h is None or not (<SlotHandle>h).active:
        return
    held = <SlotHandle>h
    try:
        views.retire(held.view)
    except BaseException:
        pass
    done_handle(held)
