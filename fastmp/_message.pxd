# How Python objects become ring records and back (see _message.pyx).

cdef enum:
    _KIND_BYTES = 1
    _KIND_PICKLE = 2
    _KIND_PICKLE_OOB = 3
    # Bytes sent with Connection.send_bytes: recv_bytes returns them as they
    # are, recv() unpickles them (the standard library's pipes do the same).
    _KIND_RAW = 4
    # Out-of-band buffers in a region of the ring's side arena (_side.pyx);
    # the ring hands the body back as a _side.SideMessage.
    _KIND_SIDE = 5
    _WRITABLE = 0x100  # the ring hands such bodies back as a bytearray

cpdef tuple encode(obj)
cpdef object decode(int kind, object body)
