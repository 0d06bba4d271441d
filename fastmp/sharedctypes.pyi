import ctypes
from _ctypes import _CData
from collections.abc import Callable, Sequence
from multiprocessing import synchronize
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import Any, Literal, TypeAlias, TypeVar, overload

from typing_extensions import disjoint_base

from fastmp._lock import Lock, RLock

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized"]

_CT = TypeVar("_CT", bound=_CData)
_LockLike: TypeAlias = synchronize.Lock | synchronize.RLock | Lock | RLock

typecode_to_type: dict[str, type[ctypes._SimpleCData[Any]]]

@disjoint_base
class SynchronizedBase:
    def __init__(self, obj: Any, lock: Any = None, ctx: BaseContext | None = None) -> None: ...
    acquire: Callable[..., bool]
    release: Callable[[], None]
    def __enter__(self) -> bool: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None: ...
    def get_obj(self) -> Any: ...
    def get_lock(self) -> Any: ...

@disjoint_base
class Synchronized(SynchronizedBase):
    value: Any

@disjoint_base
class SynchronizedArray(SynchronizedBase):
    def __len__(self) -> int: ...
    def __getitem__(self, i: Any, /) -> Any: ...
    def __setitem__(self, i: Any, value: Any, /) -> None: ...
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any: ...

class SynchronizedString(SynchronizedArray):
    value: bytes
    raw: bytes

@overload
def RawValue(typecode_or_type: type[_CT], *args: Any) -> _CT: ...
@overload
def RawValue(typecode_or_type: str, *args: Any) -> Any: ...
@overload
def RawArray(typecode_or_type: type[_CT], size_or_initializer: int | Sequence[Any]) -> ctypes.Array[_CT]: ...
@overload
def RawArray(typecode_or_type: str, size_or_initializer: int | Sequence[Any]) -> Any: ...

# lock=False gives the raw ctypes object; otherwise a wrapper holding `lock`
# (True or None: a new fastmp RLock; any object with acquire/release works).
@overload
def Value(
    typecode_or_type: type[_CT], *args: Any, lock: Literal[False], ctx: BaseContext | None = None,
) -> _CT: ...
@overload
def Value(
    typecode_or_type: str | type[_CData], *args: Any, lock: Literal[True] | _LockLike | None = True,
    ctx: BaseContext | None = None,
) -> Synchronized: ...
@overload
def Value(
    typecode_or_type: str | type[_CData], *args: Any, lock: bool | _LockLike | None = True,
    ctx: BaseContext | None = None,
) -> Any: ...
@overload
def Array(
    typecode_or_type: type[_CT], size_or_initializer: int | Sequence[Any], *, lock: Literal[False],
    ctx: BaseContext | None = None,
) -> ctypes.Array[_CT]: ...
@overload
def Array(
    typecode_or_type: type[ctypes.c_char], size_or_initializer: int | Sequence[Any], *,
    lock: Literal[True] | _LockLike | None = True, ctx: BaseContext | None = None,
) -> SynchronizedString: ...
@overload
def Array(
    typecode_or_type: str | type[_CData], size_or_initializer: int | Sequence[Any], *,
    lock: Literal[True] | _LockLike | None = True, ctx: BaseContext | None = None,
) -> SynchronizedArray: ...
@overload
def Array(
    typecode_or_type: str | type[_CData], size_or_initializer: int | Sequence[Any], *,
    lock: bool | _LockLike | None = True, ctx: BaseContext | None = None,
) -> Any: ...
def copy(obj: _CT) -> _CT: ...
def synchronized(obj: Any, lock: Any = None, ctx: BaseContext | None = None) -> SynchronizedBase: ...
