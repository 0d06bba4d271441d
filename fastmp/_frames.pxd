# Typed frames in shared memory: what fastmp.Ring and fastmp.Broadcast share.
#
#   FrameSpec     a frame's shape and dtype, parsed once (NumPy imported
#                 lazily, on the first FrameSpec): views over a slot, and
#                 copies in and out with the shape/dtype checks of the spec.
#   ViewCache     one reusable view per slot (zero-copy paths allocate
#                 nothing per frame; see its docstring for the after-release
#                 rules it keeps).
#   FrameOwner    base class of whatever hands out Reservations and Frames
#                 (Ring, Broadcast, Broadcast's Subscriber): they call back
#                 into it when committed / aborted / released.
#   FrameStore    FrameOwner that owns a segment of frames (Ring, Broadcast):
#                 slots / shape / dtype / frame_bytes / closed, repr, pickle.
#   Reservation   `with owner.reserve() as view:` (writer side)
#   Frame         `with owner.recv_view() as view:` (reader side)
#   FrameOverwritten(BufferError)   for Broadcast's skip mode.
#
# Usage by an owner (e.g. Ring):
#     spec = frame_spec(shape, dtype)            # ValueError / TypeError
#     cache = ViewCache(spec, segment, first_slot_offset, nslots, writable)
#     r = new_reservation(self, <PyObject*>self._res, cache.take(slot))
#     self._res = r; r.slot = slot; r.position = pos
#     ... in _finish_reservation(r, commit): cache.retire(r.view); publish
#     (the owner clears r.active / r.view / r.owner via done_handle(r)).

from libc.stdint cimport uint64_t

from cpython.object cimport PyObject

from fastmp._segment cimport Segment

cdef enum:
    MAX_NDIM = 8
    FRAME_ALIGN = 64


cdef class FrameSpec:
    cdef readonly tuple shape
    cdef readonly object dtype          # numpy.dtype, or the typecode str without NumPy
    cdef readonly Py_ssize_t itemsize
    cdef readonly Py_ssize_t frame_bytes
    cdef readonly Py_ssize_t stride     # frame_bytes rounded up to FRAME_ALIGN
    cdef readonly bint numpy            # views and copies are ndarrays
    cdef int ndim
    cdef Py_ssize_t dims[MAX_NDIM]
    cdef Py_ssize_t strides[MAX_NDIM]   # C-contiguous strides of a frame
    cdef Py_ssize_t count               # items per frame
    cdef bytes fmt                      # buffer format of our own views
    cdef object np                      # the numpy module, or None
    cdef bint castable                  # no NumPy: memoryview.cast knows the typecode

    # A fresh view of the frame at segment.addr + offset (keeps `segment`
    # mapped).  Read-only views cannot be made writable by the user.
    cdef object new_view(self, Segment segment, Py_ssize_t offset, bint writable)
    # Copy one frame from `src` (ndarray of any strides, or any buffer) to
    # dst: ValueError on a shape mismatch, TypeError on a dtype/format one
    # (`what` names the calling method in messages).  GIL released for big
    # frames.
    cdef int copy_in(self, char* dst, object src, str what) except -1
    # Copy the frame at src into the writable buffer `dst` (same checks).
    cdef int copy_out(self, object dst, const char* src, str what) except -1
    # A new array (ndarray, or a memoryview over a new bytearray) holding a
    # copy of the frame at src.
    cdef object copy_new(self, const char* src)
    cdef str describe(self)             # "shape (2, 3) and dtype float32"
    # Get a buffer of `obj` (writable if `out`) that has this frame's shape
    # and dtype into *view, or raise (as copy_in/copy_out do) holding none.
    # The caller releases it (PyBuffer_Release).  For checking before a
    # wait, then copying with the helpers below.
    cdef int _check(self, object obj, Py_buffer* view, str what, bint out) except -1
    cdef int _check_dtype(self, object obj, const Py_buffer* view, str what) except -1


# Copy n bytes between a frame and a buffer _check() accepted (any strides;
# GIL released for big frames).
cdef int frame_from_buffer(char* dst, Py_buffer* view, Py_ssize_t n) except -1
cdef int frame_to_buffer(Py_buffer* view, const char* src, Py_ssize_t n) except -1

# Parse and validate (shape, dtype) as the spec says.
cpdef FrameSpec frame_spec(object shape, object dtype)


cdef class ViewCache:
    cdef FrameSpec spec
    cdef Segment segment
    cdef Py_ssize_t base                # offset of slot 0
    cdef Py_ssize_t nslots
    cdef bint writable
    cdef list views
    cdef object mv                      # memoryview of the segment (ndarray base)
    cdef bint poke                      # toggle WRITEABLE in the struct (see .pyx)

    # A view over slot `slot`: writable iff the cache is.  NumPy: the cached
    # ndarray of that slot when nobody else holds it any more (else a new
    # one).  No NumPy: a new memoryview (it is released by retire()).
    cdef object take(self, Py_ssize_t slot)
    # After commit/abort/release: writable ndarray -> writeable flag
    # cleared; memoryview -> released.  Read-only ndarrays stay as they are.
    cdef int retire(self, object view) except -1


cdef class FrameOwner:
    # Called by Reservation.commit()/abort()/__exit__ (commit = True to
    # publish) and Frame.release()/__exit__, only while the object is
    # active.  The owner must call done_handle (even when it raises).
    cdef int _finish_reservation(self, Reservation r, bint commit) except -1
    cdef int _finish_frame(self, Frame f) except -1


# The segment, frame spec and slot count of a Ring or Broadcast handle (set
# by the subclass when it binds), with the Python-visible properties slots,
# shape, dtype, frame_bytes and closed, the repr
# "<fastmp.Name slots=.. shape=.. dtype=..{_repr_extra()}[ closed]>", and
# pickling for a spawn/forkserver child: type(self)._attach(segment, shape,
# dtype), refused with _closed_exc() once closed.
cdef class FrameStore(FrameOwner):
    cdef Segment segment
    cdef FrameSpec spec
    cdef uint64_t nslots
    cdef readonly bint closed

    cdef str _repr_extra(self)          # "" here
    cdef object _closed_exc(self)       # ValueError("<repr> is closed") here


# What a Reservation and a Frame hold: one slot lent out by `owner`.
cdef class SlotHandle:
    cdef FrameOwner owner               # None while idle (no reference cycle)
    cdef readonly object view
    cdef readonly bint active
    cdef uint64_t position              # owner's bookkeeping
    cdef uint64_t seq
    cdef Py_ssize_t slot


cdef class Reservation(SlotHandle):
    pass


cdef class Frame(SlotHandle):
    pass


# An active Reservation / Frame for `owner` holding `view`: `cached` (pass
# <PyObject*>self.attr, which takes no reference) again if it is idle and
# only the caller's attribute references it (no allocation), else a new
# object.  The caller stores the result back in its attribute.
cdef Reservation new_reservation(FrameOwner owner, PyObject* cached, object view)
cdef Frame new_frame(FrameOwner owner, PyObject* cached, object view)
# Mark a Reservation / Frame finished (inactive, no owner, no view).
cdef void done_handle(SlotHandle h) noexcept
# For an owner being closed or collected: if `h` (its last Reservation /
# Frame, or None) is still active, retire its view from `views` (errors
# ignored) and mark it finished.
cdef void abandon_handle(ViewCache views, object h) noexcept
