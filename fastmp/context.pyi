"""Type stubs for fastmp.context.

Each fastmp context subclasses the standard library's context for its start
method and overrides the primitives fastmp reimplements.  The parameters of
every override accept everything BaseContext's do (plus fastmp's keyword-only
extras such as ``capacity``), with the standard library's overloads.

The *return* types are fastmp's own classes (fastmp.queues.Queue,
fastmp.connection.Connection, fastmp.Lock, fastmp.sharedctypes.Synchronized,
...).  They have the standard library's API but are not subclasses of
multiprocessing's classes (isinstance(fastmp.Queue(), multiprocessing.queues.Queue)
is False at runtime), so those overrides carry ``# type: ignore[override]``
rather than a stub that would claim a false inheritance.  Code typed against
BaseContext still type-checks when given a fastmp context.
"""

import ctypes
from _ctypes import _CData
from collections.abc import Sequence
from multiprocessing import context as _mp_context
from multiprocessing import synchronize
from multiprocessing.context import BaseContext
from typing import Any, Literal, Self, TypeAlias, TypeVar, overload

from fastmp._lock import Lock, RLock
from fastmp.connection import Connection
from fastmp.queues import JoinableQueue, Queue, SimpleQueue
from fastmp.sharedctypes import Synchronized, SynchronizedArray, SynchronizedString

__all__ = ["get_context", "ForkContext", "SpawnContext", "ForkServerContext"]

_CT = TypeVar("_CT", bound=_CData)
# Locks a Value/Array accepts: the standard library's and fastmp's (any
# object with acquire/release works at runtime).
_LockLike: TypeAlias = synchronize.Lock | synchronize.RLock | Lock | RLock

class _FastmpPrimitives(BaseContext):
    # Stub-only base: at runtime _FastmpPrimitives is a plain mixin placed
    # before the standard library's context in each context's MRO.
    def Queue(self, maxsize: int = 0, *, capacity: int = ...) -> Queue[Any]: ...  # type: ignore[override]
    def JoinableQueue(self, maxsize: int = 0, *, capacity: int = ...) -> JoinableQueue[Any]: ...  # type: ignore[override]
    def SimpleQueue(self, *, capacity: int = ...) -> SimpleQueue[Any]: ...  # type: ignore[override]
    def Pipe(self, duplex: bool = True, *, capacity: int = ...) -> tuple[Connection, Connection]: ...  # type: ignore[override]
    def Lock(self) -> Lock: ...  # type: ignore[override]
    def RLock(self) -> RLock: ...  # type: ignore[override]

    @overload
    def RawValue(self, typecode_or_type: type[_CT], *args: Any) -> _CT: ...
    @overload
    def RawValue(self, typecode_or_type: str, *args: Any) -> Any: ...

    @overload
    def RawArray(self, typecode_or_type: type[_CT], size_or_initializer: int | Sequence[Any]) -> ctypes.Array[_CT]: ...
    @overload
    def RawArray(self, typecode_or_type: str, size_or_initializer: int | Sequence[Any]) -> Any: ...

    @overload  # type: ignore[override]
    def Value(self, typecode_or_type: type[_CT], *args: Any, lock: Literal[False]) -> _CT: ...
    @overload
    def Value(
        self, typecode_or_type: str | type[_CData], *args: Any, lock: Literal[True] | _LockLike = True
    ) -> Synchronized: ...
    @overload
    def Value(self, typecode_or_type: str | type[_CData], *args: Any, lock: bool | _LockLike = True) -> Any: ...

    @overload  # type: ignore[override]
    def Array(
        self, typecode_or_type: type[_CT], size_or_initializer: int | Sequence[Any], *, lock: Literal[False]
    ) -> ctypes.Array[_CT]: ...
    @overload
    def Array(
        self, typecode_or_type: type[ctypes.c_char], size_or_initializer: int | Sequence[Any], *,
        lock: Literal[True] | _LockLike = True,
    ) -> SynchronizedString: ...
    @overload
    def Array(
        self, typecode_or_type: str | type[_CData], size_or_initializer: int | Sequence[Any], *,
        lock: Literal[True] | _LockLike = True,
    ) -> SynchronizedArray: ...
    @overload
    def Array(
        self, typecode_or_type: str | type[_CData], size_or_initializer: int | Sequence[Any], *,
        lock: bool | _LockLike = True,
    ) -> Any: ...

    # get_context() with no method is this context itself (not a
    # DefaultContext); a named method is fastmp's context for it.
    @overload  # type: ignore[override]
    def get_context(self, method: None = None) -> Self: ...
    @overload
    def get_context(self, method: Literal["fork"]) -> ForkContext: ...
    @overload
    def get_context(self, method: Literal["spawn"]) -> SpawnContext: ...
    @overload
    def get_context(self, method: Literal["forkserver"]) -> ForkServerContext: ...
    @overload
    def get_context(self, method: str) -> ForkContext | SpawnContext | ForkServerContext: ...

class ForkContext(_FastmpPrimitives, _mp_context.ForkContext): ...
class SpawnContext(_FastmpPrimitives, _mp_context.SpawnContext): ...
class ForkServerContext(_FastmpPrimitives, _mp_context.ForkServerContext): ...

@overload
def get_context(method: None = None) -> ForkContext | SpawnContext | ForkServerContext: ...
@overload
def get_context(method: Literal["fork"]) -> ForkContext: ...
@overload
def get_context(method: Literal["spawn"]) -> SpawnContext: ...
@overload
def get_context(method: Literal["forkserver"]) -> ForkServerContext: ...
@overload
def get_context(method: str) -> ForkContext | SpawnContext | ForkServerContext: ...
