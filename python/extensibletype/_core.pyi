"""Type stubs for the extension module ``extensibletype._core`` (the
runtime's Python surface; docs/spec.md section 10)."""

import ctypes
import sys
from collections.abc import Callable, Mapping
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

#: The ABI version of the tables and the C API (1; docs/spec.md section 9).
ABI_VERSION: Final[int]
#: Offset of the ``ExtType_TypeData`` in every extensible type object (docs/spec.md section 3).
TABLE_OFFSET: Final[int]
#: Offset of ``tp_version_tag`` proven at import (0: the type cache is off).
_VERSION_TAG_OFFSET: Final[int]
_C_API: Final[_Capsule]
_arrays: ModuleType

@disjoint_base
class ExtensibleType(type):
    """Metaclass whose classes carry a table of C implementations keyed by name.

    A class body may define __cslots__ = {key: value}; see extensibletype.set_slots."""

def prehash(key: str | bytes, /) -> int:
    """The 64-bit id (int) of a key (str or bytes): the first 8 bytes of md5(key),
    little-endian."""
def set_slots(tp: type, slots: _Slots, /) -> None:
    """Add or override slots of a type ({key: value}; None removes). Extensible types
    get their own table; other types go to the foreign registry."""
def get_slots(tp: type, /) -> dict[str | int, int]:
    """The effective slots of a type: {key or id: address}."""
def lookup(obj: object, key: _SlotKey, /) -> int | None:
    """The address (int) registered for key on type(obj), or None, via the same path C
    consumers use."""
def table_info(tp: type, /) -> dict[str, int | str | bool]:
    """A dict: size, bins, count, bytes, kind and flat (a single-level table) of the
    type's effective table."""
def _bind_key(key: str, id: int, /) -> None: ...

# Absent where the register path is not built (abi3t, other ABIs): then
# extensibletype.bind is extensibletype._bind.bind.
def bind(obj: object, key: str, /) -> Callable[..., Any] | None:
    """The typed method key of type(obj) as a callable with obj bound first, or None
    when the lookup misses; ValueError for a key that is not a canonical typed key.
    Signatures passed in registers are called directly; others through
    extensibletype._bind (ctypes)."""
def method_key(name: str, signature: str, /) -> str:
    """The canonical typed key name#signature for a method name ``'<interface>:<method>'``
    and a signature such as ``'f64(O)'``; ValueError naming the problem otherwise."""
def _parse_typed_key(key: str, /) -> tuple[str, str, str, tuple[str, ...], str]: ...
def _bench_lookup(method: str, target: object, arg: int | str, n: int, throughput: bool = False, /) -> float | int | str: ...
