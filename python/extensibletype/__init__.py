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

try:
    from ._core import (
        ABI_VERSION,
        TABLE_OFFSET,
        ExtensibleType,
        _C_API,
        get_slots,
        lookup,
        method_key,
        prehash,
        set_slots,
        table_info,
    )
except ImportError as _refused:
    # CPython refuses the extension in an interpreter with its own GIL (it
    # declares multiple-interpreter support, not per-interpreter-GIL
    # support): say why and what to use instead (docs/spec.md §7).
    if "does not support loading in subinterpreters" not in str(_refused):
        raise
    raise ImportError(
        "extensibletype cannot be imported in an isolated subinterpreter (one with its own GIL, "
        "as made by concurrent.interpreters and InterpreterPoolExecutor): its runtime is "
        "process-wide (one ExtensibleType metaclass, one slot registry and one type cache for "
        "every interpreter, holding references to objects of the interpreters that made them), "
        "which only interpreters sharing a GIL may do safely. Use legacy subinterpreters (shared "
        "GIL: _interpreters.create('legacy') or Py_NewInterpreter), threads, or processes.",
        name=__name__,
    ) from _refused

# `bind`: the runtime's register path (no ctypes) where it exists (x86-64
# System V and AArch64, not abi3t), which hands the signatures it cannot
# call in registers to the ctypes implementation in `_bind`.
try:
    from ._core import bind
except ImportError:
    from ._bind import bind

#: The package version (the same as the crates'; a test checks the three agree).
__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "ExtensibleType",
    "bind",
    "get_include",
    "get_slots",
    "lookup",
    "method_key",
    "prehash",
    "set_slots",
    "table_info",
]


def get_include() -> str:
    """The directory holding ``extensibletype.h`` (for C extension builds)."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")
