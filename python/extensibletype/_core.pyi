"""Type stubs for the extension module ``extensibletype._core`` (the
runtime's Python surface; docs/spec.md section 10)."""

import ctypes
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Final, Protocol, TypeAlias

from _ctypes import CFuncPtr
from typing_extensions import disjoint_base

if sys.version_info >= (3, 13):
    from types import CapsuleType as _Capsule
else:
    _Capsule: TypeAlias = Any  # types.CapsuleType is new in 3.13

class _CFunc(Protocol):
    # A numba ``@cfunc`` (numba.core.ccallback.CFunc), structurally.
    @property
    def address(self) -> int: ...

#: What a slot may hold: an ``int`` address, a ctypes function pointer or
#: ``c_void_p``, a ``PyCapsule`` or a numba ``@cfunc`` (kept alive as long
#: as a table uses it).
_SlotValue: TypeAlias = int | CFuncPtr | ctypes.c_void_p | _Capsule | _CFunc
#: A slot's name: a key string (``str`` or UTF-8 ``bytes``) or a raw id.
_SlotKey: TypeAlias = str | bytes | int
# Mapping is invariant in its key type: accept dicts keyed by any one of them.
_Slots: TypeAlias = (
    Mapping[str, _SlotValue | None]
    | Mapping[bytes, _SlotValue | None]
    | Mapping[int, _SlotValue | None]
    | Mapping[_SlotKey, _SlotValue | None]
)

ABI_VERSION: Final[int]
TABLE_OFFSET: Final[int]
#: Offset of ``tp_version_tag`` proven at import (0: the type cache is off).
_VERSION_TAG_OFFSET: Final[int]
_C_API: Final[_Capsule]
_arrays: ModuleType

@disjoint_base
class ExtensibleType(type):
    """Metaclass whose classes carry a table of C implementations keyed by name."""

def prehash(key: str | bytes, /) -> int: ...
def set_slots(tp: type, slots: _Slots, /) -> None: ...
def get_slots(tp: type, /) -> dict[str | int, int]: ...
def lookup(obj: object, key: _SlotKey, /) -> int | None: ...
def table_info(tp: type, /) -> dict[str, int | str]: ...
def _bind_key(key: str, id: int, /) -> None: ...
def method_key(name: str, signature: str, /) -> str: ...
def _parse_typed_key(key: str, /) -> tuple[str, str, str, tuple[str, ...], str]: ...
def _bench_lookup(method: str, target: object, arg: int | str, n: int, /) -> float | int: ...
