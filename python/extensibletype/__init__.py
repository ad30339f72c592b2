"""C-level duck typing for CPython.

Any type can carry an immutable, collision-free table of C implementations
keyed by name. Consumers look them up from C (``include/extensibletype.h``),
Rust (the ``extensibletype`` crate) or Python (:func:`lookup`).

>>> import ctypes, extensibletype
>>> class Shape(metaclass=extensibletype.ExtensibleType):
...     __cslots__ = {"demo.shape.v1:sides": 0x1000}
>>> hex(extensibletype.lookup(Shape(), "demo.shape.v1:sides"))
'0x1000'
"""

from ._core import (
    ABI_VERSION,
    TABLE_OFFSET,
    ExtensibleType,
    _C_API,
    get_slots,
    lookup,
    prehash,
    set_slots,
    table_info,
)

#: The package version (the same as the crates'; a test checks the three agree).
__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "ExtensibleType",
    "get_include",
    "get_slots",
    "lookup",
    "prehash",
    "set_slots",
    "table_info",
]


def get_include() -> str:
    """The directory holding ``extensibletype.h`` (for C extension builds)."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")
