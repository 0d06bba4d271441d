"""Type stubs for fastmp: Queue, JoinableQueue, SimpleQueue, Pipe, Lock, RLock, Value, Array, RawValue, RawArray, FloatChannel, Ring, Broadcast and FrameOverwritten are fastmp's own; the rest is multiprocessing's."""
from multiprocessing import (
    AuthenticationError as AuthenticationError,
    Barrier as Barrier,
    BoundedSemaphore as BoundedSemaphore,
    BufferTooShort as BufferTooShort,
    Condition as Condition,
    Event as Event,
    Manager as Manager,
    Pool as Pool,
    Process as Process,
    ProcessError as ProcessError,
    Semaphore as Semaphore,
    TimeoutError as TimeoutError,
    active_children as active_children,
    allow_connection_pickling as allow_connection_pickling,
    cpu_count as cpu_count,
    current_process as current_process,
    freeze_support as freeze_support,
    get_all_start_methods as get_all_start_methods,
    get_logger as get_logger,
    get_start_method as get_start_method,
    log_to_stderr as log_to_stderr,
    parent_process as parent_process,
    reducer as reducer,
    set_executable as set_executable,
    set_forkserver_preload as set_forkserver_preload,
    set_start_method as set_start_method,
)

from fastmp._broadcast import Broadcast as Broadcast
from fastmp._float_channel import FloatChannel as FloatChannel
from fastmp._frames import FrameOverwritten as FrameOverwritten
from fastmp._lock import Lock as Lock
from fastmp._lock import RLock as RLock
from fastmp._typed_ring import Ring as Ring
from fastmp.connection import Pipe as Pipe
from fastmp.context import get_context as get_context
from fastmp.queues import JoinableQueue as JoinableQueue
from fastmp.queues import Queue as Queue
from fastmp.queues import SimpleQueue as SimpleQueue
from fastmp.sharedctypes import Array as Array
from fastmp.sharedctypes import RawArray as RawArray
from fastmp.sharedctypes import RawValue as RawValue
from fastmp.sharedctypes import Value as Value

__version__: str
__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "Broadcast",
    "BufferTooShort",
    "Condition",
    "Event",
    "FloatChannel",
    "FrameOverwritten",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "Ring",
    "Semaphore",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "reducer",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]
