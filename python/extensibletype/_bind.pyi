"""Type stubs for ``extensibletype._bind``: calling typed methods
(docs/spec.md §1.1) from Python."""

from collections.abc import Callable
from typing import Any

__all__ = ["bind"]

def bind(obj: object, key: str, /) -> Callable[..., Any] | None: ...
