"""fastmp.Pipe and its Connections: multiprocessing.Pipe over shared-memory rings.

    from fastmp import Pipe            # or: fastmp.get_context(method).Pipe
    parent_end, child_end = Pipe()     # duplex; Pipe(duplex=False) -> (reader, writer)

The same API as multiprocessing.connection.Connection (send/recv,
send_bytes/recv_bytes/recv_bytes_into, poll, fileno, close, closed/readable/
writable, context manager), plus send_many/recv_many for batches.  The
implementation is the Cython core in fastmp/_connection.pyx; its module
docstring says how end of file and select readiness work.
"""

from fastmp._connection import DEFAULT_CAPACITY, DEFAULT_RECV_MANY, Connection, Pipe

__all__ = ["Connection", "Pipe", "DEFAULT_CAPACITY", "DEFAULT_RECV_MANY"]
